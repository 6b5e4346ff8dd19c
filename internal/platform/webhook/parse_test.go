package webhook

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	return b
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// replaceJSON edits a fixture textually so each case shows exactly what
// differs from the realistic payload.
func replaceJSON(t *testing.T, body []byte, old, new string) []byte {
	t.Helper()
	s := string(body)
	if !strings.Contains(s, old) {
		t.Fatalf("fixture does not contain %q", old)
	}
	return []byte(strings.Replace(s, old, new, 1))
}

func TestParseGitHubPush(t *testing.T) {
	body := readTestdata(t, "github_push.json")
	push, err := Parse(GitHub, hdr("X-GitHub-Event", "push", "X-GitHub-Delivery", "d-1"), body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Push{
		Provider: GitHub, Event: "push", DeliveryID: "d-1",
		RepoURLs:     []string{"https://github.com/acme/shop.git", "git@github.com:acme/shop.git", "https://github.com/acme/shop", "git://github.com/acme/shop.git"},
		RepoFullName: "acme/shop", Ref: "refs/heads/main", Branch: "main",
		After:  "3f9a2c1e5b7d4a6c8e0f2b4d6a8c0e1f3a5b7c9d",
		Pusher: "alice", HeadMessage: "Add checkout step\n\nLonger description.",
		Updates: []Update{{Ref: "refs/heads/main", Branch: "main", After: "3f9a2c1e5b7d4a6c8e0f2b4d6a8c0e1f3a5b7c9d",
			HeadMessage: "Add checkout step\n\nLonger description."}},
		PushedAt: time.Unix(1714557600, 0).UTC(),
	}
	if !reflect.DeepEqual(push, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", push, want)
	}
}

func TestParseGitHubIgnoredAndMalformed(t *testing.T) {
	push := readTestdata(t, "github_push.json")
	cases := []struct {
		name      string
		event     string
		body      []byte
		ignored   string // substring of the Ignored reason; "" when malformed is expected
		malformed string
		repoKnown bool
	}{
		{"ping", "ping", readTestdata(t, "github_ping.json"), "ping", "", true},
		{"other event", "issues", []byte(`{"action":"opened","repository":{"clone_url":"https://github.com/acme/shop.git"}}`), "issues is not a push", "", true},
		{"tag push", "push", replaceJSON(t, push, `"refs/heads/main"`, `"refs/tags/v1.2.0"`), "tag push v1.2.0", "", true},
		{"branch deletion flag", "push", replaceJSON(t, push, `"deleted": false`, `"deleted": true`), "deletion of branch main", "", true},
		{"branch deletion zero sha", "push", replaceJSON(t, push, `"3F9A2C1E5B7D4A6C8E0F2B4D6A8C0E1F3A5B7C9D"`, `"0000000000000000000000000000000000000000"`), "deletion of branch main", "", true},
		{"notes ref", "push", replaceJSON(t, push, `"refs/heads/main"`, `"refs/notes/commits"`), "not a branch", "", true},
		{"bad json", "push", []byte(`{"ref": "refs/heads/main",`), "", "invalid JSON", false},
		{"not an object", "push", []byte(`[1,2]`), "", "invalid JSON", false},
		{"trailing document", "push", append(append([]byte{}, push...), []byte(`{"ref":"x"}`)...), "", "trailing data", false},
		{"missing ref", "push", replaceJSON(t, push, `"ref": "refs/heads/main",`, ``), "", "ref is missing", false},
		{"empty branch", "push", replaceJSON(t, push, `"refs/heads/main"`, `"refs/heads/"`), "", "names no branch", false},
		{"missing after", "push", replaceJSON(t, push, `"after": "3F9A2C1E5B7D4A6C8E0F2B4D6A8C0E1F3A5B7C9D",`, ``), "", "after", false},
		{"after not hex", "push", replaceJSON(t, push, `"3F9A2C1E5B7D4A6C8E0F2B4D6A8C0E1F3A5B7C9D"`, `"zz9a2c1e5b7d4a6c8e0f2b4d6a8c0e1f3a5b7c9d"`), "", "not a commit id", false},
		{"missing repository", "push", []byte(`{"ref":"refs/heads/main","after":"3f9a2c1e5b7d4a6c8e0f2b4d6a8c0e1f3a5b7c9d"}`), "", "repository is missing", false},
		{"missing event header", "", push, "", "X-GitHub-Event", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := hdr("X-GitHub-Delivery", "d-2")
			if tc.event != "" {
				h.Set("X-GitHub-Event", tc.event)
			}
			p, err := Parse(GitHub, h, tc.body)
			checkOutcome(t, p, err, tc.ignored, tc.malformed, tc.repoKnown)
		})
	}
}

