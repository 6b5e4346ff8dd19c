package m1audit

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestScanContentAndForeignScripts(t *testing.T) {
	sigs := shipped(t)
	skimmer := []byte(`<p>x</p><script>var u=atob("aHR0cHM6Ly9leGFtcGxlLmludmFsaWQ=");var s=document.createElement("script");</script>`)
	fs := sigs.ScanContent("cms_block[1 promo]", skimmer, ScopeJS, ScopeHTML)
	if len(fs) == 0 || fs[0].SignatureID != "html.script_atob" || fs[0].Path != "cms_block[1 promo]" || fs[0].CheckID != CheckContentSignature {
		t.Errorf("skimmer findings %+v", fs)
	}
	if fs := sigs.ScanContent("x", []byte(`<?php if (false) eval(base64_decode($x));`), ScopeJS, ScopeHTML); len(fs) != 0 {
		t.Errorf("PHP signatures applied to frontend content: %+v", fs)
	}
	if fs := sigs.ScanContent("x", []byte(`<h1>Checkout</h1><script src="/js/a.js"></script>`), ScopeJS, ScopeHTML); len(fs) != 0 {
		t.Errorf("benign HTML flagged: %+v", fs)
	}
	html := []byte(`<script src="https://shop.example.com/a.js"></script>
<SCRIPT type="text/javascript" SRC='//cdn.trusted.example/b.js'></SCRIPT>
<script src=https://mcdnn.example.net/122002/assets/js/widget.js></script>
<script src="{{skin url='js/c.js'}}"></script><script src="/js/d.js"></script>
<script src="data:text/javascript;base64,YWxlcnQoMSk="></script>
<script>var inline = 1;</script>`)
	if got := len(ScriptSources(html)); got != 6 {
		t.Errorf("%d script sources, want 6", got)
	}
	got := ForeignScriptHosts(html, []string{"shop.example.com", "*.trusted.example"})
	if !reflect.DeepEqual(got, []string{"data:", "mcdnn.example.net"}) {
		t.Errorf("foreign hosts %v", got)
	}
}

func TestParseFPMConfig(t *testing.T) {
	dir := t.TempDir()
	main := fpmFixture(t, dir, "'127.0.0.1:9000'", "user = \"shop\"\nenv[OPENMAGE_CONFIG__DEFAULT__DESIGN__HEAD__INCLUDES] = \"\"\n# comment\nphp_admin_value[error_log] = /var/log/php/$pool.log\n")
	c, err := ParseFPMConfig(main)
	if err != nil {
		t.Fatal(err)
	}
	if c.Global["error_log"] != "/var/log/php8.2-fpm.log" || len(c.Pools) != 2 || len(c.Files) != 3 {
		t.Fatalf("config %+v", c)
	}
	p, ok := c.PoolFor("127.0.0.1:9000")
	if !ok || p.Name != "shop" || p.Settings["user"] != "shop" || p.Settings["php_admin_value[error_log]"] != "/var/log/php/shop.log" {
		t.Errorf("pool %+v", p)
	}
	if _, ok := p.Env["OPENMAGE_CONFIG__DEFAULT__DESIGN__HEAD__INCLUDES"]; !ok {
		t.Errorf("env lines: %v", p.Env)
	}
	if _, err := ParseFPMConfig(filepath.Join(dir, "missing.conf")); err == nil || !strings.Contains(err.Error(), "php-fpm.conf") {
		t.Errorf("missing file: %v", err)
	}
}
