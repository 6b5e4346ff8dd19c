package m1verify

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

func TestVariants(t *testing.T) {
	for _, tc := range []struct {
		path      string
		want, not []string
	}{
		{"/downloader/", []string{
			"/downloader/", "/DOWNLOADER/", "/Downloader/", "/index.php/downloader/", "//downloader/",
			"/%64ownloader/", "/downloader", "/downloader/.", "/downloader/index.php", "/mageflow/../downloader/",
		}, []string{"/downloader//"}},
		{"/app/etc/local.xml", []string{
			"/app/etc/local.xml", "/APP/ETC/LOCAL.XML", "/App/etc/local.xml", "/index.php/app/etc/local.xml",
			"//app/etc/local.xml", "/%61pp/etc/local.xml", "/app/etc/%6cocal.xml", "/app%2Fetc/local.xml",
			"/app/etc/local.xml/", "/app/etc/local.xml.", "/mageflow/../app/etc/local.xml",
		}, []string{"/app/etc/local.xml/index.php"}},
		{"/rss/order/new/", []string{"/RSS/ORDER/NEW/", "/index.phprss/order/new/", "/index.php/rss/order/new/", "/rss%2Forder/new/"}, nil},
		// The admin's Shoplift spellings: index.php followed by zero, two
		// or an encoded slash, a dot segment, upper case.
		{"/adminx/Cms_Wysiwyg/directive/index/", []string{"/index.phpadminx/Cms_Wysiwyg/directive/index/", "/index.php//adminx/Cms_Wysiwyg/directive/index/",
			"/index.php/./adminx/Cms_Wysiwyg/directive/index/", "/index.php%2Fadminx/Cms_Wysiwyg/directive/index/", "/INDEX.PHPADMINX/CMS_WYSIWYG/DIRECTIVE/INDEX/"}, nil},
		// A file at the web root is no router path: no /index.phpX form.
		{"/cron.php", []string{"/cron.php", "/CRON.PHP", "/Cron.php", "/%63ron.php", "/cron.php/", "/cron.php."}, []string{"/index.phpcron.php"}},
		// Segments without a letter to encode still get the other forms.
		{"/.git/HEAD", []string{"/.%67it/HEAD", "/.git/%48EAD", "/.GIT/HEAD"}, nil},
	} {
		got := Variants(tc.path)
		if got[0] != tc.path {
			t.Errorf("Variants(%q)[0] = %q, want the path itself first", tc.path, got[0])
		}
		seen := map[string]bool{}
		for _, v := range got {
			if seen[v] {
				t.Errorf("Variants(%q): duplicate %q", tc.path, v)
			}
			seen[v] = true
			if !strings.HasPrefix(v, "/") {
				t.Errorf("Variants(%q): %q is not an absolute path", tc.path, v)
			}
			if strings.Contains(v, "..;") {
				t.Errorf("Variants(%q): %q is a Tomcat form, meaningless for nginx", tc.path, v)
			}
		}
		for _, w := range tc.want {
			if !seen[w] {
				t.Errorf("Variants(%q) lacks %q; got %q", tc.path, w, got)
			}
		}
		for _, n := range tc.not {
			if seen[n] {
				t.Errorf("Variants(%q) has %q", tc.path, n)
			}
		}
	}
	if got := Variants("downloader/"); got[0] != "/downloader/" {
		t.Errorf("a relative path is made absolute: %q", got[0])
	}
}

// TestVariantsSentAsWritten proves the client sends every variant byte for
// byte: a client that cleaned "//x", "/x/../y" or decoded %61 would test
// nothing.
func TestVariantsSentAsWritten(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Host+" "+r.RequestURI)
		mu.Unlock()
		w.WriteHeader(404)
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	f := newFetcher(base, 2, 5*time.Second, 1024)
	defer f.close()
	var want []string
	for _, p := range Paths() {
		for _, v := range Variants(strings.ReplaceAll(p.Path, AdminPlaceholder, "adminx")) {
			want = append(want, "shop.test "+v)
			r, err := f.do(t.Context(), http.MethodGet, "shop.test", v, nil, nil)
			if err != nil || r.err != nil || r.status != 404 {
				t.Fatalf("%s: %v %v %d", v, err, r.err, r.status)
			}
		}
	}
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("request %d sent as %q, want %q", i, got[i], want[i])
			}
		}
		t.Fatalf("%d requests arrived, %d sent", len(got), len(want))
	}
	if n := int(f.count.Load()); n != len(want) {
		t.Errorf("fetcher counted %d requests, sent %d", n, len(want))
	}
}

