package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests in this file are attacks: each builds the hostile delivery a
// network client (or someone who captured a genuine delivery) would send,
// posts it over real HTTP to the real handler, and asserts that it starts
// nothing it must not start.

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2"
)

// realServer serves h over TCP so deliveries go through net/http parsing,
// header canonicalisation and body reading like a provider's would.
func realServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

type delivery struct {
	provider string
	headers  map[string]string
	body     []byte
}

func post(t *testing.T, base string, d delivery) (int, hookResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/hooks/"+d.provider, bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range d.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out hookResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// githubPushAt is a GitHub push payload as GitHub sends it, with the
// repository.pushed_at GitHub sets (Unix seconds) inside the signed body.
func githubPushAt(branch, after string, pushedAt time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/" + branch, "before": strings.Repeat("0", 39) + "1", "after": after, "created": false, "deleted": false,
		"repository": map[string]any{"id": 1, "name": "shop", "full_name": "acme/shop", "private": true,
			"clone_url": "https://github.com/acme/shop.git", "ssh_url": "git@github.com:acme/shop.git", "html_url": "https://github.com/acme/shop",
			"created_at": 1700000000, "pushed_at": pushedAt.Unix(), "default_branch": "main"},
		"pusher":      map[string]any{"name": "alice", "email": "alice@example.com"},
		"head_commit": map[string]any{"id": after, "message": "Change", "timestamp": "2020-01-01T00:00:00Z"},
	})
	return b
}

func signedGitHub(event, id string, body []byte) delivery {
	return delivery{provider: "github", body: body, headers: map[string]string{
		"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": id,
		"X-Hub-Signature-256": sign(ghSecret, body),
	}}
}

func bitbucketChange(branch, hash string) map[string]any {
	return map[string]any{
		"new": map[string]any{"type": "branch", "name": branch, "target": map[string]any{"type": "commit", "hash": hash, "message": "m\n", "date": "2020-01-01T00:00:00+00:00"}},
		"old": map[string]any{"type": "branch", "name": branch, "target": map[string]any{"type": "commit", "hash": strings.Repeat("1", 40)}},
	}
}

func bitbucketPush(changes ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{
		"actor":      map[string]any{"display_name": "Bob", "nickname": "bob"},
		"repository": map[string]any{"type": "repository", "full_name": "acme/outlet", "links": map[string]any{"html": map[string]any{"href": "https://bitbucket.org/acme/outlet"}}},
		"push":       map[string]any{"changes": changes},
	})
	return b
}

func signedBitbucket(id string, body []byte) delivery {
	return delivery{provider: "bitbucket", body: body, headers: map[string]string{
		"Content-Type": "application/json", "X-Event-Key": "repo:push", "X-Request-UUID": id,
		"X-Hook-UUID": "{11111111-2222-3333-4444-555555555555}", "X-Attempt-Number": "1",
		"X-Hub-Signature": sign(bbSecret, body),
	}}
}

// TestAttackReplayStaleGitHubPush: a signed delivery captured hours ago
// (proxy log, a leaked delivery page) is replayed, once with its own
// delivery id and once with a fresh one. Neither may start a build: with
// the build's workflow history gone (retention) or its build failed, the
// start would build and auto-deploy the old commit.
func TestAttackReplayStaleGitHubPush(t *testing.T) {
	h, fb, _ := newTest(t, nil)
	base := realServer(t, h)
	captured := githubPushAt("main", shaA, time.Now().Add(-3*time.Hour))
	for _, id := range []string{"captured-delivery-id", "fresh-id-chosen-by-attacker"} {
		code, resp := post(t, base, signedGitHub("push", id, captured))
		if code/100 == 2 || len(fb.Calls()) != 0 {
			t.Fatalf("stale replay (id %s): %d %+v, StartBuild calls %+v", id, code, resp, fb.Calls())
		}
		if msg := strings.ToLower(resp.Error); !strings.Contains(msg, "push again") || !strings.Contains(msg, "mageflow build --app shop --ref "+shaA) {
			t.Errorf("stale answer does not say what to do instead: %q", resp.Error)
		}
	}
}

