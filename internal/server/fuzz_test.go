package server

import (
	"net/http"
	"testing"
)

// FuzzHookGitHub drives the whole handler with arbitrary bodies and events.
// The property that matters: an unsigned request never gets 202 and never
// starts a build, whatever it contains; a signed one only gets the
// documented statuses.
func FuzzHookGitHub(f *testing.F) {
	f.Add("push", githubPush("shop", "refs/heads/main", sha, false), true)
	f.Add("push", githubPush("shop", "refs/heads/main", sha, false), false)
	f.Add("ping", []byte(`{"repository":{"clone_url":"https://github.com/acme/shop"}}`), false)
	f.Add("push", githubPush("shop", "refs/tags/x", sha, false), true)
	f.Add("push", []byte(`{"ref":"refs/heads/main","after":"`+sha+`","repository":{"ssh_url":"github.com:acme/shop"}}`), false)
	f.Fuzz(func(t *testing.T, event string, body []byte, signed bool) {
		h, fb, _ := newTest(t, nil)
		secret := ""
		if signed {
			secret = ghSecret
		}
		code, resp, _ := serve(h, githubReq(event, "d", secret, body))
		switch code {
		case http.StatusAccepted:
			if !signed {
				t.Fatalf("unsigned request answered 202: %+v", resp)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound:
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