func TestPathsCatalogue(t *testing.T) {
	ps := Paths()
	ids := map[string]bool{}
	variants := 0
	for _, p := range ps {
		if ids[p.ID] {
			t.Errorf("duplicate probe id %s", p.ID)
		}
		ids[p.ID] = true
		if !strings.HasPrefix(p.ID, "m1.http.") || p.Title == "" || p.Leak == "" || p.Fix == "" || p.Severity == "" {
			t.Errorf("incomplete probe %+v", p)
		}
		variants += len(Variants(strings.ReplaceAll(p.Path, AdminPlaceholder, "adminx")))
	}
	for _, must := range []string{"/downloader/", "/app/etc/local.xml", "/.git/config", "/rss/order/new/", "/var/cache/", "/cron.php", "/" + AdminPlaceholder + "/"} {
		found := false
		for _, p := range ps {
			found = found || p.Path == must
		}
		if !found {
			t.Errorf("catalogue lacks %s", must)
		}
	}
	t.Logf("%d probes, %d requests with variants", len(ps), variants)
	ps[0].Markers = append(ps[0].Markers, "mutated")
	if slices.Contains(Paths()[0].Markers, "mutated") {
		t.Error("Paths returns the catalogue itself, not a copy")
	}
}

func TestRemoveCanaries(t *testing.T) {
	root := t.TempDir()
	keep := []string{"media/catalog/mageflow-canary-0123456789abcdef.php", "media/mageflow-canary-short.php", "media/image.jpg", "skin/mageflow-canary-0123456789abcdef.php.bak", "js/prototype.js"}
	gone := []string{"media/mageflow-canary-0123456789abcdef.php", "media/mageflow-canary-fedcba9876543210.jpg", "skin/mageflow-canary-00000000000000aa.php", "js/mageflow-canary-aaaaaaaaaaaaaaaa.php"}
	for _, f := range append(append([]string{}, keep...), gone...) {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("<?php"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveCanaries(root)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, g := range gone {
		want = append(want, filepath.Join(root, g))
	}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %q, want %q", removed, want)
	}
	for _, k := range keep {
		if _, err := os.Stat(filepath.Join(root, k)); err != nil {
			t.Errorf("%s removed: only canaries directly in media/, skin/, js/ may go", k)
		}
	}
	again, err := RemoveCanaries(root)
	if err != nil || len(again) != 0 {
		t.Errorf("second run: %q, %v; want nothing", again, err)
	}
	if _, err := RemoveCanaries(filepath.Join(root, "missing")); err != nil {
		t.Errorf("a root without static dirs: %v", err)
	}
}

// TestCancelRemovesCanaries cancels Verify while requests hang at the
// server: canaries must still be gone when it returns.
func TestCancelRemovesCanaries(t *testing.T) {
	var blocked atomic.Int32
	inFlight := make(chan struct{}, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/mageflow-verify-") {
			w.WriteHeader(404) // the baseline answers, so Verify gets to the checks
			return
		}
		// Read the body first: the server notices a client that went
		// away (and cancels r.Context()) only once the body is consumed,
		// so a blocked POST probe would otherwise hang srv.Close forever.
		_, _ = io.Copy(io.Discard, r.Body)
		blocked.Add(1)
		inFlight <- struct{}{}
		<-r.Context().Done()
	}))
	defer srv.Close()
	root := t.TempDir()
	for _, d := range canaryDirs {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var written []string
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		<-inFlight
		cancel()
	}()
	start := time.Now()
	results, err := Verify(ctx, Options{
		BaseURL: srv.URL, Host: "shop.test", Canaries: true, WebRoot: root, Timeout: 30 * time.Second,
		OnCanary: func(p string) {
			mu.Lock()
			defer mu.Unlock()
			written = append(written, p)
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify after cancel: results=%d err=%v, want context.Canceled", len(results), err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Verify took %s to return after cancel", d)
	}
	if blocked.Load() == 0 {
		t.Fatal("no request was in flight at the cancel")
	}
	if len(written) != 4 {
		t.Fatalf("OnCanary saw %d canaries, want 4: %v", len(written), written)
	}
	assertCanariesGone(t, root, written)
}

