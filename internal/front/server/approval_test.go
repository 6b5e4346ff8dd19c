package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// requestProduction asks for a deploy to shop/production through the
// dashboard as whoever mods authenticate, then makes the fake deploy side
// show it waiting for approval with the requester the workflow recorded.
func requestProduction(t *testing.T, h http.Handler, fd *fakeDeploys, mods ...func(*http.Request)) string {
	t.Helper()
	form := url.Values{"app": {"shop"}, "env": {"production"}, "release": {"11-aaaaaaa"}, "csrf": {csrfFor(t, h, mods...)}}
	w := do(h, postForm("/actions/deploy", form, append(mods, withHeader("Accept", "application/json"))...))
	if w.Code != http.StatusOK {
		t.Fatalf("deploy request: %d %s", w.Code, w.Body)
	}
	fd.mu.Lock()
	defer fd.mu.Unlock()
	req := fd.deploys[len(fd.deploys)-1]
	fd.envs[0].Running = &RunningDeploy{WorkflowID: "deploy/shop/production", RunID: "run-7", ReleaseID: req.ReleaseID,
		Phase: "waiting-approval", WaitingApproval: true, RequestedBy: req.By}
	fd.approvals = nil
	return req.By
}

// approveProduction posts the approve (or reject) form as the dashboard
// renders it for whoever mods authenticate.
func approveProduction(t *testing.T, h http.Handler, path string, mods ...func(*http.Request)) (int, string) {
	t.Helper()
	csrf := csrfFor(t, h, mods...)
	form := url.Values{"app": {"shop"}, "env": {"production"}, "workflow_id": {"deploy/shop/production"}, "csrf": {csrf}}
	w := do(h, postForm(path, form, append(mods, withHeader("Accept", "application/json"))...))
	return w.Code, w.Body.String()
}

func basicAs(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

// TestApprovalAttackSelfApproval: alice (a named user) requests a deploy to
// an environment with `approval: required` and approves it herself, by
// basic auth and through a login session: both refused with 403 and
// nothing reaches the workflow. Bob (a token login) may approve it.
func TestApprovalAttackSelfApproval(t *testing.T) {
	h, fd := newDeployTest(t, func(o *Options) { o.Auth.BasicUser = "alice" })
	alice := basicAs("alice", basicPass)
	if by := requestProduction(t, h, fd, alice); by != "alice" {
		t.Fatalf("the deploy was recorded as requested by %q", by)
	}
	code, body := approveProduction(t, h, "/actions/approve", alice)
	if code != http.StatusForbidden || !strings.Contains(body, "cannot approve") || !strings.Contains(body, "allow_self_approval") {
		t.Errorf("alice approving her own deploy (basic): %d %s", code, body)
	}
	sc, _ := login(t, h, "alice", basicPass)
	if code, body := approveProduction(t, h, "/actions/approve", withCookies(sc)); code != http.StatusForbidden {
		t.Errorf("alice approving her own deploy (session): %d %s", code, body)
	}
	if _, a, _ := fd.calls(); len(a) != 0 {
		t.Fatalf("a self-approval reached the workflow: %+v", a)
	}
	// Rejecting (withdrawing) her own deploy is fine.
	if code, body := approveProduction(t, h, "/actions/reject", alice); code != http.StatusOK {
		t.Errorf("alice rejecting her own deploy: %d %s", code, body)
	}

	requestProduction(t, h, fd, alice)
	bob, _ := login(t, h, "bob", testToken)
	if code, body := approveProduction(t, h, "/actions/approve", withCookies(bob)); code != http.StatusOK {
		t.Fatalf("bob approving alice's deploy: %d %s", code, body)
	}
	if _, a, _ := fd.calls(); len(a) != 1 || a[0].By != "bob" || !a[0].Approve {
		t.Errorf("approvals %+v", a)
	}
}

// TestApprovalAttackTokenNames: whoever holds the token can type any name
// at /login. They cannot type the named user's name, and two token logins
// under different names are one identity: the token holder who requested a
// deploy cannot approve it as "someone else".
func TestApprovalAttackTokenNames(t *testing.T) {
	h, fd := newDeployTest(t, func(o *Options) { o.Auth.BasicUser = "alice" })
	w := loginForm(t, h, "Alice", testToken)
	if w.Code != http.StatusForbidden || cookie(w, sessionCookie) != nil || !strings.Contains(w.Body.String(), "belongs to the basic-auth user") {
		t.Errorf("token login as the named user: %d %s", w.Code, w.Body)
	}

	mallory, _ := login(t, h, "mallory", testToken)
	requestProduction(t, h, fd, withCookies(mallory))
	eve, _ := login(t, h, "eve", testToken)
	if code, body := approveProduction(t, h, "/actions/approve", withCookies(eve)); code != http.StatusForbidden || !strings.Contains(body, "token counts as one identity") {
		t.Errorf("a token login under another name approving a token login's deploy: %d %s", code, body)
	}
	if code, _ := approveProduction(t, h, "/actions/approve", withHeader("Authorization", "Bearer "+testToken)); code != http.StatusForbidden {
		t.Errorf("the bearer token approving a token login's deploy: %d", code)
	}
	if _, a, _ := fd.calls(); len(a) != 0 {
		t.Fatalf("approvals reached the workflow: %+v", a)
	}
	if code, body := approveProduction(t, h, "/actions/approve", basicAs("alice", basicPass)); code != http.StatusOK {
		t.Errorf("alice approving the token holder's deploy: %d %s", code, body)
	}
}

// TestApprovalSelfAllowed: server.auth.allow_self_approval turns the rule
// off.
func TestApprovalSelfAllowed(t *testing.T) {
	h, fd := newDeployTest(t, func(o *Options) { o.Auth.BasicUser, o.Auth.AllowSelfApproval = "alice", true })
	alice := basicAs("alice", basicPass)
	requestProduction(t, h, fd, alice)
	if code, body := approveProduction(t, h, "/actions/approve", alice); code != http.StatusOK {
		t.Errorf("self-approval allowed by config: %d %s", code, body)
	}
}

// loginForm posts the login form and returns the answer.
func loginForm(t *testing.T, h http.Handler, name, password string) *httptest.ResponseRecorder {
	t.Helper()
	w := do(h, httptest.NewRequest(http.MethodGet, "/login", nil))
	return do(h, postForm("/login", url.Values{"csrf": {csrfOf(t, w.Body.String())}, "name": {name}, "password": {password}},
		withCookies(cookie(w, loginCookie))))
}

// csrfFor reads the CSRF token the dashboard renders for whoever mods
// authenticate.
func csrfFor(t *testing.T, h http.Handler, mods ...func(*http.Request)) string {
	t.Helper()
	w := do(h, httptest.NewRequest(http.MethodGet, "/", nil), mods...)
	return csrfOf(t, w.Body.String())
}
