package webhook

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// formBody encodes a JSON document the way GitHub does for a webhook whose
// content type is application/x-www-form-urlencoded (the default).
func formBody(doc []byte) []byte {
	return []byte(url.Values{"payload": {string(doc)}}.Encode())
}

func TestParseGitHubFormEncoded(t *testing.T) {
	doc := readTestdata(t, "github_push.json")
	want, err := Parse(GitHub, hdr("X-GitHub-Event", "push", "X-GitHub-Delivery", "d-1"), doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{"application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8", ""} {
		h := hdr("X-GitHub-Event", "push", "X-GitHub-Delivery", "d-1", "Content-Type", ct)
		got, err := Parse(GitHub, h, formBody(doc))
		if err != nil {
			t.Fatalf("content type %q: %v", ct, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("content type %q: form delivery parsed as\n%+v\nwant\n%+v", ct, got, want)
		}
	}
	bad := map[string][]byte{
		"no payload field":  []byte("other=1"),
		"two payload":       append(formBody(doc), "&payload=%7B%7D"...),
		"extra field":       append(formBody(doc), "&x=1"...),
		"bad escape":        []byte("payload=%zz"),
		"payload not json":  []byte("payload=hello"),
		"json in form type": doc,
	}
	for name, body := range bad {
		_, err := Parse(GitHub, hdr("X-GitHub-Event", "push", "Content-Type", "application/x-www-form-urlencoded"), body)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseGitHubPushedAt(t *testing.T) {
	doc := readTestdata(t, "github_push.json")
	h := hdr("X-GitHub-Event", "push")
	cases := map[string]struct {
		value string
		want  time.Time
		bad   bool
	}{
		"unix":    {"1714557600", time.Unix(1714557600, 0).UTC(), false},
		"rfc3339": {`"2024-05-01T10:00:00Z"`, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), false},
		"null":    {"null", time.Time{}, false},
		"garbage": {`"yesterday"`, time.Time{}, true},
		"float":   {"1.5", time.Time{}, true},
		"huge":    {"99999999999999", time.Time{}, true},
	}
	for name, tc := range cases {
		body := replaceJSON(t, doc, `"pushed_at": 1714557600`, `"pushed_at": `+tc.value)
		p, err := Parse(GitHub, h, body)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "pushed_at") {
				t.Errorf("%s: err = %v, want a pushed_at error", name, err)
			}
			continue
		}
		if err != nil || !p.PushedAt.Equal(tc.want) {
			t.Errorf("%s: PushedAt = %v, %v; want %v", name, p, err, tc.want)
		}
	}
}

func TestParseGitHubPingWithoutRepository(t *testing.T) {
	for _, f := range []string{"github_ping_org.json", "github_ping_app.json"} {
		p, err := Parse(GitHub, hdr("X-GitHub-Event", "ping"), readTestdata(t, f))
		checkOutcome(t, p, err, "ping", "", false)
		if len(p.RepoURLs) != 0 {
			t.Errorf("%s: repository URLs %v from a ping that names none", f, p.RepoURLs)
		}
	}
}

func TestParseBitbucketEveryBranch(t *testing.T) {
	p, err := Parse(Bitbucket, hdr("X-Event-Key", "repo:push", "X-Request-UUID", "r-1"), readTestdata(t, "bitbucket_push_multi.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Update{
		{Ref: "refs/heads/feature/wishlist", Branch: "feature/wishlist", After: "5b0c1de2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8", HeadMessage: "Wishlist sharing\n"},
		{Ref: "refs/heads/release/2.4", Branch: "release/2.4", After: "709d658dc5b6d6afcd46049c2f332ee3f515a67d", HeadMessage: "Bump version\n"},
		{Ref: "refs/heads/main", Branch: "main", After: "8e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b", HeadMessage: "Merge release/2.4\n"},
	}
	if !reflect.DeepEqual(p.Updates, want) {
		t.Fatalf("Updates = %+v\nwant %+v", p.Updates, want)
	}
	if p.Branch != "feature/wishlist" || p.After != want[0].After || p.Tag != "" || p.Deleted {
		t.Fatalf("first update not mirrored in Push: %+v", p)
	}
	// A deletion before the branch updates does not hide them either.
	del := `{"new":null,"old":{"type":"branch","name":"gone"}},`
	body := replaceJSON(t, readTestdata(t, "bitbucket_push_multi.json"), `"changes": [`, `"changes": [`+del)
	p, err = Parse(Bitbucket, hdr("X-Event-Key", "repo:push"), body)
	if err != nil || len(p.Updates) != 3 || p.Deleted || p.Branch != "feature/wishlist" {
		t.Fatalf("deletion first: %+v, %v", p, err)
	}
}

func TestVerifyErrorNamesTheCheck(t *testing.T) {
	secret, body := []byte("k3y-never-shown"), []byte(`{}`)
	cases := []struct {
		p     Provider
		h     http.Header
		check string
	}{
		{GitHub, http.Header{}, CheckSignatureMissing},
		{GitHub, http.Header{"X-Hub-Signature-256": {"sha1=00"}}, CheckSignatureInvalid},
		{GitHub, http.Header{"X-Hub-Signature-256": {Sign([]byte("other"), body)}}, CheckSignatureMismatch},
		{Bitbucket, http.Header{}, CheckSignatureMissing},
		{GitLab, http.Header{}, CheckTokenMissing},
		{GitLab, http.Header{"X-Gitlab-Token": {"a", "b"}}, CheckTokenInvalid},
		{GitLab, http.Header{"X-Gitlab-Token": {"k3y-never-show"}}, CheckTokenMismatch},
	}
	for _, tc := range cases {
		err := Verify(tc.p, secret, tc.h, body)
		ve, ok := err.(*VerifyError)
		if !ok || ve.Check != tc.check {
			t.Errorf("%s %v: err = %v, want check %s", tc.p, tc.h, err, tc.check)
			continue
		}
		if strings.Contains(err.Error(), string(secret)) || strings.Contains(err.Error(), Sign(secret, body)[7:]) {
			t.Errorf("%v leaks the secret or the expected signature", err)
		}
	}
	if err := Verify(GitHub, nil, http.Header{}, body); err.(*VerifyError).Check != CheckNoSecret {
		t.Errorf("no secret: %v", err)
	}
}
