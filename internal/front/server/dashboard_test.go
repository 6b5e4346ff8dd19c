package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/build/release"
)

type fakeReleases map[string][]release.Meta

func (f fakeReleases) List(_ context.Context, app string) ([]release.Meta, error) {
	if app == "b2b" {
		return nil, errors.New("s3: access denied to bucket secret-bucket")
	}
	return f[app], nil
}

func sampleReleases() fakeReleases {
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	return fakeReleases{"shop": {
		{ID: "12-3f9a2c1", App: "shop", Commit: sha, ShortCommit: "3f9a2c1", Branch: "main", BuildNumber: 12,
			Message: "Fix <script>alert(1)</script> cart\n\nbody text", Author: "Alice & Bob", BuiltAt: t0.Add(time.Hour),
			Artifact: release.Artifact{Size: 3 << 20}, WorkflowID: "build/shop/" + sha},
		{ID: "11-aaaaaaa", App: "shop", Commit: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Branch: "develop", BuildNumber: 11,
			Message: "Older", Author: "carol", CommittedAt: t0, Artifact: release.Artifact{Size: 512}, WorkflowID: "build-11"},
	}}
}

func getPage(t *testing.T, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w.Code, w.Body.String(), w.Header()
}

func TestDashboard(t *testing.T) {
	h, _, logs := newTest(t, func(o *Options) {
		o.Releases = sampleReleases()
		o.UIBaseURL = "http://127.0.0.1:8233/"
		o.Namespace = "shops"
	})
	code, page, hdr := getPage(t, h, "/")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, content type %q", code, hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		"<h2 id=\"app-shop\">shop</h2>", "b2b", "outlet",
		"12-3f9a2c1", "3f9a2c1", "3.0 MiB", "512 B", "2024-05-01 11:00 UTC", "2024-05-01 10:00 UTC",
		"Fix &lt;script&gt;alert(1)&lt;/script&gt; cart", "Alice &amp; Bob",
		`href="http://127.0.0.1:8233/namespaces/shops/workflows/build%2Fshop%2F` + sha + `"`,
		"could not list releases", "No releases yet.", "<code>main</code> → production",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "body text") {
		t.Error("page contains unescaped markup or more than the first message line")
	}
	if strings.Index(page, "12-3f9a2c1") > strings.Index(page, "11-aaaaaaa") {
		t.Error("releases not listed newest first")
	}
	if strings.Contains(page, "secret-bucket") || !strings.Contains(logs.String(), "secret-bucket") {
		t.Error("listing error must be logged, not shown")
	}
	if code, _, _ := getPage(t, h, "/nope"); code != http.StatusNotFound {
		t.Errorf("/nope: %d", code)
	}
}

func TestDashboardTruncatesAndWithoutReleases(t *testing.T) {
	many := make([]release.Meta, maxDashboardReleases+5)
	for i := range many {
		many[i] = release.Meta{ID: release.NewID(len(many)-i, "abcdef1"), Commit: "abcdef1234"}
	}
	h, _, _ := newTest(t, func(o *Options) { o.Releases = fakeReleases{"shop": many} })
	_, page, _ := getPage(t, h, "/")
	if !strings.Contains(page, "Showing the newest 50 of 55") || strings.Contains(page, ">1-abcdef1<") {
		t.Error("long history not truncated to the newest releases")
	}
	if strings.Contains(page, "href=\"/namespaces") {
		t.Error("workflow link without UIBaseURL")
	}

	h, _, _ = newTest(t, nil)
	_, page, _ = getPage(t, h, "/")
	if !strings.Contains(page, "Release listing is not configured") {
		t.Error("missing notice for absent Releases")
	}
}

func TestReleasesAPI(t *testing.T) {
	h, _, _ := newTest(t, func(o *Options) { o.Releases = sampleReleases() })
	code, body, _ := getPage(t, h, "/api/releases?app=shop")
	var metas []release.Meta
	if err := json.Unmarshal([]byte(body), &metas); err != nil || code != http.StatusOK {
		t.Fatalf("status %d body %s: %v", code, body, err)
	}
	if len(metas) != 2 || metas[0].ID != "12-3f9a2c1" || metas[0].WorkflowID != "build/shop/"+sha {
		t.Fatalf("metas %+v", metas)
	}
	if code, body, _ := getPage(t, h, "/api/releases?app=outlet"); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("empty app: %d %s", code, body)
	}
	for path, want := range map[string]int{
		"/api/releases":             http.StatusBadRequest,
		"/api/releases?app=missing": http.StatusNotFound,
		"/api/releases?app=b2b":     http.StatusServiceUnavailable,
	} {
		if code, body, _ := getPage(t, h, path); code != want {
			t.Errorf("%s: %d %s, want %d", path, code, body, want)
		}
	}
	h, _, _ = newTest(t, nil)
	if code, _, _ := getPage(t, h, "/api/releases?app=shop"); code != http.StatusServiceUnavailable {
		t.Errorf("without Releases: %d", code)
	}
}
