package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mageflow/mageflow/internal/platform/webhook"
)

// fakeBuilds records StartBuild calls. Like the real implementation, it
// derives the workflow id from app and commit.
type fakeBuilds struct {
	mu    sync.Mutex
	calls []BuildRequest
	err   error
}

func (f *fakeBuilds) StartBuild(_ context.Context, req BuildRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	if f.err != nil {
		return "", f.err
	}
	return "build-" + req.App + "-" + req.Commit, nil
}

func (f *fakeBuilds) Calls() []BuildRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]BuildRequest(nil), f.calls...)
}

const (
	ghSecret = "gh-secret-123"
	glSecret = "gl-token-456"
	bbSecret = "bb-secret-789"
	sha      = "3f9a2c1e5b7d4a6c8e0f2b4d6a8c0e1f3a5b7c9d"
)

func secretOf(s string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(s), nil }
}

func testApps() []App {
	return []App{
		{Name: "shop", RepoURL: "git@github.com:acme/shop.git", Provider: webhook.GitHub, Secret: secretOf(ghSecret),
			Branches: map[string]string{"main": "production", "develop": "staging"}},
		{Name: "b2b", RepoURL: "https://gitlab.example.com/acme/b2b.git", Provider: webhook.GitLab, Secret: secretOf(glSecret),
			Branches: map[string]string{"main": "production"}},
		{Name: "outlet", RepoURL: "https://bitbucket.org/acme/outlet", Provider: webhook.Bitbucket, Secret: secretOf(bbSecret),
			Branches: map[string]string{"release/2.4": "production"}},
	}
}

func newTest(t *testing.T, mod func(*Options)) (http.Handler, *fakeBuilds, *bytes.Buffer) {
	t.Helper()
	fb := &fakeBuilds{}
	logs := &bytes.Buffer{}
	opt := Options{Apps: testApps(), Builds: fb, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&opt)
	}
	return New(opt), fb, logs
}

func githubPush(repo, ref, after string, deleted bool) []byte {
	b, _ := json.Marshal(map[string]any{
		"ref": ref, "after": after, "deleted": deleted,
		"repository":  map[string]any{"full_name": "acme/" + repo, "clone_url": "https://github.com/acme/" + repo + ".git", "ssh_url": "git@github.com:acme/" + repo + ".git", "html_url": "https://github.com/acme/" + repo},
		"pusher":      map[string]any{"name": "alice"},
		"head_commit": map[string]any{"message": "Fix cart\n\ndetails"},
	})
	return b
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func githubReq(event, delivery, secret string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/github", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-GitHub-Event", event)
	r.Header.Set("X-GitHub-Delivery", delivery)
	if secret != "" {
		r.Header.Set("X-Hub-Signature-256", sign(secret, body))
	}
	return r
}

func serve(h http.Handler, r *http.Request) (int, hookResponse, http.Header) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var resp hookResponse
	_ = json.Unmarshal(w.Body.Bytes(), &resp)
	return w.Code, resp, w.Header()
}

func TestGitHubPushAccepted(t *testing.T) {
	h, fb, _ := newTest(t, nil)
	code, resp, _ := serve(h, githubReq("push", "d-1", ghSecret, githubPush("shop", "refs/heads/main", sha, false)))
	if code != http.StatusAccepted || resp.Status != "accepted" {
		t.Fatalf("status %d %+v", code, resp)
	}
	want := BuildRequest{App: "shop", Ref: "refs/heads/main", Commit: sha, Branch: "main", Trigger: "webhook:github", DeliveryID: "d-1", Sender: "alice"}
	calls := fb.Calls()
	if len(calls) != 1 || calls[0] != want {
		t.Fatalf("StartBuild calls %+v, want [%+v]", calls, want)
	}
	if resp.WorkflowID != "build-shop-"+sha || resp.App != "shop" || resp.Commit != sha || resp.Environment != "production" || resp.Builds != nil {
		t.Fatalf("response %+v", resp)
	}
}

