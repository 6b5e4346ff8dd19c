package m1fix

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

const (
	frontName = "shopctl"
	testVhost = "shop.test"
	// executed is what the fixture's PHP files print only when run (their
	// source holds "6*7", not the product).
	executed   = "EXECUTED-42"
	authUser   = "ops"
	authPass   = "correct horse battery"
	connection = "<connection>"
)

// writeTree creates a Magento-1-shaped web root: the entry points, the
// files attackers look for, and PHP dropped where it must never run.
func writeTree(t *testing.T, root string) {
	t.Helper()
	files := map[string]string{
		"index.php":                            `<?php header("Content-Type: text/plain"); echo "INDEX OK ", $_SERVER["REQUEST_METHOD"], " ", $_SERVER["REQUEST_URI"], "\n";`,
		"get.php":                              `<?php echo "GET OK";`,
		"app/Mage.php":                         `<?php final class Mage { public static function getVersion() { return "1.9.4.5"; } }`,
		"app/etc/local.xml":                    "<config><global><resources><default_setup><connection><host>db</host><password>s3cret</password></connection></default_setup></resources></global><admin><routers><adminhtml><args><frontName>" + frontName + "</frontName></args></adminhtml></routers></admin></config>\n",
		"app/code/local/Evil/x.php":            `<?php echo "EXECUTED-", 6*7;`,
		"errors/local.xml":                     "<config><report><action>print</action></report></config>\n",
		"media/x.php":                          `<?php echo "EXECUTED-", 6*7;`,
		"media/x.jpg":                          "GIF89a<?php echo \"EXECUTED-\", 6*7; ?>",
		"media/catalog/product/a.jpg":          "JPEGDATA",
		"media/downloadable/files/links/e.pdf": "PAID EBOOK",
		"media/customer/upload.txt":            "PRIVATE",
		"skin/frontend/default/style.css":      "body{}",
		"skin/error.php":                       `<?php echo "EXECUTED-", 6*7;`,
		"js/x.php":                             `<?php echo "EXECUTED-", 6*7;`,
		"js/prototype/prototype.js":            "var Prototype={};",
		"downloader/index.php":                 `<?php echo "EXECUTED-", 6*7;`,
		".git/config":                          "[core]\n\trepositoryformatversion = 0\n",
		"var/log/system.log":                   "2024 DEBUG secret log line\n",
		"var/export/customers.csv":             "email\nalice@example.com\n",
		"shell/indexer.php":                    `<?php echo "EXECUTED-", 6*7;`,
		"cron.php":                             `<?php echo "EXECUTED-", 6*7;`,
		"cron.sh":                              "#!/bin/sh\n",
		"install.php":                          `<?php echo "EXECUTED-", 6*7;`,
		"RELEASE_NOTES.txt":                    "==== 1.9.4.5 ====\n",
		"composer.json":                        "{}\n",
		"magmi/web/magmi.php":                  `<?php echo "EXECUTED-", 6*7;`,
		"phpinfo.php":                          `<?php echo "EXECUTED-", 6*7;`,
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// vhostConf is a classic Magento 1 server block with none of the
// protections: every .php runs, var/ is served as files.
func vhostConf(listen, root, sock string) string {
	return fmt.Sprintf(`# operator's vhost
server {
    listen %s;
    server_name %s www.%s;
    root %s;
    index index.php;

    location / {
        try_files $uri $uri/ @handler;
    }
    location /var/ {
        try_files $uri =404;
    }
    location @handler {
        rewrite / /index.php;
    }
    location ~ \.php/ {
        rewrite ^(.*\.php)/ $1 last;
    }
    location ~ \.php$ {
        if (!-e $request_filename) { rewrite / /index.php last; }
        fastcgi_pass unix:%s;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        include /etc/nginx/fastcgi_params;
    }
}

# staging copy, same code
server {
    listen %s;
    server_name staging.%s;
    root %s;
    index index.php;
    location / {
        try_files $uri $uri/ /index.php$is_args$args;
    }
    location ~ \.php$ {
        fastcgi_pass unix:%s;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        include /etc/nginx/fastcgi_params;
    }
}
`, listen, testVhost, testVhost, root, sock, listen, testVhost, root, sock)
}

type stack struct {
	base, root, vhostFile string
	addr                  string
	opts                  Options
	target                *m1audit.Target
	nginx                 *webstack.Proc
	fpm                   *webstack.Proc
	sshReloads            int
}

// needStackTools skips, naming the make target, when the tools `make test`
// installs (nginx-light, php8.2-fpm, openssh-server) or root are missing.
func needStackTools(t *testing.T) {
	t.Helper()
	needRoot(t)
	_, err := webstack.NginxBinary()
	testenv.ToolOrSkip(t, err)
	_, err = webstack.PHPFPMBinary()
	testenv.ToolOrSkip(t, err)
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("needs /usr/sbin/sshd: install openssh-server (make deps-test, which make test runs)")
	}
}

// needRoot skips when the test cannot chown (make test runs as root).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the fixture (make test runs as root)")
	}
}