// checkOutcome asserts an Ignored (with the repository still reported, so
// the server can authenticate it) or a malformed result.
func checkOutcome(t *testing.T, p *Push, err error, ignored, malformed string, repoKnown bool) {
	t.Helper()
	if ignored != "" {
		var ig *Ignored
		if !errors.As(err, &ig) {
			t.Fatalf("err = %v, want *Ignored", err)
		}
		if !strings.Contains(ig.Reason, ignored) {
			t.Errorf("reason %q does not contain %q", ig.Reason, ignored)
		}
		if p == nil {
			t.Fatal("ignored delivery returned no Push")
		}
		if repoKnown && len(p.RepoURLs) == 0 {
			t.Error("ignored delivery lost its repository URLs")
		}
		return
	}
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	if !strings.Contains(err.Error(), malformed) {
		t.Errorf("error %q does not mention %q", err, malformed)
	}
	if p != nil {
		t.Errorf("malformed delivery returned a Push: %+v", p)
	}
}

func TestParseGitLabPush(t *testing.T) {
	body := readTestdata(t, "gitlab_push.json")
	push, err := Parse(GitLab, hdr("X-Gitlab-Event", "Push Hook", "X-Gitlab-Event-UUID", "uuid-1", "Idempotency-Key", "idem-1"), body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Push{
		Provider: GitLab, Event: "Push Hook", DeliveryID: "idem-1",
		RepoURLs:     []string{"https://gitlab.example.com/acme/magento/shop.git", "git@gitlab.example.com:acme/magento/shop.git", "https://gitlab.example.com/acme/magento/shop"},
		RepoFullName: "acme/magento/shop", Ref: "refs/heads/develop", Branch: "develop",
		After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", Pusher: "jsmith", HeadMessage: "Fix cart totals\n\nsee #12",
		Updates: []Update{{Ref: "refs/heads/develop", Branch: "develop", After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", HeadMessage: "Fix cart totals\n\nsee #12"}},
	}
	if !reflect.DeepEqual(push, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", push, want)
	}

	// Without Idempotency-Key (GitLab before 17.4) the event UUID is used.
	push, err = Parse(GitLab, hdr("X-Gitlab-Event-UUID", "uuid-1"), body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if push.DeliveryID != "uuid-1" || push.Event != "push" {
		t.Errorf("DeliveryID, Event = %q, %q; want uuid-1, push (from object_kind)", push.DeliveryID, push.Event)
	}
}

func TestParseGitLabIgnoredAndMalformed(t *testing.T) {
	push := readTestdata(t, "gitlab_push.json")
	cases := []struct {
		name               string
		body               []byte
		ignored, malformed string
		repoKnown          bool
	}{
		{"tag push", readTestdata(t, "gitlab_tag_push.json"), "tag push v1.0.0", "", true},
		{"merge request", []byte(`{"object_kind":"merge_request","project":{"web_url":"https://gitlab.example.com/acme/magento/shop"}}`), "merge_request is not a push", "", true},
		{"deletion", replaceJSON(t, replaceJSON(t, push, `"after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"`, `"after": "0000000000000000000000000000000000000000"`),
			`"checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"`, `"checkout_sha": null`), "deletion of branch develop", "", true},
		{"missing object_kind", replaceJSON(t, push, `"object_kind": "push",`, ``), "", "object_kind", false},
		{"missing project", []byte(`{"object_kind":"push","ref":"refs/heads/main","after":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}`), "", "project is missing", false},
		{"bad sha", replaceJSON(t, push, `"checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"`, `"checkout_sha": "da15"`), "", "not a commit id", false},
		{"bad json", []byte(`{"object_kind":`), "", "invalid JSON", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(GitLab, hdr("X-Gitlab-Event", "Push Hook"), tc.body)
			checkOutcome(t, p, err, tc.ignored, tc.malformed, tc.repoKnown)
		})
	}
}

func TestParseBitbucketPush(t *testing.T) {
	body := readTestdata(t, "bitbucket_push.json")
	push, err := Parse(Bitbucket, hdr("X-Event-Key", "repo:push", "X-Request-UUID", "req-1"), body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Push{
		Provider: Bitbucket, Event: "repo:push", DeliveryID: "req-1",
		RepoURLs:     []string{"https://bitbucket.org/acme/shop", "https://bitbucket.org/acme/shop.git", "git@bitbucket.org:acme/shop.git"},
		RepoFullName: "acme/shop", Ref: "refs/heads/release/2.4", Branch: "release/2.4",
		After: "709d658dc5b6d6afcd46049c2f332ee3f515a67d", Pusher: "bob", HeadMessage: "Bump version\n",
		Updates: []Update{{Ref: "refs/heads/release/2.4", Branch: "release/2.4", After: "709d658dc5b6d6afcd46049c2f332ee3f515a67d", HeadMessage: "Bump version\n"}},
	}
	if !reflect.DeepEqual(push, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", push, want)
	}
}

func TestParseBitbucketIgnoredAndMalformed(t *testing.T) {
	push := readTestdata(t, "bitbucket_push.json")
	repo := `"repository":{"full_name":"acme/shop","links":{"html":{"href":"https://bitbucket.org/acme/shop"}}}`
	branch := `{"new":{"type":"branch","name":"main","target":{"hash":"709d658dc5b6d6afcd46049c2f332ee3f515a67d","message":"m"}},"old":null}`
	cases := []struct {
		name               string
		event              string
		body               []byte
		ignored, malformed string
		repoKnown          bool
		wantBranch         string
	}{
		{"deletion", "repo:push", []byte(`{` + repo + `,"push":{"changes":[{"new":null,"old":{"type":"branch","name":"old-feature"}}]}}`), "deletion of branch old-feature", "", true, ""},
		{"tag", "repo:push", []byte(`{` + repo + `,"push":{"changes":[{"new":{"type":"tag","name":"v2","target":{"hash":"709d658dc5b6d6afcd46049c2f332ee3f515a67d"}}}]}}`), "tag push v2", "", true, ""},
		{"tag then branch builds the branch", "repo:push", []byte(`{` + repo + `,"push":{"changes":[{"new":{"type":"tag","name":"v2"}},` + branch + `]}}`), "", "", true, "main"},
		{"pull request event", "pullrequest:created", []byte(`{` + repo + `}`), "pullrequest:created is not a push", "", true, ""},
		{"missing event header", "", push, "", "X-Event-Key", false, ""},
		{"no changes", "repo:push", []byte(`{` + repo + `,"push":{"changes":[]}}`), "", "push.changes", false, ""},
		{"missing repository", "repo:push", []byte(`{"push":{"changes":[` + branch + `]}}`), "", "repository is missing", false, ""},
		{"missing target", "repo:push", []byte(`{` + repo + `,"push":{"changes":[{"new":{"type":"branch","name":"main"}}]}}`), "", "target is missing", false, ""},
		{"bad hash", "repo:push", replaceJSON(t, push, `"709d658dc5b6d6afcd46049c2f332ee3f515a67d"`, `"709d"`), "", "not a commit id", false, ""},
		{"bad json", "repo:push", []byte(`nope`), "", "invalid JSON", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.event != "" {
				h.Set("X-Event-Key", tc.event)
			}
			p, err := Parse(Bitbucket, h, tc.body)
			if tc.wantBranch != "" {
				if err != nil || p.Branch != tc.wantBranch {
					t.Fatalf("Parse = %+v, %v; want branch %s", p, err, tc.wantBranch)
				}
				return
			}
			checkOutcome(t, p, err, tc.ignored, tc.malformed, tc.repoKnown)
		})
	}
}

func TestParseUnknownProvider(t *testing.T) {
	if _, err := Parse("gitea", http.Header{}, []byte(`{}`)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}