func TestDuplicateDelivery(t *testing.T) {
	h, fb, _ := newTest(t, nil)
	body := githubPush("shop", "refs/heads/main", sha, false)
	_, first, _ := serve(h, githubReq("push", "d-1", ghSecret, body))
	code, dup, _ := serve(h, githubReq("push", "d-1", ghSecret, body))
	if code != http.StatusAccepted || dup.Status != "duplicate" || dup.WorkflowID != first.WorkflowID || dup.WorkflowID == "" {
		t.Fatalf("duplicate: %d %+v (first %+v)", code, dup, first)
	}
	if n := len(fb.Calls()); n != 1 {
		t.Fatalf("StartBuild called %d times for one delivery", n)
	}
	// A different delivery of the same commit reaches Builds, whose
	// commit-derived workflow id makes it the same build.
	_, other, _ := serve(h, githubReq("push", "d-2", ghSecret, body))
	if other.Status != "accepted" || other.WorkflowID != first.WorkflowID || len(fb.Calls()) != 2 {
		t.Fatalf("second delivery: %+v, calls %d", other, len(fb.Calls()))
	}
}

func TestDuplicateRequiresSignature(t *testing.T) {
	h, _, _ := newTest(t, nil)
	body := githubPush("shop", "refs/heads/main", sha, false)
	serve(h, githubReq("push", "d-1", ghSecret, body))
	// Replaying a known delivery id unsigned must not reveal the workflow id.
	code, resp, _ := serve(h, githubReq("push", "d-1", "", body))
	if code != http.StatusUnauthorized || resp.WorkflowID != "" {
		t.Fatalf("unsigned replay: %d %+v", code, resp)
	}
}

func TestSignatureFailures(t *testing.T) {
	body := githubPush("shop", "refs/heads/main", sha, false)
	cases := map[string]*http.Request{
		"missing": githubReq("push", "d", "", body),
		"wrong":   githubReq("push", "d", "not-the-secret", body),
		"other body": func() *http.Request {
			r := githubReq("push", "d", ghSecret, body)
			r.Header.Set("X-Hub-Signature-256", sign(ghSecret, body[1:]))
			return r
		}(),
		"ping": githubReq("ping", "d", "", body),
		"tag":  githubReq("push", "d", "", githubPush("shop", "refs/tags/v1", sha, false)),
		"garbage sig": func() *http.Request {
			r := githubReq("push", "d", "", body)
			r.Header.Set("X-Hub-Signature-256", "sha256=zz")
			return r
		}(),
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			h, fb, logs := newTest(t, nil)
			code, resp, _ := serve(h, req)
			if code != http.StatusUnauthorized || resp.Status != "error" {
				t.Fatalf("status %d %+v, want 401", code, resp)
			}
			if len(fb.Calls()) != 0 {
				t.Fatal("unsigned request started a build")
			}
			if strings.Contains(logs.String(), ghSecret) || strings.Contains(resp.Error, ghSecret) {
				t.Fatal("secret leaked into logs or response")
			}
		})
	}
}

func TestRejections(t *testing.T) {
	cases := []struct {
		name string
		req  *http.Request
		code int
	}{
		{"unknown repository", githubReq("push", "d", ghSecret, githubPush("other", "refs/heads/main", sha, false)), http.StatusNotFound},
		{"malformed json", githubReq("push", "d", ghSecret, []byte(`{"ref":`)), http.StatusBadRequest},
		{"missing after", githubReq("push", "d", ghSecret, githubPush("shop", "refs/heads/main", "", false)), http.StatusBadRequest},
		{"missing event header", githubReq("", "d", ghSecret, githubPush("shop", "refs/heads/main", sha, false)), http.StatusBadRequest},
		{"unknown provider", httptest.NewRequest(http.MethodPost, "/hooks/gitea", strings.NewReader("{}")), http.StatusNotFound},
		{"GET on hook", httptest.NewRequest(http.MethodGet, "/hooks/github", nil), http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, fb, _ := newTest(t, nil)
			if code, resp, _ := serve(h, tc.req); code != tc.code {
				t.Fatalf("status %d %+v, want %d", code, resp, tc.code)
			}
			if len(fb.Calls()) != 0 {
				t.Fatal("build started")
			}
		})
	}
}

