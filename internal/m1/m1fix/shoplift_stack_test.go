package m1fix

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/internal/m1/m1verify"
)

// Markers the M1-routing stub prints; none of them is in its source as
// printed (the PHP concatenates them), so a served source never matches.
const (
	adminReached = "ADMIN-ROUTE-REACHED"
	rssReached   = "RSS-FEED-SERVED"
)

// m1RouterStub is a front controller that routes like Magento 1 without
// SUPEE-6285-era routing: the script name is stripped from REQUEST_URI as a
// plain prefix (so /index.phpshopctl/ is the front name "shopctl" — the
// Shoplift spelling), slashes are merged, front names compare without case,
// and a store code (web/url/use_store) before the route is dropped.
const m1RouterStub = `<?php
$p = rawurldecode(strtok($_SERVER['REQUEST_URI'], '?'));
if (strncasecmp($p, '/index.php', 10) === 0) { $p = substr($p, 10); }
$seg = array_values(array_filter(explode('/', strtolower(preg_replace('#/(\./)+#', '/', $p))), 'strlen'));
if (count($seg) > 1 && $seg[0] === 'default') { array_shift($seg); }
$front = count($seg) > 0 ? $seg[0] : '';
$admin = trim(file_get_contents(__DIR__ . '/app/etc/admin.txt'));
if ($front === $admin || (count($seg) > 1 && strpos($seg[1], 'adminhtml_') === 0)) {
    echo 'ADMIN-' . 'ROUTE-REACHED <form><input name="login[username]"></form>';
    exit;
}
if ($front === 'rss' && count($seg) > 1 && ($seg[1] === 'order' || $seg[1] === 'catalog')) {
    echo 'RSS-' . 'FEED-SERVED <rss><channel></channel></rss>';
    exit;
}
if ($front === '' || $front === 'catalog') { echo 'INDEX OK'; exit; }
http_response_code(404);
echo 'no route';
`

// shopliftSpellings reach the admin front name through Magento's router;
// every one must ask for credentials after Apply.
var shopliftSpellings = []string{
	"/index.php" + frontName + "/",
	"/index.php" + frontName + "/Cms_Wysiwyg/directive/index/",
	"/index.php" + strings.ToUpper(frontName) + "/",
	"/INDEX.PHP/" + strings.ToUpper(frontName) + "/",
	"/index.php//" + frontName + "/",
	"/index.php/./" + frontName + "/Cms_Wysiwyg/directive/index/",
	"/index.php%2f" + frontName + "/",
	"/index.php%2F" + frontName + "/Cms_Wysiwyg/directive/index/",
	"/%69ndex.php" + frontName + "/",
	"/index.php/%73hopctl/",
	"//index.php" + frontName + "/",
	"/x/../index.php" + frontName + "/",
	"/default/" + frontName + "/",
	"/index.php/default/" + frontName + "/",
	"/index.phpdefault/" + frontName + "/Cms_Wysiwyg/directive/index/",
	"/index.phpcatalog/adminhtml_product/",
	"/index.php" + frontName + "?x=1",
}

// rssSpellings reach the SUPEE-6285 feeds; every one must be 404.
var rssSpellings = []string{
	"/index.phprss/order/new/", "/index.php//rss/order/new/", "/index.php%2frss/catalog/notifystock/",
	"/INDEX.PHPRSS/ORDER/NEW/", "/index.phpdefault/rss/catalog/review/", "/index.php/./rss/order/new/",
}

