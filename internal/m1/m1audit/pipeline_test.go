package m1audit

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDiscoverAuditFinalize runs the read-only pipeline as the workflow
// will: discover a dumped nginx config and pool, audit with the real sshd,
// finalize, and round-trip the report through JSON.
func TestDiscoverAuditFinalize(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "shop")
	goodStore(t, root)
	writeFile(t, filepath.Join(root, "skin/frontend/base/default/error.php"), phpHead+"if (false) system($_GET['cmd']);\n")
	fpm := fpmFixture(t, filepath.Join(base, "fpm"), "/run/php/shop.sock", "user = www-data\ngroup = www-data\n")
	dump := dumpFor("/etc/nginx/nginx.conf", mainConf, "/etc/nginx/sites-enabled/shop", siteConf(root))
	tg, err := Discover(context.Background(), DiscoverOptions{NginxDump: dump, PHPFPMConf: fpm, PHPFPMBinary: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := sshdFixture(t)
	o.Signatures = shipped(t)
	o.Now = func() time.Time { return fixedNow }
	o.DB = &DBConfig{Socket: filepath.Join(base, "none.sock"), Name: "shop"}
	o.SSHDConfig = filepath.Join(base, "sshd_config")
	writeFile(t, o.SSHDConfig, "UsePAM no\nDenyUsers www-data\n")
	rs, err := Audit(context.Background(), tg, o)
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Host: "web1", Target: *tg, Results: rs}
	Finalize(rep)
	if !rep.Summary.Compromised || rep.Forensics == nil || rep.Summary.Changed {
		t.Errorf("summary %+v", rep.Summary)
	}
	for id, want := range map[string]Status{CheckSignature: StatusFail, CheckPHPInStatic: StatusFail, CheckLimitExt: StatusFail,
		CheckPHPVersion: StatusError, CheckSSHDDenied: StatusPass, CheckAdminFrontName: StatusPass, CheckDBConfigScripts: StatusError} {
		if r := resultByID(t, rs, id); r.Status != want {
			t.Errorf("%s: %s, want %s (%s)", id, r.Status, want, r.Evidence.Detail)
		}
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(rs) || !back.Target.LimitExtDefault || back.Forensics == nil {
		t.Errorf("JSON round trip lost data: %d results, target %+v", len(back.Results), back.Target)
	}
	if strings.Contains(string(js), "s3cret-Pa55") {
		t.Error("local.xml password in the report")
	}
	if !strings.Contains(rep.Markdown(), "skin/frontend/base/default/error.php") {
		t.Error("markdown misses the dropped shell")
	}
}