func TestIgnoredEvents(t *testing.T) {
	ping, _ := json.Marshal(map[string]any{"zen": "hi", "repository": map[string]any{"clone_url": "https://github.com/acme/shop.git"}})
	cases := []struct {
		name, event string
		body        []byte
		reason      string
	}{
		{"ping", "ping", ping, "ping"},
		{"tag", "push", githubPush("shop", "refs/tags/v1.0", sha, false), "tag push v1.0"},
		{"deletion", "push", githubPush("shop", "refs/heads/feature", "0000000000000000000000000000000000000000", true), "deletion of branch feature"},
		{"other event", "issues", ping, "not a push"},
		{"unmapped branch", "push", githubPush("shop", "refs/heads/feature/x", sha, false), "branch feature/x is not mapped to an environment of app shop"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, fb, _ := newTest(t, nil)
			code, resp, _ := serve(h, githubReq(tc.event, "d", ghSecret, tc.body))
			if code != http.StatusAccepted || resp.Status != "ignored" || !strings.Contains(resp.Reason, tc.reason) {
				t.Fatalf("status %d %+v, want 202 ignored %q", code, resp, tc.reason)
			}
			if len(fb.Calls()) != 0 {
				t.Fatal("build started")
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	h, fb, _ := newTest(t, func(o *Options) { o.MaxBody = 1024 })
	big := githubPush("shop", "refs/heads/main", sha, false)
	big = append(big[:len(big)-1], []byte(`,"pad":"`+strings.Repeat("x", 2048)+`"}`)...)

	// Declared length over the limit: refused before reading.
	code, _, _ := serve(h, githubReq("push", "d", ghSecret, big))
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared: status %d, want 413", code)
	}
	// Unknown length (chunked): refused while reading, through a real server.
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hooks/github", io.MultiReader(bytes.NewReader(big)))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", sign(ghSecret, big))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: status %d, want 413", resp.StatusCode)
	}
	if len(fb.Calls()) != 0 {
		t.Fatal("build started")
	}
	// Just under the limit still works.
	small := githubPush("shop", "refs/heads/main", sha, false)
	if code, resp, _ := serve(h, githubReq("push", "d2", ghSecret, small)); code != http.StatusAccepted {
		t.Fatalf("small body: %d %+v", code, resp)
	}
}

func TestBuildsErrorIsRetryable(t *testing.T) {
	h, fb, logs := newTest(t, nil)
	fb.err = errors.New("dial tcp 10.0.0.5:7233: connection refused")
	body := githubPush("shop", "refs/heads/main", sha, false)
	code, resp, hdr := serve(h, githubReq("push", "d-1", ghSecret, body))
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || resp.RetryAfter == 0 {
		t.Fatalf("status %d %+v Retry-After %q", code, resp, hdr.Get("Retry-After"))
	}
	if strings.Contains(resp.Error, "10.0.0.5") || !strings.Contains(logs.String(), "10.0.0.5") {
		t.Fatal("internal error must be logged, not sent to the provider")
	}
	// The failure is not remembered: the provider's redelivery starts it.
	fb.err = nil
	if code, resp, _ := serve(h, githubReq("push", "d-1", ghSecret, body)); code != http.StatusAccepted || resp.Status != "accepted" {
		t.Fatalf("redelivery: %d %+v", code, resp)
	}
}

func TestSecretReadFailure(t *testing.T) {
	h, fb, _ := newTest(t, func(o *Options) {
		o.Apps[0].Secret = func() ([]byte, error) { return nil, errors.New("open /etc/mageflow/gh.secret: permission denied") }
	})
	code, resp, _ := serve(h, githubReq("push", "d", ghSecret, githubPush("shop", "refs/heads/main", sha, false)))
	if code != http.StatusServiceUnavailable || len(fb.Calls()) != 0 {
		t.Fatalf("status %d %+v", code, resp)
	}
}