// TestShopliftSpellingsNeedAuth is the attack: real nginx and php-fpm, the
// operator's vhost, a front controller that routes index.php<front> to the
// admin. Before Apply the spellings reach the admin without a password;
// after it every one is 401 and PHP never answers, while the admin still
// works with credentials — and m1verify's own admin probes pass.
func TestShopliftSpellingsNeedAuth(t *testing.T) {
	s := startStack(t)
	for name, body := range map[string]string{"index.php": m1RouterStub, "app/etc/admin.txt": frontName + "\n", "media/" + frontName + "/logo.txt": "STATIC-LOGO"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(s.root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{shopliftSpellings[0], shopliftSpellings[1], "/" + frontName + "/"} {
		if r := s.do(t, "GET", p, false); r.status != 200 || !strings.Contains(r.body, adminReached) {
			t.Fatalf("before Apply %s = %d %q: the stub should route it to the admin", p, r.status, r.body)
		}
	}
	if r := s.do(t, "GET", rssSpellings[0], false); !strings.Contains(r.body, rssReached) {
		t.Fatalf("before Apply %s = %d %q: the stub should serve the feed", rssSpellings[0], r.status, r.body)
	}
	res, err := Apply(t.Context(), s.target, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if r := byID(res, IDNginx); r.Status != m1audit.StatusFixed {
		t.Fatalf("nginx: %s %s", r.Status, r.Evidence.Detail)
	}
	for _, p := range shopliftSpellings {
		want := 401
		if strings.Contains(p, "INDEX.PHP") {
			want = 404 // php_allowlist: only the canonical script names run PHP
		}
		if r := s.do(t, "GET", p, false); r.status != want || strings.Contains(r.body, adminReached) {
			t.Errorf("GET %s without credentials = %d %q, want %d", p, r.status, r.body, want)
		}
		if r := s.do(t, "POST", p, false); r.status != want && r.status != 403 {
			t.Errorf("POST %s without credentials = %d %q, want %d/403", p, r.status, r.body, want)
		}
	}
	for _, p := range []string{shopliftSpellings[0], shopliftSpellings[5]} {
		if r := s.do(t, "GET", p, true); r.status != 200 || !strings.Contains(r.body, adminReached) {
			t.Errorf("GET %s with credentials = %d %q, want the admin", p, r.status, r.body)
		}
	}
	for _, p := range append(rssSpellings, "/index.phpadmin/", "/index.phpADMIN/Cms_Wysiwyg/directive/index/", "/index.phpdownloader/", "/index.php//downloader/") {
		if r := s.do(t, "GET", p, false); r.status != 404 || strings.Contains(r.body, rssReached) || strings.Contains(r.body, adminReached) || leaked(r.body) {
			t.Errorf("GET %s = %d %q, want 404", p, r.status, r.body)
		}
	}
	if r := s.do(t, "GET", "/catalog/product/view/id/1", false); r.status != 200 || !strings.Contains(r.body, "INDEX OK") {
		t.Errorf("the store broke: %d %q", r.status, r.body)
	}
	// A static directory is never taken for a store code.
	if r := s.do(t, "GET", "/media/"+frontName+"/logo.txt", false); r.status != 200 || r.body != "STATIC-LOGO" {
		t.Errorf("static /media/%s/logo.txt = %d %q, want the file", frontName, r.status, r.body)
	}
	verifyAdminProbes(t, s)
}

// verifyAdminProbes runs m1verify against the hardened stack: its admin
// probes (every variant, the Shoplift spellings included) must pass.
func verifyAdminProbes(t *testing.T, s *stack) {
	t.Helper()
	results, err := m1verify.Verify(t.Context(), m1verify.Options{
		BaseURL: (&url.URL{Scheme: "http", Host: s.addr}).String(), Host: testVhost,
		AdminFrontName: frontName, WebRoot: s.root, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m1.http.admin.front", "m1.http.admin.shoplift", "m1.http.path.rss_order_new"} {
		r := byID(results, id)
		if r.Status != m1audit.StatusPass {
			t.Errorf("m1verify %s = %s: %s", id, r.Status, r.Evidence.Detail)
			continue
		}
		spelled := false
		for _, h := range r.Evidence.HTTP {
			spelled = spelled || strings.Contains(h.URL, "/index.php"+frontName) || strings.Contains(h.URL, "/index.phprss")
		}
		if !spelled && id != "m1.http.path.rss_order_new" {
			t.Errorf("m1verify %s did not try /index.php%s: %+v", id, frontName, r.Evidence.HTTP)
		}
	}
}
