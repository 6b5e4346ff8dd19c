package webhook

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// checkParseInvariants states what the server relies on for any input: no
// panic, exactly one of success / Ignored / ErrMalformed, and a successful
// result always names a branch and a valid commit.
func checkParseInvariants(t *testing.T, p *Push, err error) {
	t.Helper()
	var ig *Ignored
	switch {
	case err == nil:
		if p == nil || p.Branch == "" || p.Ref != "refs/heads/"+p.Branch || p.Deleted || p.Tag != "" {
			t.Fatalf("accepted push is incomplete: %+v", p)
		}
		if len(p.Updates) == 0 || p.Updates[0].Branch != p.Branch || p.Updates[0].After != p.After {
			t.Fatalf("accepted push does not list its first update: %+v", p)
		}
		for _, u := range p.Updates {
			if u.Branch == "" || u.Ref != "refs/heads/"+u.Branch {
				t.Fatalf("update names no branch: %+v", u)
			}
			if _, e := normalizeSHA("after", u.After); e != nil || isZeroSHA(u.After) || u.After != strings.ToLower(u.After) {
				t.Fatalf("update has invalid After %q", u.After)
			}
		}
	case errors.As(err, &ig):
		if p == nil || ig.Reason == "" {
			t.Fatalf("ignored without Push or reason: %+v, %v", p, err)
		}
	case errors.Is(err, ErrMalformed):
		if p != nil {
			t.Fatalf("malformed delivery returned a Push: %+v", p)
		}
	default:
		t.Fatalf("unexpected error kind: %v", err)
	}
}

func FuzzParseGitHub(f *testing.F) {
	f.Add("push", readTestdata(f, "github_push.json"))
	f.Add("ping", readTestdata(f, "github_ping.json"))
	f.Add("ping", readTestdata(f, "github_ping_org.json"))
	f.Add("ping", readTestdata(f, "github_ping_app.json"))
	f.Add("push", formBody(readTestdata(f, "github_push.json")))
	f.Add("push", []byte("payload=%7B%22ref%22%3A%22refs%2Fheads%2Fx%22%7D&payload="))
	f.Add("push", []byte(`{"ref":"refs/heads/a","after":"3f9a2c1e5b7d4a6c8e0f2b4d6a8c0e1f3a5b7c9d","repository":{"pushed_at":"2024-05-01T10:00:00Z"}}`))
	f.Add("push", []byte(`{"ref":"refs/tags/v1","after":"3f9a2c1e5b7d4a6c8e0f2b4d6a8c0e1f3a5b7c9d","repository":{}}`))
	f.Add("push", []byte(`{"ref":"refs/heads/x","deleted":true,"repository":{"clone_url":"x"}}`))
	f.Add("push", []byte(`{"ref":null,"after":1,"repository":[]}`))
	f.Add("", []byte(`{}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := http.Header{}
		h.Set("X-GitHub-Event", event)
		p, err := Parse(GitHub, h, body)
		checkParseInvariants(t, p, err)
	})
}

func FuzzParseGitLab(f *testing.F) {
	f.Add("Push Hook", readTestdata(f, "gitlab_push.json"))
	f.Add("Tag Push Hook", readTestdata(f, "gitlab_tag_push.json"))
	f.Add("", []byte(`{"object_kind":"push","ref":"refs/heads/a","after":"0000000000000000000000000000000000000000","project":{}}`))
	f.Add("Push Hook", []byte(`{"object_kind":"push","checkout_sha":"","after":"","project":{},"ref":"refs/heads/a"}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := http.Header{}
		h.Set("X-Gitlab-Event", event)
		p, err := Parse(GitLab, h, body)
		checkParseInvariants(t, p, err)
	})
}

func FuzzParseBitbucket(f *testing.F) {
	f.Add("repo:push", readTestdata(f, "bitbucket_push.json"))
	f.Add("repo:push", readTestdata(f, "bitbucket_push_multi.json"))
	f.Add("repo:push", []byte(`{"repository":{"full_name":"a/b"},"push":{"changes":[{"new":null,"old":{"type":"branch","name":"x"}}]}}`))
	f.Add("repo:push", []byte(`{"repository":{},"push":{"changes":[{"new":{"type":"branch","name":"","target":null}}]}}`))
	f.Add("repo:fork", []byte(`{}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := http.Header{}
		h.Set("X-Event-Key", event)
		p, err := Parse(Bitbucket, h, body)
		checkParseInvariants(t, p, err)
	})
}

// FuzzVerifyGitHub checks that a genuine signature always verifies and that
// an arbitrary header value verifies only if it is that signature.
func FuzzVerifyGitHub(f *testing.F) {
	f.Add([]byte("secret"), []byte(`{"ref":"refs/heads/main"}`), "sha256=00")
	f.Add([]byte("k"), []byte{}, "")
	f.Add([]byte{0}, []byte("x"), "sha256=ZZ")
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		good := "sha256=" + hmacHex(secret, body)
		for _, p := range []Provider{GitHub, Bitbucket} {
			name := headerGitHubSignature
			if p == Bitbucket {
				name = headerBitbucketSignature
			}
			err := Verify(p, secret, http.Header{name: {good}}, body)
			if (err == nil) != (len(secret) > 0) {
				t.Fatalf("%s: genuine signature with secret len %d: %v", p, len(secret), err)
			}
			err = Verify(p, secret, http.Header{name: {header}}, body)
			if err == nil && !equalFoldASCII(header, good) {
				t.Fatalf("%s: forged header %q verified", p, header)
			}
			if err != nil && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("%s: error does not wrap ErrBadSignature: %v", p, err)
			}
		}
	})
}

func FuzzVerifyGitLab(f *testing.F) {
	f.Add([]byte("secret"), "secret")
	f.Add([]byte("secret"), "secreT")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, secret []byte, token string) {
		err := Verify(GitLab, secret, http.Header{headerGitLabToken: {token}}, nil)
		if want := len(secret) > 0 && token == string(secret); (err == nil) != want {
			t.Fatalf("Verify(secret %q, token %q) = %v, want ok=%v", secret, token, err, want)
		}
	})
}

func FuzzMatchRepo(f *testing.F) {
	f.Add("git@github.com:acme/shop.git", "https://github.com/acme/shop")
	f.Add("file:///srv/x.git", "/srv/x")
	f.Add("ssh://[::1]:22/a", "::1:a")
	f.Fuzz(func(t *testing.T, a, b string) {
		// Matching is symmetric and reflexive for anything that normalizes.
		ab := MatchRepo(a, &Push{RepoURLs: []string{b}})
		ba := MatchRepo(b, &Push{RepoURLs: []string{a}})
		if ab != ba {
			t.Fatalf("MatchRepo not symmetric for %q, %q", a, b)
		}
		if _, ok := NormalizeRepoURL(a); ok && !MatchRepo(a, &Push{RepoURLs: []string{a}}) {
			t.Fatalf("%q does not match itself", a)
		}
	})
}

// equalFoldASCII: hex decoding accepts upper-case digits, so a header that
// differs from the canonical one only in letter case is the same signature.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