func TestSharedRepository(t *testing.T) {
	// Two apps on one repository with different secrets: a delivery signed
	// for one builds only that one. Two apps sharing a secret both build.
	h, fb, _ := newTest(t, func(o *Options) {
		o.Apps = []App{
			{Name: "shop-eu", RepoURL: "https://github.com/acme/shop", Provider: webhook.GitHub, Secret: secretOf("eu"), Branches: map[string]string{"main": "prod-eu"}},
			{Name: "shop-us", RepoURL: "https://github.com/acme/shop", Provider: webhook.GitHub, Secret: secretOf("us"), Branches: map[string]string{"main": "prod-us"}},
			{Name: "shop-us-staging", RepoURL: "git@github.com:acme/shop", Provider: webhook.GitHub, Secret: secretOf("us"), Branches: map[string]string{"develop": "staging"}},
			{Name: "shop-gl", RepoURL: "https://github.com/acme/shop", Provider: webhook.GitLab, Secret: secretOf("eu"), Branches: map[string]string{"main": "x"}},
		}
	})
	body := githubPush("shop", "refs/heads/main", sha, false)
	_, resp, _ := serve(h, githubReq("push", "d-1", "eu", body))
	if calls := fb.Calls(); len(calls) != 1 || calls[0].App != "shop-eu" || resp.App != "shop-eu" {
		t.Fatalf("eu delivery built %+v", calls)
	}
	_, resp, _ = serve(h, githubReq("push", "d-2", "us", body))
	if calls := fb.Calls(); len(calls) != 2 || calls[1].App != "shop-us" || resp.Environment != "prod-us" {
		t.Fatalf("us delivery built %+v, response %+v", calls, resp)
	}

	h, fb, _ = newTest(t, func(o *Options) {
		o.Apps = []App{
			{Name: "a", RepoURL: "https://github.com/acme/shop", Provider: webhook.GitHub, Secret: secretOf("s"), Branches: map[string]string{"main": "prod"}},
			{Name: "b", RepoURL: "https://github.com/acme/shop", Provider: webhook.GitHub, Secret: secretOf("s"), Branches: map[string]string{"main": "prod"}},
		}
	})
	_, resp, _ = serve(h, githubReq("push", "d-3", "s", body))
	if len(fb.Calls()) != 2 || len(resp.Builds) != 2 || resp.Builds[1].App != "b" || resp.Builds[1].WorkflowID != "build-b-"+sha {
		t.Fatalf("shared secret: calls %+v response %+v", fb.Calls(), resp)
	}
}

func TestGitLabPush(t *testing.T) {
	body := []byte(fmt.Sprintf(`{"object_kind":"push","ref":"refs/heads/main","after":%q,"checkout_sha":%q,"user_username":"jsmith",
		"project":{"path_with_namespace":"acme/b2b","git_http_url":"https://gitlab.example.com/acme/b2b.git","git_ssh_url":"git@gitlab.example.com:acme/b2b.git","web_url":"https://gitlab.example.com/acme/b2b"},
		"commits":[{"id":%q,"message":"m"}]}`, sha, sha, sha))
	req := func(token string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hooks/gitlab", bytes.NewReader(body))
		r.Header.Set("X-Gitlab-Event", "Push Hook")
		r.Header.Set("X-Gitlab-Event-UUID", "gl-1")
		if token != "" {
			r.Header.Set("X-Gitlab-Token", token)
		}
		return r
	}
	h, fb, _ := newTest(t, nil)
	if code, resp, _ := serve(h, req("wrong")); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d %+v", code, resp)
	}
	// A GitHub-style signature is not a GitLab token.
	r := req("")
	r.Header.Set("X-Hub-Signature-256", sign(glSecret, body))
	if code, _, _ := serve(h, r); code != http.StatusUnauthorized {
		t.Fatalf("hmac on gitlab: %d", code)
	}
	code, resp, _ := serve(h, req(glSecret))
	calls := fb.Calls()
	if code != http.StatusAccepted || len(calls) != 1 || calls[0].App != "b2b" || calls[0].Trigger != "webhook:gitlab" || calls[0].DeliveryID != "gl-1" || calls[0].Sender != "jsmith" {
		t.Fatalf("status %d %+v calls %+v", code, resp, calls)
	}
}