func startStack(t *testing.T) *stack {
	t.Helper()
	needStackTools(t)
	s := &stack{base: t.TempDir()}
	s.root = filepath.Join(s.base, "www")
	writeTree(t, s.root)
	var err error
	s.fpm, err = webstack.StartPHPFPM(t.Context(), webstack.Pool{Dir: filepath.Join(s.base, "fpm"), PM: "static", MaxChildren: 2, ProcessControlTimeout: 3 * time.Second})
	if err != nil {
		t.Fatalf("start php-fpm (install php8.2-fpm): %v", err)
	}
	port, err := webstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.addr = "127.0.0.1:" + strconv.Itoa(port)
	sock := filepath.Join(s.base, "fpm", "php-fpm.sock")
	s.vhostFile = filepath.Join(s.base, "sites", "shop.conf")
	for _, d := range []string{filepath.Dir(s.vhostFile), filepath.Join(s.base, "conf.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(s.vhostFile, []byte(vhostConf(s.addr, s.root, sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	ngxDir := filepath.Join(s.base, "nginx")
	s.nginx, err = webstack.StartNginx(t.Context(), ngxDir,
		"include "+filepath.Join(s.base, "conf.d")+"/*.conf;",
		"include "+s.vhostFile+";")
	if err != nil {
		t.Fatalf("start nginx (install nginx-light): %v", err)
	}
	waitTCP(t, s.addr)

	sshd := sshdFixture(t, s.base)
	s.target = &m1audit.Target{
		Vhosts: []m1audit.Vhost{{ServerNames: []string{testVhost, "www." + testVhost}, Listen: []string{s.addr}, Root: s.root, FastCGIPass: "unix:" + sock, File: s.vhostFile + ":2"},
			{ServerNames: []string{"staging." + testVhost}, Listen: []string{s.addr}, Root: s.root, FastCGIPass: "unix:" + sock, File: s.vhostFile + ":32", Staging: true}},
		WebRoot:        s.root,
		FPMListen:      sock,
		FPMPoolFile:    s.fpm.ConfFile(),
		PHPUser:        "nobody",
		PHPGroup:       "nogroup",
		AdminFrontName: frontName,
	}
	var fpmArgs []string
	if os.Geteuid() == 0 {
		fpmArgs = []string{"-R"} // the test pool runs as root
	}
	s.opts = Options{
		NginxArgs:          []string{"-p", ngxDir + "/", "-c", filepath.Join(ngxDir, "nginx.conf")},
		IncludeDir:         filepath.Join(s.base, "mageflow"),
		HTTPConfDir:        filepath.Join(s.base, "conf.d"),
		BasicAuth:          &BasicAuth{User: authUser, Password: authPass, Realm: "Shop admin"},
		AdminRatePerMinute: 600,
		AdminLoginsPerDay:  20,
		StagingBasicAuth:   true,
		PHPFPMArgs:         fpmArgs,
		SSHDBinary:         sshd.bin,
		SSHDArgs:           sshd.args,
		SSHDDropInDir:      sshd.dropIns,
		ReloadSSHD:         func(context.Context) error { s.sshReloads++; return nil },
		DeployUser:         currentUserName(t),
		StateDir:           filepath.Join(s.base, "state"),
	}
	return s
}

func currentUserName(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

type sshdSetup struct {
	bin     string
	args    []string
	dropIns string
}

// sshdFixture gives sshd -t a main config that includes a temporary drop-in
// directory and a temporary host key.
func sshdFixture(t *testing.T, base string) sshdSetup {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no %s: install openssh-server (make deps)", bin)
	}
	// sshd -t refuses to run without its privilege separation directory,
	// which Debian's ssh service creates at start.
	if _, err := os.Stat("/run/sshd"); err != nil {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshd -t needs /run/sshd: %v", err)
		}
	}
	dir := filepath.Join(base, "ssh")
	dropIns := filepath.Join(dir, "sshd_config.d")
	if err := os.MkdirAll(dropIns, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen (openssh-client): %v: %s", err, out)
	}
	main := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(main, []byte("Include "+dropIns+"/*.conf\nPasswordAuthentication no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return sshdSetup{bin: bin, args: []string{"-f", main, "-h", key}, dropIns: dropIns}
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type resp struct {
	status int
	body   string
}

// do sends one request with the path exactly as given (no client-side
// cleaning: //downloader/ and %61pp reach nginx as written).
func (s *stack) do(t *testing.T, method, rawPath string, auth bool) resp {
	t.Helper()
	return s.doHost(t, testVhost, method, rawPath, auth)
}

func (s *stack) doHost(t *testing.T, host, method, rawPath string, auth bool) resp {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, rawPath, host)
	if auth {
		fmt.Fprintf(&b, "Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(authUser+":"+authPass)))
	}
	if method == "POST" {
		body := "groups[head][fields][includes][value]=<script src=//evil.example/x.js></script>"
		fmt.Fprintf(&b, "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	} else {
		b.WriteString("\r\n")
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawPath, err)
	}
	defer r.Body.Close()
	data, _ := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, body: string(data)}
}

func leaked(body string) bool {
	for _, s := range []string{executed, connection, "[core]", "secret log line", "alice@example.com", "PAID EBOOK", "PRIVATE", "<?php", "==== 1.9"} {
		if strings.Contains(body, s) {
			return true
		}
	}
	return false
}

// deniedPaths must answer 403/404 without leaking after Apply.
var deniedPaths = []string{
	"/app/etc/local.xml", "/app/etc/local.xml.", "/%61pp/etc/local.xml", "/APP/etc/local.xml", "//app/etc/local.xml",
	"/app/code/local/Evil/x.php",
	"/downloader/", "/downloader/index.php", "/DOWNLOADER/", "//downloader/", "/DownLoader/index.php",
	"/.git/config", "/.git/", "/.htaccess",
	"/errors/local.xml", "/var/log/system.log", "/var/export/customers.csv",
	"/media/downloadable/files/links/e.pdf", "/media/customer/upload.txt",
	"/media/x.php", "/media/x.jpg/x.php", "/media/x.PHP", "/skin/error.php", "/js/x.php",
	"/shell/indexer.php", "/cron.php", "/cron.sh", "/install.php", "/RELEASE_NOTES.txt", "/composer.json",
	"/magmi/web/magmi.php", "/phpinfo.php",
	"/rss/order/new", "/index.php/rss/order/new", "/RSS/ORDER/NEW", "/index.phprss/catalog/notifystock/", "/rss/catalog/review", "/default/rss/order/new",
	"/admin/", "/index.php/admin/", "/ADMIN",
}

func TestApplyHardensRealVhost(t *testing.T) {
	s := startStack(t)
	chownFixture(t, s.root)

	// The unprotected vhost leaks: otherwise the checks below prove nothing.
	for _, p := range []string{"/app/etc/local.xml", "/media/x.php", "/var/log/system.log", "/downloader/index.php"} {
		if r := s.do(t, "GET", p, false); r.status != 200 || !leaked(r.body) {
			t.Fatalf("before Apply %s = %d %q: the fixture vhost should leak it", p, r.status, r.body)
		}
	}

	// A dry run reports and changes nothing.
	vhostBefore, _ := os.ReadFile(s.vhostFile)
	dry := s.opts
	dry.DryRun = true
	res, err := Apply(t.Context(), s.target, dry)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Status == m1audit.StatusFixed {
			t.Errorf("dry run fixed %s: %+v", r.ID, r)
		}
	}
	if st := byID(res, IDNginx).Status; st != m1audit.StatusFail {
		t.Errorf("dry run nginx status %s, want fail (would change)", st)
	}
	if after, _ := os.ReadFile(s.vhostFile); string(after) != string(vhostBefore) {
		t.Fatal("dry run changed the vhost file")
	}
	if _, err := os.Stat(s.opts.IncludeDir); err == nil {
		t.Fatal("dry run created the include dir")
	}

	start := time.Now()
	res, err = Apply(t.Context(), s.target, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first Apply: %s", time.Since(start))
	for _, id := range []string{IDNginx, IDDesignPost, IDAdminAuth, IDFPMLimitExt, IDSSHDenyPHP, IDOwnership} {
		if r := byID(res, id); r.Status != m1audit.StatusFixed {
			t.Errorf("%s: status %s, want fixed: %s", id, r.Status, r.Evidence.Detail)
		}
	}
	if r := byID(res, IDAdminDaily); r.Status != m1audit.StatusNeedsPerson || !strings.Contains(r.Fix, "maxretry = 20") {
		t.Errorf("%s: %s %q", IDAdminDaily, r.Status, r.Fix)
	}
	if r := byID(res, IDNginx); r.Before == "" || r.After == "" {
		t.Errorf("nginx result lacks before/after: %+v", r)
	}
	vhostAfter, _ := os.ReadFile(s.vhostFile)
	if n := strings.Count(string(vhostAfter), includeMarker); n != 2 {
		t.Fatalf("vhost file has %d managed include lines, want 2 (live, staging):\n%s", n, vhostAfter)
	}
	inc, _ := os.ReadFile(s.opts.serverFile(s.target.Vhosts[0]))
	if !strings.Contains(string(inc), `skipped: the vhost already has "location ^~ /var/"`) {
		t.Errorf("the vhost's own `location /var/` should have made the include skip its duplicate:\n%s", inc)
	}

	// Every §3 path and variant is refused, nothing leaks.
	for _, p := range deniedPaths {
		r := s.do(t, "GET", p, false)
		if (r.status != 403 && r.status != 404) || leaked(r.body) {
			t.Errorf("GET %s = %d %q, want 403/404 without content", p, r.status, r.body)
		}
	}
	// The store still works.
	for p, want := range map[string]string{"/": "INDEX OK GET /", "/index.php": "INDEX OK", "/catalog/product/view/id/1": "INDEX OK GET /catalog/product/view/id/1",
		"/skin/frontend/default/style.css": "body{}", "/media/catalog/product/a.jpg": "JPEGDATA", "/js/prototype/prototype.js": "Prototype", "/get.php": "GET OK"} {
		if r := s.do(t, "GET", p, false); r.status != 200 || !strings.Contains(r.body, want) {
			t.Errorf("GET %s = %d %q, want 200 with %q", p, r.status, r.body, want)
		}
	}
	// Staging: everything behind basic auth, and the same denials.
	if r := s.doHost(t, "staging."+testVhost, "GET", "/", false); r.status != 401 {
		t.Errorf("staging / without credentials = %d, want 401", r.status)
	}
	if r := s.doHost(t, "staging."+testVhost, "GET", "/", true); r.status != 200 || !strings.Contains(r.body, "INDEX OK") {
		t.Errorf("staging / with credentials = %d %q", r.status, r.body)
	}
	if r := s.doHost(t, "staging."+testVhost, "GET", "/DOWNLOADER/index.php", true); r.status != 404 || leaked(r.body) {
		t.Errorf("staging /DOWNLOADER/index.php = %d %q", r.status, r.body)
	}
	// The image with PHP inside is served as bytes, never run.
	if r := s.do(t, "GET", "/media/x.jpg", false); strings.Contains(r.body, executed) {
		t.Errorf("/media/x.jpg executed: %q", r.body)
	}
	// Admin: basic auth, PHP behind it, all spellings.
	for _, p := range []string{"/" + frontName + "/", "/index.php/" + frontName + "/dashboard/", "/SHOPCTL/", "//" + frontName + "/", "/catalog/adminhtml_product/"} {
		if r := s.do(t, "GET", p, false); r.status != 401 || strings.Contains(r.body, "INDEX OK") {
			t.Errorf("GET %s without credentials = %d %q, want 401", p, r.status, r.body)
		}
	}
	if r := s.do(t, "GET", "/"+frontName+"/dashboard/", true); r.status != 200 || !strings.Contains(r.body, "INDEX OK GET /"+frontName+"/dashboard/") {
		t.Errorf("admin with credentials = %d %q, want 200 from index.php", r.status, r.body)
	}
	if r := s.do(t, "GET", "/index.php/"+frontName+"/", true); r.status != 200 || !strings.Contains(r.body, "INDEX OK") {
		t.Errorf("/index.php/admin with credentials = %d %q", r.status, r.body)
	}
	// Misc-scripts virtual patch: saving the design section is refused
	// even with credentials; other sections save.
	for _, p := range []string{"/" + frontName + "/system_config/save/section/design/", "/index.php/" + frontName + "/system_config/save/key/abc/section/design/",
		"/" + frontName + "/system_config/save/?section=design", "/" + frontName + "/system_config/save/", "/" + frontName + "/system_config/save/section/%2564esign/",
		"/" + frontName + "/SYSTEM_CONFIG/SAVE/SECTION/DESIGN/"} {
		if r := s.do(t, "POST", p, true); r.status != 403 {
			t.Errorf("POST %s = %d %q, want 403", p, r.status, r.body)
		}
	}
	if r := s.do(t, "POST", "/"+frontName+"/system_config/save/section/general/", true); r.status != 200 || !strings.Contains(r.body, "INDEX OK POST") {
		t.Errorf("POST general section = %d %q, want 200", r.status, r.body)
	}
	if r := s.do(t, "GET", "/"+frontName+"/system_config/edit/section/design/", true); r.status != 200 {
		t.Errorf("GET design section page = %d, want 200 (only saving is refused)", r.status)
	}

	// PHP-FPM pool and sshd drop-in.
	pool, _ := os.ReadFile(s.target.FPMPoolFile)
	if !strings.Contains(string(pool), "security.limit_extensions = .php") {
		t.Errorf("pool lacks limit_extensions:\n%s", pool)
	}
	if out, err := exec.Command(s.opts.SSHDBinary, append(append([]string{"-T"}, s.opts.SSHDArgs...), "-C", "user=nobody,host=x,addr=127.0.0.1")...).CombinedOutput(); err != nil || !deniesUser(string(out), "nobody") {
		t.Errorf("sshd -T does not deny nobody: %v %s", err, out)
	}
	if s.sshReloads != 1 {
		t.Errorf("sshd reloaded %d times, want 1", s.sshReloads)
	}
	checkOwnership(t, s.root)

	// A second Apply changes nothing.
	snap := snapshot(t, s.base)
	res, err = Apply(t.Context(), s.target, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		switch r.ID {
		case IDAdminDaily:
			continue
		}
		if r.Status != m1audit.StatusPass || r.Evidence.Detail != unchanged {
			t.Errorf("second Apply: %s = %s %q, want pass %q", r.ID, r.Status, r.Evidence.Detail, unchanged)
		}
	}
	if diff := snap.diff(t); diff != "" {
		t.Errorf("second Apply changed files: %s", diff)
	}
	if s.sshReloads != 1 {
		t.Errorf("second Apply reloaded sshd")
	}

	// A hand edit is detected, overwritten, and kept.
	incPath := s.opts.serverFile(s.target.Vhosts[0])
	good, _ := os.ReadFile(incPath)
	if err := os.WriteFile(incPath, append(append([]byte{}, good...), "# hand edit\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	res, _ = Apply(t.Context(), s.target, s.opts)
	if r := byID(res, IDNginx); r.Status != m1audit.StatusFixed || !strings.Contains(r.Evidence.Detail, "edited by hand") {
		t.Errorf("hand edit: %s %q", r.Status, r.Evidence.Detail)
	}
	if now, _ := os.ReadFile(incPath); string(now) != string(good) {
		t.Error("hand-edited include not restored to the rendered rules")
	}
	if baks, _ := filepath.Glob(filepath.Join(s.opts.IncludeDir, "backup", filepath.Base(incPath)+".*.bak")); len(baks) == 0 {
		t.Error("no backup of the hand-edited include")
	}

	// A rule nginx rejects is rolled back; the running config keeps
	// protecting.
	testHookServer = func(s string) string { return s + "bogus_directive on;\n" }
	t.Cleanup(func() { testHookServer = nil })
	res, _ = Apply(t.Context(), s.target, s.opts)
	testHookServer = nil
	if r := byID(res, IDNginx); r.Status != m1audit.StatusError || !strings.Contains(r.Evidence.Detail, "bogus_directive") || !strings.Contains(r.Evidence.Detail, "restored") {
		t.Errorf("broken include: %s %q, want error naming nginx's message", r.Status, r.Evidence.Detail)
	}
	if now, _ := os.ReadFile(incPath); string(now) != string(good) {
		t.Error("rejected include was not restored")
	}
	if err := exec.Command("nginx", append([]string{"-t", "-q"}, s.opts.NginxArgs...)...).Run(); err != nil {
		t.Errorf("nginx -t fails after the rollback: %v", err)
	}
	if r := s.do(t, "GET", "/DOWNLOADER/", false); r.status != 404 {
		t.Errorf("after rollback /DOWNLOADER/ = %d", r.status)
	}
	if r := s.do(t, "GET", "/"+frontName+"/", false); r.status != 401 {
		t.Errorf("after rollback admin = %d", r.status)
	}
}

func byID(rs []m1audit.CheckResult, id string) m1audit.CheckResult {
	for _, r := range rs {
		if r.ID == id {
			return r
		}
	}
	return m1audit.CheckResult{ID: id, Status: "missing"}
}

// chownFixture hands parts of the tree to the PHP user ("nobody"), as a
// store installed the DevDocs way would have it.
func chownFixture(t *testing.T, root string) {
	t.Helper()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no user nobody: %v", err)
	}
	ng, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Fatalf("no group nogroup: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(ng.Gid)
	for _, p := range []string{"app/code/local/Evil/x.php", "app/code/local/Evil", "var/log/system.log", "skin/frontend/default"} {
		if err := os.Chown(filepath.Join(root, p), uid, gid); err != nil {
			t.Fatalf("chown fixture (tests run as root): %v", err)
		}
	}
	for p, m := range map[string]os.FileMode{"app/code/local/Evil/x.php": 0o660, "app/etc/local.xml": 0o666, "var/log/system.log": 0o666, "skin/frontend/default/style.css": 0o666} {
		if err := os.Chmod(filepath.Join(root, p), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(root, "app", "etc-link")); err != nil {
		t.Fatal(err)
	}
}

func checkOwnership(t *testing.T, root string) {
	t.Helper()
	me := os.Geteuid()
	for p, want := range map[string]struct {
		mode  os.FileMode
		owner int // -1: nobody
	}{
		"app/code/local/Evil/x.php":       {0o640, me},
		"app/etc/local.xml":               {0o664, me}, // world write removed; root's group is not the PHP group
		"var/log/system.log":              {0o664, -1}, // var/: only world write goes, PHP (the owner) keeps write
		"skin/frontend/default/style.css": {0o664, me},
	} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		owner := int(st.Uid)
		if want.owner == -1 {
			nobody, _ := user.Lookup("nobody")
			want.owner, _ = strconv.Atoi(nobody.Uid)
		}
		if fi.Mode().Perm() != want.mode || owner != want.owner {
			t.Errorf("%s: mode %o owner %d, want %o %d", p, fi.Mode().Perm(), owner, want.mode, want.owner)
		}
	}
	if fi, err := os.Stat("/etc"); err != nil || fi.Mode().Perm()&0o002 != 0 {
		t.Errorf("/etc looks touched")
	}
}

type snap struct {
	dir   string
	files map[string]string
}

func snapshot(t *testing.T, dir string) snap {
	t.Helper()
	s := snap{dir: dir, files: map[string]string{}}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, filepath.Join(dir, "nginx")) || strings.HasPrefix(p, filepath.Join(dir, "fpm")) {
			return nil
		}
		fi, _ := d.Info()
		data, _ := os.ReadFile(p)
		s.files[p] = fmt.Sprintf("%o %s ", fi.Mode(), fi.ModTime()) + string(data)
		return nil
	})
	return s
}

func (s snap) diff(t *testing.T) string {
	now := snapshot(t, s.dir)
	var d []string
	for p, v := range s.files {
		if now.files[p] != v {
			d = append(d, p)
		}
	}
	for p := range now.files {
		if _, ok := s.files[p]; !ok {
			d = append(d, "new "+p)
		}
	}
	return strings.Join(d, ", ")
}