// softStore answers like a Magento 1 store whose no-route page is served
// with 200, with a few holes.
func softStore(t *testing.T) *httptest.Server {
	page := func(w http.ResponseWriter, status int, title string) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("<html><head><title>" + title + "</title><script>var a = {href: 1};</script></head><body>" + title + "</body></html>"))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app/etc/local.xml":
			_, _ = w.Write([]byte("<config><global><resources><default_setup><connection><password>x</password></connection></default_setup></resources></global></config>"))
		case "/cron.php":
			w.WriteHeader(200) // ran, printed nothing
		case "/var/export/":
			http.Redirect(w, r, "https://shop.test/var/export/", http.StatusMovedPermanently)
		case "/media/import/":
			http.Redirect(w, r, "/media/import/elsewhere/", http.StatusFound) // same origin: followed
		case "/media/import/elsewhere/":
			w.WriteHeader(403)
		case "/", "/checkout/cart/", "/checkout/onepage/":
			page(w, 200, "Home")
		case "/adminx/", "/index.php/adminx/":
			w.WriteHeader(401)
		default:
			page(w, 200, "404 Not Found 1")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSoftNoRoute(t *testing.T) {
	srv := softStore(t)
	results, err := Verify(t.Context(), Options{BaseURL: srv.URL, Host: "shop.test", AdminFrontName: "adminx"})
	if err != nil {
		t.Fatal(err)
	}
	got := byID(results)
	if r := got["m1.http.no_route"]; r.Status != m1audit.StatusPass || !strings.Contains(r.Evidence.Detail, "soft 404") {
		t.Errorf("no_route: %s %q", r.Status, r.Evidence.Detail)
	}
	for id, want := range map[string]m1audit.Status{
		"m1.http.path.downloader":    m1audit.StatusPass,  // every variant is the catch-all page
		"m1.http.path.git_head":      m1audit.StatusPass,  // "href:" in the page is no git marker
		"m1.http.path.local_xml":     m1audit.StatusFail,  // marker
		"m1.http.path.cron_php":      m1audit.StatusFail,  // empty 200: it ran
		"m1.http.path.var_export":    m1audit.StatusError, // redirect to https: verify there
		"m1.http.path.media_import":  m1audit.StatusPass,  // same-origin redirect followed to a 403
		"m1.http.staging_auth":       m1audit.StatusNotApplicable,
		"m1.http.php_exec.media":     m1audit.StatusNotApplicable,
		"m1.http.pages.signatures":   m1audit.StatusPass,
		"m1.http.admin.default_path": m1audit.StatusPass,
	} {
		if r := got[id]; r.Status != want {
			t.Errorf("%s: %s, want %s\n%s", id, r.Status, want, dump(t, r))
		}
	}
	// /adminx/ answers 401 but "/ADMINX/" etc. fall to the 200 catch-all:
	// a catch-all page is no admin, so the check holds.
	if r := got["m1.http.admin.front"]; r.Status != m1audit.StatusPass {
		t.Errorf("admin.front: %s\n%s", r.Status, dump(t, r))
	}
	if n := Requests(results); n < 300 {
		t.Errorf("Requests = %d, implausibly few", n)
	}
}

func TestOptionErrors(t *testing.T) {
	for name, o := range map[string]Options{
		"no base":         {Host: "shop.test"},
		"base with path":  {BaseURL: "http://127.0.0.1:1/shop", Host: "shop.test"},
		"ftp base":        {BaseURL: "ftp://127.0.0.1", Host: "shop.test"},
		"no host":         {BaseURL: "http://127.0.0.1:1"},
		"bad front":       {BaseURL: "http://127.0.0.1:1", Host: "shop.test", AdminFrontName: "a/b"},
		"canary, no root": {BaseURL: "http://127.0.0.1:1", Host: "shop.test", Canaries: true},
	} {
		if _, err := Verify(t.Context(), o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Nothing listens: a clear error instead of 40 failed checks.
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	_, err := Verify(t.Context(), Options{BaseURL: addr, Host: "shop.test"})
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("unreachable origin: %v", err)
	}
}

func TestPageScriptsAndHosts(t *testing.T) {
	srcs, inline := pageScripts([]byte(`<html><head><script src=" /js/a.js "></script><SCRIPT type="text/javascript">var x = "</div>";</SCRIPT>` +
		`<!-- <script src="/commented.js"></script> --><script src="//cdn.example/b.js" async></script><script src="data:text/javascript;base64,YWxlcnQoMSk="></script></head></html>`))
	wantSrcs := []string{"/js/a.js", "//cdn.example/b.js", "data:text/javascript;base64,YWxlcnQoMSk="}
	if !slices.Equal(srcs, wantSrcs) {
		t.Errorf("srcs %q, want %q", srcs, wantSrcs)
	}
	if len(inline) != 1 || string(inline[0]) != `var x = "</div>";` {
		t.Errorf("inline %q", inline)
	}
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"shop.test", true}, {"SHOP.TEST", true}, {"cdn.allowed.example", true}, {"x.partner.example", true},
		{"partner.example", false}, {"evilpartner.example", false}, {"cdn.allowed.example.evil", false},
	} {
		if got := hostAllowed(tc.host, "shop.test", []string{"cdn.allowed.example", "*.partner.example"}); got != tc.ok {
			t.Errorf("hostAllowed(%q) = %v", tc.host, got)
		}
	}
}

func TestDataScriptNeedsPerson(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			_, _ = w.Write([]byte(`<html><head><title>Home</title><script src="data:text/javascript;base64,YWxlcnQoMSk="></script></head></html>`))
			return
		}
		w.WriteHeader(404)
	}))
	defer srv.Close()
	results, err := Verify(t.Context(), Options{BaseURL: srv.URL, Host: "shop.test", Pages: []string{"/"}})
	if err != nil {
		t.Fatal(err)
	}
	r := byID(results)[CheckScriptHosts]
	if r.Status != m1audit.StatusNeedsPerson || len(r.Evidence.Findings) != 1 || !strings.Contains(r.Evidence.Findings[0].Evidence, "data:") {
		t.Errorf("data: script: %s\n%s", r.Status, dump(t, r))
	}
}