// TestAttackReplayOlderPushAfterNewer: A then B are pushed to main (auto-
// deploying production); replaying A's genuine delivery, even within the
// freshness window and under a new delivery id, must not start A again,
// which would move production back to A if A's build had failed once.
func TestAttackReplayOlderPushAfterNewer(t *testing.T) {
	h, fb, _ := newTest(t, nil)
	base := realServer(t, h)
	now := time.Now()
	pushA := githubPushAt("main", shaA, now.Add(-5*time.Minute))
	pushB := githubPushAt("main", shaB, now.Add(-1*time.Minute))
	for _, d := range []delivery{signedGitHub("push", "d-A", pushA), signedGitHub("push", "d-B", pushB)} {
		if code, resp := post(t, base, d); code != http.StatusAccepted || resp.Status != "accepted" {
			t.Fatalf("genuine push: %d %+v", code, resp)
		}
	}
	code, resp := post(t, base, signedGitHub("push", "replayed-with-new-id", pushA))
	if code != http.StatusConflict || len(fb.Calls()) != 2 {
		t.Fatalf("replay of the older push: %d %+v, StartBuild calls %d (want 409 and 2)", code, resp, len(fb.Calls()))
	}
	if !strings.Contains(resp.Error, shaB[:12]) || !strings.Contains(resp.Error, "mageflow deploy") {
		t.Errorf("answer does not name the newer commit and the way to deploy the old one on purpose: %q", resp.Error)
	}
	// Bitbucket payloads carry no push time: the order of accepted pushes
	// is what protects, under a fresh X-Request-UUID too.
	oldPush := bitbucketPush(bitbucketChange("release/2.4", shaA))
	for i, d := range []delivery{signedBitbucket("r-A", oldPush), signedBitbucket("r-B", bitbucketPush(bitbucketChange("release/2.4", shaB)))} {
		if code, resp := post(t, base, d); code != http.StatusAccepted {
			t.Fatalf("bitbucket push %d: %d %+v", i, code, resp)
		}
	}
	if code, resp := post(t, base, signedBitbucket("r-replayed", oldPush)); code != http.StatusConflict || len(fb.Calls()) != 4 {
		t.Fatalf("bitbucket replay of the older push: %d %+v, StartBuild calls %d (want 409 and 4)", code, resp, len(fb.Calls()))
	}
}

