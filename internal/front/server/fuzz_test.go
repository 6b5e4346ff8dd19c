package server

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

// FuzzHookGitHub drives the whole handler with arbitrary bodies and events.
// The property that matters: an unsigned request never starts a build and
// never gets 202 except "ignored" (a ping naming no repository); a signed
// one only gets the documented statuses.
func FuzzHookGitHub(f *testing.F) {
	f.Add("push", githubPush("shop", "refs/heads/main", sha, false), true)
	f.Add("push", githubPush("shop", "refs/heads/main", sha, false), false)
	f.Add("ping", []byte(`{"repository":{"clone_url":"https://github.com/acme/shop"}}`), false)
	f.Add("push", githubPush("shop", "refs/tags/x", sha, false), true)
	f.Add("push", []byte(`{"ref":"refs/heads/main","after":"`+sha+`","repository":{"ssh_url":"github.com:acme/shop"}}`), false)
	f.Add("push", []byte(url.Values{"payload": {string(githubPush("shop", "refs/heads/main", sha, false))}}.Encode()), true)
	f.Add("push", []byte(url.Values{"payload": {string(githubPush("shop", "refs/heads/main", sha, false))}}.Encode()), false)
	f.Add("push", githubPushAt("main", sha, time.Unix(1714557600, 0)), true)
	f.Add("ping", []byte(`{"zen":"z","hook":{"type":"Organization"},"organization":{"login":"acme"}}`), false)
	f.Fuzz(func(t *testing.T, event string, body []byte, signed bool) {
		h, fb, _ := newTest(t, nil)
		secret := ""
		if signed {
			secret = ghSecret
		}
		code, resp, _ := serve(h, githubReq(event, "d", secret, body))
		switch code {
		case http.StatusAccepted:
			if !signed && resp.Status != "ignored" {
				t.Fatalf("unsigned request answered 202 %+v", resp)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound:
		case http.StatusConflict, http.StatusUnprocessableEntity: // older than an accepted push; stale
			if !signed {
				t.Fatalf("unsigned request reached the replay checks: %d %+v", code, resp)
			}
		default:
			t.Fatalf("unexpected status %d %+v", code, resp)
		}
		calls := fb.Calls()
		if !signed && len(calls) != 0 {
			t.Fatalf("unsigned request started %+v", calls)
		}
		if len(calls) > 0 && (resp.Status != "accepted" || len(calls[0].Commit) != 40 || calls[0].App != "shop") {
			t.Fatalf("build started with %+v, response %+v", calls, resp)
		}
	})
}