func TestBitbucketPush(t *testing.T) {
	body := []byte(fmt.Sprintf(`{"actor":{"nickname":"bob"},"repository":{"full_name":"acme/outlet","links":{"html":{"href":"https://bitbucket.org/acme/outlet"}}},
		"push":{"changes":[{"new":{"type":"branch","name":"release/2.4","target":{"hash":%q,"message":"Bump"}}}]}}`, sha))
	req := func(secret string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hooks/bitbucket", bytes.NewReader(body))
		r.Header.Set("X-Event-Key", "repo:push")
		r.Header.Set("X-Request-UUID", "bb-1")
		r.Header.Set("X-Hub-Signature", sign(secret, body))
		return r
	}
	h, fb, _ := newTest(t, nil)
	if code, _, _ := serve(h, req("nope")); code != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", code)
	}
	code, resp, _ := serve(h, req(bbSecret))
	calls := fb.Calls()
	if code != http.StatusAccepted || len(calls) != 1 || calls[0].App != "outlet" || calls[0].Branch != "release/2.4" || calls[0].Trigger != "webhook:bitbucket" {
		t.Fatalf("status %d %+v calls %+v", code, resp, calls)
	}
}

func TestHealthz(t *testing.T) {
	h, _, _ := newTest(t, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != "ok" {
		t.Fatalf("healthz %d %q", w.Code, w.Body)
	}
	h, _, _ = newTest(t, func(o *Options) {
		o.Ready = func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline")
			}
			return errors.New("temporal unreachable at 127.0.0.1:7233")
		}
	})
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "temporal unreachable") {
		t.Fatalf("not ready: %d %q", w.Code, w.Body)
	}
}

func TestCodecMounted(t *testing.T) {
	var gotPath string
	h, _, _ := newTest(t, func(o *Options) {
		o.Codec = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gotPath = r.URL.Path; w.WriteHeader(http.StatusTeapot) })
		o.LoopbackOnly = true // no credentials: open only on loopback (codec_auth_test.go)
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/codec/decode", strings.NewReader("{}")))
	if w.Code != http.StatusTeapot || gotPath != "/decode" {
		t.Fatalf("codec: status %d path %q, want /decode (the Temporal handler matches on that suffix)", w.Code, gotPath)
	}
	h, _, _ = newTest(t, nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/codec/decode", nil))
	if w.Code != http.StatusNotFound {
		t.Fatalf("codec without Options.Codec: %d", w.Code)
	}
}

func TestAccessLog(t *testing.T) {
	h, _, logs := newTest(t, nil)
	serve(h, githubReq("push", "d-1", ghSecret, githubPush("shop", "refs/heads/main", sha, false)))
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `msg="http request"`) {
			line = l
		}
	}
	for _, want := range []string{"method=POST", "path=/hooks/github", "status=202", "duration="} {
		if !strings.Contains(line, want) {
			t.Errorf("access log line %q lacks %s", line, want)
		}
	}
}

func TestLRUEvicts(t *testing.T) {
	c := newLRU(2)
	a := accepted{commit: "a", builds: []startedBuild{{WorkflowID: "wa"}}}
	c.add("a", a)
	c.add("b", accepted{commit: "b"})
	if _, ok := c.get("a"); !ok { // touch a: b is now least recent
		t.Fatal("a missing")
	}
	c.add("c", accepted{commit: "c"})
	if _, ok := c.get("b"); ok {
		t.Fatal("least recently used entry not evicted")
	}
	if v, ok := c.get("a"); !ok || v.builds[0].WorkflowID != "wa" {
		t.Fatal("recent entry evicted")
	}
	if c.len() != 2 {
		t.Fatalf("len %d, want 2", c.len())
	}
}