// TestAttackRedeliveryStartsNothing: the same delivery id again (a
// provider's retry, GitHub's "Redeliver", or a replay) is answered 2xx
// "duplicate" without calling Temporal.
func TestAttackRedeliveryStartsNothing(t *testing.T) {
	h, fb, _ := newTest(t, nil)
	base := realServer(t, h)
	d := signedGitHub("push", "d-1", githubPushAt("main", shaA, time.Now()))
	if code, _ := post(t, base, d); code != http.StatusAccepted {
		t.Fatal(code)
	}
	for i := 0; i < 3; i++ {
		code, resp := post(t, base, d)
		if code != http.StatusAccepted || resp.Status != "duplicate" || !strings.Contains(resp.Reason, "duplicate delivery") {
			t.Fatalf("redelivery: %d %+v", code, resp)
		}
	}
	if n := len(fb.Calls()); n != 1 {
		t.Fatalf("StartBuild called %d times for one delivery", n)
	}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "platform", "webhook", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBitbucketEveryMappedBranchBuilds: a Bitbucket delivery of
// `git push --all` whose first change is an unmapped branch must still
// build the mapped production branch behind it; two mapped branches build
// twice, each under its own commit's workflow id; the redelivery builds
// nothing more.
func TestBitbucketEveryMappedBranchBuilds(t *testing.T) {
	h, fb, _ := newTest(t, func(o *Options) {
		o.Apps[2].Branches = map[string]string{"release/2.4": "production", "main": "staging"}
	})
	base := realServer(t, h)
	body := readFixture(t, "bitbucket_push_multi.json") // feature/wishlist, release/2.4, tag v2.4.1, main
	body = bytes.ReplaceAll(body, []byte("acme/shop"), []byte("acme/outlet"))
	code, resp := post(t, base, signedBitbucket("r-multi", body))
	if code != http.StatusAccepted || resp.Status != "accepted" {
		t.Fatalf("multi-branch delivery: %d %+v", code, resp)
	}
	calls := fb.Calls()
	if len(calls) != 2 || calls[0].Branch != "release/2.4" || calls[0].Commit != "709d658dc5b6d6afcd46049c2f332ee3f515a67d" ||
		calls[1].Branch != "main" || calls[1].Commit != "8e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b" {
		t.Fatalf("StartBuild calls %+v, want release/2.4 then main", calls)
	}
	if len(resp.Builds) != 2 || resp.Builds[0].Environment != "production" || resp.Builds[1].Environment != "staging" ||
		resp.Builds[0].WorkflowID == resp.Builds[1].WorkflowID {
		t.Fatalf("answer lists %+v", resp.Builds)
	}
	if code, resp := post(t, base, signedBitbucket("r-multi", body)); code != http.StatusAccepted || resp.Status != "duplicate" || len(fb.Calls()) != 2 {
		t.Fatalf("redelivery: %d %+v, calls %d", code, resp, len(fb.Calls()))
	}

	// Only the unmapped branch first, the mapped one second.
	h, fb, _ = newTest(t, nil)
	base = realServer(t, h)
	code, resp = post(t, base, signedBitbucket("r-2", bitbucketPush(bitbucketChange("feature/x", shaA), bitbucketChange("release/2.4", shaB))))
	if calls := fb.Calls(); code != http.StatusAccepted || len(calls) != 1 || calls[0].Branch != "release/2.4" || calls[0].Commit != shaB {
		t.Fatalf("unmapped first branch hid the mapped one: %d %+v, calls %+v", code, resp, calls)
	}
}

// TestGitHubFormEncodedDelivery: GitHub's default content type is
// application/x-www-form-urlencoded. The signature covers the raw form
// body, so a form delivery signed over that body builds, and one whose
// signature was computed over the JSON inside (what a forwarder that
// re-encodes would produce) is refused.
func TestGitHubFormEncodedDelivery(t *testing.T) {
	h, fb, _ := newTest(t, nil)
	base := realServer(t, h)
	doc := githubPushAt("main", shaA, time.Now())
	form := []byte(url.Values{"payload": {string(doc)}}.Encode())
	d := signedGitHub("push", "f-1", form)
	d.headers["Content-Type"] = "application/x-www-form-urlencoded"
	if code, resp := post(t, base, d); code != http.StatusAccepted || resp.Status != "accepted" || resp.Commit != shaA {
		t.Fatalf("form delivery: %d %+v", code, resp)
	}
	d.headers["X-GitHub-Delivery"] = "f-2"
	d.headers["X-Hub-Signature-256"] = sign(ghSecret, doc)
	code, resp := post(t, base, d)
	if code != http.StatusUnauthorized || resp.Check != "signature-mismatch" || len(fb.Calls()) != 1 {
		t.Fatalf("form delivery signed over the inner JSON: %d %+v, calls %d", code, resp, len(fb.Calls()))
	}
}

// TestPingsAreAcknowledged: organization and GitHub App webhooks ping
// without a repository, and a repository ping may come before the app is
// configured; all get 202 with a reason, and none starts anything.
func TestPingsAreAcknowledged(t *testing.T) {
	h, fb, _ := newTest(t, nil)
	base := realServer(t, h)
	pingOther, _ := json.Marshal(map[string]any{"zen": "z", "hook_id": 1, "repository": map[string]any{"full_name": "acme/blog", "clone_url": "https://github.com/acme/blog.git"}})
	cases := map[string]struct {
		body   []byte
		reason string
	}{
		"organization": {readFixture(t, "github_ping_org.json"), "names no repository"},
		"github app":   {readFixture(t, "github_ping_app.json"), "names no repository"},
		"unconfigured": {pingOther, "no app is configured"},
	}
	for name, tc := range cases {
		for _, signed := range []bool{true, false} {
			d := signedGitHub("ping", "p", tc.body)
			if !signed {
				delete(d.headers, "X-Hub-Signature-256")
			}
			code, resp := post(t, base, d)
			if code != http.StatusAccepted || resp.Status != "ignored" || !strings.Contains(resp.Reason, tc.reason) {
				t.Errorf("%s ping (signed %v): %d %+v", name, signed, code, resp)
			}
		}
	}
	if len(fb.Calls()) != 0 {
		t.Fatalf("a ping started %+v", fb.Calls())
	}
}

// TestUnauthenticatedAnswersNameTheCheck: a 401 says which check failed so
// the operator knows what to fix, and never contains the secret or the
// signature the server expected.
func TestUnauthenticatedAnswersNameTheCheck(t *testing.T) {
	h, fb, logs := newTest(t, nil)
	base := realServer(t, h)
	body := githubPushAt("main", shaA, time.Now())
	missing := signedGitHub("push", "x", body)
	delete(missing.headers, "X-Hub-Signature-256")
	wrong := signedGitHub("push", "x", body)
	wrong.headers["X-Hub-Signature-256"] = sign("guessed-secret", body)
	glBody := []byte(`{"object_kind":"push","ref":"refs/heads/main","after":"` + shaA + `","project":{"git_http_url":"https://gitlab.example.com/acme/b2b.git"}}`)
	glMissing := delivery{provider: "gitlab", body: glBody, headers: map[string]string{"X-Gitlab-Event": "Push Hook"}}
	glWrong := delivery{provider: "gitlab", body: glBody, headers: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": glSecret + "x"}}
	cases := []struct {
		name  string
		d     delivery
		check string
		hint  string
	}{
		{"github signature missing", missing, "signature-missing", "is missing"},
		{"github signature mismatch", wrong, "signature-mismatch", "does not match"},
		{"gitlab token missing", glMissing, "token-missing", "X-Gitlab-Token is missing"},
		{"gitlab token mismatch", glWrong, "token-mismatch", "X-Gitlab-Token does not match"},
	}
	for _, tc := range cases {
		code, resp := post(t, base, tc.d)
		if code != http.StatusUnauthorized || resp.Check != tc.check || !strings.Contains(resp.Error, tc.hint) {
			t.Errorf("%s: %d %+v, want 401 check %s mentioning %q", tc.name, code, resp, tc.check, tc.hint)
		}
		for _, leak := range []string{ghSecret, glSecret, sign(ghSecret, body)[7:]} {
			if strings.Contains(resp.Error, leak) || strings.Contains(logs.String(), leak) {
				t.Errorf("%s: answer or log leaks %q", tc.name, leak)
			}
		}
	}
	if len(fb.Calls()) != 0 {
		t.Fatal("an unauthenticated delivery started a build")
	}
}

// FuzzHookBitbucket: whatever the changes of a Bitbucket delivery, an
// unsigned one starts nothing, and a signed one starts only branches the
// app maps, each at most once per delivery.
func FuzzHookBitbucket(f *testing.F) {
	f.Add(readFixture(f, "bitbucket_push_multi.json"), true)
	f.Add(bitbucketPush(bitbucketChange("feature/x", shaA), bitbucketChange("release/2.4", shaB)), true)
	f.Add(bitbucketPush(bitbucketChange("release/2.4", shaB)), false)
	f.Add([]byte(`{"repository":{"full_name":"acme/outlet"},"push":{"changes":[{"new":null,"old":{"type":"branch","name":"x"}}]}}`), true)
	f.Fuzz(func(t *testing.T, body []byte, signed bool) {
		h, fb, _ := newTest(t, nil)
		d := signedBitbucket("r", body)
		if !signed {
			delete(d.headers, "X-Hub-Signature")
		}
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/hooks/bitbucket", bytes.NewReader(body))
		for k, v := range d.headers {
			req.Header.Set(k, v)
		}
		h.ServeHTTP(w, req)
		calls := fb.Calls()
		if !signed && len(calls) > 0 {
			t.Fatalf("unsigned delivery started %+v", calls)
		}
		seen := map[string]bool{}
		for _, c := range calls {
			if c.App != "outlet" || c.Branch != "release/2.4" || seen[c.Commit] {
				t.Fatalf("unexpected start %+v (all: %+v)", c, calls)
			}
			seen[c.Commit] = true
		}
	})
}
