package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/build/catalog"
)

// fakeDeploys is an in-memory deploy side. Rollback, when rollbackDelay is
// set, behaves like the real workflow seen from outside: the environment
// shows a running deploy, then switches to the target release and a
// succeeded deploy record appears.
type fakeDeploys struct {
	mu            sync.Mutex
	envs          []EnvView
	history       map[string][]catalog.Deploy // app/env → newest first
	deploys       []DeployRequest
	approvals     []ApprovalRequest
	rollbacks     []RollbackRequest
	err           error // returned by every action
	envErr        error
	histErr       error
	rollbackDelay time.Duration
	done          chan struct{} // closed when an async rollback finished
}

func (f *fakeDeploys) Environments(context.Context) ([]EnvView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.envErr != nil {
		return nil, f.envErr
	}
	out := make([]EnvView, len(f.envs))
	for i, e := range f.envs {
		out[i] = e
		if e.State != nil {
			st := *e.State
			out[i].State = &st
		}
		if e.Running != nil {
			r := *e.Running
			out[i].Running = &r
		}
	}
	return out, nil
}

func (f *fakeDeploys) History(_ context.Context, app, env string, limit int) ([]catalog.Deploy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.histErr != nil {
		return nil, f.histErr
	}
	h := slices.Clone(f.history[app+"/"+env])
	if limit > 0 && len(h) > limit {
		h = h[:limit]
	}
	return h, nil
}

func (f *fakeDeploys) StartDeploy(_ context.Context, r DeployRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deploys = append(f.deploys, r)
	if f.err != nil {
		return "", f.err
	}
	return "deploy/" + r.App + "/" + r.Env, nil
}

func (f *fakeDeploys) Approve(_ context.Context, r ApprovalRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.approvals = append(f.approvals, r)
	return f.err
}

func (f *fakeDeploys) Rollback(_ context.Context, r RollbackRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rollbacks = append(f.rollbacks, r)
	if f.err != nil {
		return "", f.err
	}
	wf := "rollback/" + r.App + "/" + r.Env
	if f.rollbackDelay <= 0 {
		return wf, nil
	}
	i := slices.IndexFunc(f.envs, func(e EnvView) bool { return e.App == r.App && e.Env == r.Env })
	st := f.envs[i].State
	to := r.To
	if to == "" {
		to = st.Previous
	}
	started := time.Now()
	runID := fmt.Sprintf("run-%d", len(f.rollbacks))
	f.envs[i].Running = &RunningDeploy{WorkflowID: wf, RunID: runID, ReleaseID: to, Phase: "switching", RequestedBy: r.By, StartedAt: started}
	go func() {
		time.Sleep(f.rollbackDelay)
		f.mu.Lock()
		defer f.mu.Unlock()
		e := &f.envs[i]
		finished := time.Now()
		prev := e.State.Current
		e.State = &catalog.EnvState{App: r.App, Env: r.Env, Current: to, Previous: prev, DeployedAt: finished, DeployedBy: r.By, WorkflowID: wf, RunID: runID}
		e.Running = nil
		key := r.App + "/" + r.Env
		f.history[key] = append([]catalog.Deploy{{App: r.App, Env: r.Env, Kind: "rollback", ReleaseID: to, PreviousRelease: prev,
			RequestedBy: r.By, Reason: r.Reason, Hosts: e.Hosts, StartedAt: started, FinishedAt: &finished,
			Outcome: catalog.OutcomeSucceeded, WorkflowID: wf, RunID: runID}}, f.history[key]...)
		if f.done != nil {
			close(f.done)
		}
	}()
	return wf, nil
}

func (f *fakeDeploys) calls() (d []DeployRequest, a []ApprovalRequest, r []RollbackRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deploys), slices.Clone(f.approvals), slices.Clone(f.rollbacks)
}

const (
	testToken = "tok-3f1b9c"
	basicUser = "ops"
	basicPass = "pa55-word"
	testUI    = "http://127.0.0.1:8233"
)

func sampleDeploys() *fakeDeploys {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	fin := t0.Add(95 * time.Second)
	return &fakeDeploys{
		envs: []EnvView{
			{App: "shop", Env: "production", Branch: "main", URL: "https://shop.example", Hosts: []string{"web1", "web2"}, ApprovalRequired: true,
				State: &catalog.EnvState{App: "shop", Env: "production", Current: "12-3f9a2c1", Previous: "11-aaaaaaa", DeployedAt: t0,
					DeployedBy: "alice", UpgradeNeeded: true, WorkflowID: "deploy/shop/production", RunID: "run-1"}},
			{App: "shop", Env: "staging", Branch: "develop", Hosts: []string{"web3"},
				State: &catalog.EnvState{App: "shop", Env: "staging", Current: "11-aaaaaaa", DeployedAt: t0.Add(-time.Hour), DeployedBy: "bob"},
				Running: &RunningDeploy{WorkflowID: "deploy/shop/staging", RunID: "run-9", ReleaseID: "12-3f9a2c1", Phase: "waiting-approval",
					WaitingApproval: true, RequestedBy: "bob", StartedAt: t0}},
		},
		history: map[string][]catalog.Deploy{
			"shop/production": {{App: "shop", Env: "production", Kind: "deploy", ReleaseID: "12-3f9a2c1", PreviousRelease: "11-aaaaaaa",
				RequestedBy: "alice", Reason: "<img src=x onerror=alert(1)>", Hosts: []string{"web1", "web2"}, UpgradeNeeded: true,
				StartedAt: t0.Add(-95 * time.Second), FinishedAt: &t0, Outcome: catalog.OutcomeSucceeded, WorkflowID: "deploy/shop/production", RunID: "run-1",
				Transfers: []catalog.HostTransfer{
					{Host: "web1", Transfer: catalog.Transfer{Mode: catalog.TransferDelta, Base: "11-aaaaaaa", BytesFetched: 1 << 20, ArtifactSize: 100 << 20, FilesLinked: 60000, FilesWritten: 3}},
					{Host: "web2", Transfer: catalog.Transfer{Mode: catalog.TransferFull, BytesFetched: 100 << 20, ArtifactSize: 100 << 20, FallbackReason: "base file <b>x</b> changed"}},
				}}},
			"shop/staging": {{App: "shop", Env: "staging", Kind: "deploy", ReleaseID: "11-aaaaaaa", RequestedBy: "bob",
				StartedAt: t0.Add(-2 * time.Hour), FinishedAt: &fin, Outcome: catalog.OutcomeFailed, Error: "health check failed on web3", WorkflowID: "deploy/shop/staging", RunID: "run-0"}},
		},
	}
}

// newDeployTest builds a handler with releases, deploys and, unless mod
// says otherwise, token and basic credentials.
func newDeployTest(t *testing.T, mod func(*Options)) (http.Handler, *fakeDeploys) {
	t.Helper()
	fd := sampleDeploys()
	h, _, _ := newTest(t, func(o *Options) {
		o.Releases = sampleReleases()
		o.Deploys = fd
		o.UIBaseURL = testUI
		o.Auth = Auth{Token: secretOf(testToken + "\n"), BasicUser: basicUser, BasicPassword: secretOf(basicPass)}
		if mod != nil {
			mod(o)
		}
	})
	return h, fd
}

func do(h http.Handler, r *http.Request, mods ...func(*http.Request)) *httptest.ResponseRecorder {
	for _, m := range mods {
		m(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// postForm builds a form post as a browser on the same origin sends it.
func postForm(path string, form url.Values, mods ...func(*http.Request)) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://example.com")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	for _, m := range mods {
		m(r)
	}
	return r
}

func withCookies(cs ...*http.Cookie) func(*http.Request) {
	return func(r *http.Request) {
		for _, c := range cs {
			r.AddCookie(c)
		}
	}
}

func withHeader(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }

func cookie(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in page:\n%s", page)
	}
	return m[1]
}

// login goes through the login form and returns the session cookie and the
// CSRF token the dashboard then renders into its forms.
func login(t *testing.T, h http.Handler, name, password string) (*http.Cookie, string) {
	t.Helper()
	w := do(h, httptest.NewRequest(http.MethodGet, "/login?next=/", nil))
	lc := cookie(w, loginCookie)
	if w.Code != http.StatusOK || lc == nil {
		t.Fatalf("GET /login: %d %s", w.Code, w.Body)
	}
	w = do(h, postForm("/login", url.Values{"csrf": {csrfOf(t, w.Body.String())}, "name": {name}, "password": {password}, "next": {"/"}}, withCookies(lc)))
	sc := cookie(w, sessionCookie)
	if w.Code != http.StatusSeeOther || sc == nil {
		t.Fatalf("POST /login: %d %s", w.Code, w.Body)
	}
	w = do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(sc))
	return sc, csrfOf(t, w.Body.String())
}

func rollbackForm(csrf string) url.Values {
	return url.Values{"csrf": {csrf}, "app": {"shop"}, "env": {"production"}, "reason": {"bad cart"}}
}

func TestActionsRefusedWithoutAuth(t *testing.T) {
	h, fd := newDeployTest(t, func(o *Options) { o.Auth = Auth{} })
	for _, path := range []string{"/actions/deploy", "/actions/approve", "/actions/reject", "/actions/rollback"} {
		w := do(h, postForm(path, url.Values{"app": {"shop"}, "env": {"production"}, "release": {"12-3f9a2c1"}, "workflow_id": {"x"}},
			withHeader("Authorization", "Bearer anything")))
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "server.auth") {
			t.Errorf("%s without auth configured: %d %s", path, w.Code, w.Body)
		}
	}
	if d, a, r := fd.calls(); len(d)+len(a)+len(r) != 0 {
		t.Fatalf("actions reached Deploys: %v %v %v", d, a, r)
	}
	w := do(h, httptest.NewRequest(http.MethodGet, "/", nil))
	page := w.Body.String()
	if !strings.Contains(page, "Deploy actions are disabled") || strings.Contains(page, `action="/actions/`) {
		t.Error("page without auth must say actions are disabled and render no action form")
	}
	if w := do(h, httptest.NewRequest(http.MethodGet, "/login", nil)); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "server.auth") {
		t.Errorf("login without auth: %d", w.Code)
	}
	// An empty secret is a misconfiguration, not an open door.
	h, fd = newDeployTest(t, func(o *Options) { o.Auth = Auth{Token: secretOf("  \n")} })
	w = do(h, postForm("/actions/rollback", rollbackForm(""), withHeader("Authorization", "Bearer ")))
	if w.Code == http.StatusSeeOther || len(fd.rollbacks) != 0 {
		t.Fatalf("empty token accepted: %d", w.Code)
	}
}

func TestActionAuthentication(t *testing.T) {
	h, fd := newDeployTest(t, nil)
	basic := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
	session, csrf := login(t, h, "Dana", testToken)
	basicCSRF := csrfOf(t, do(h, httptest.NewRequest(http.MethodGet, "/", nil), basic(basicUser, basicPass)).Body.String())

	k, _ := (&authenticator{auth: Auth{Token: secretOf(testToken), BasicUser: basicUser, BasicPassword: secretOf(basicPass)}}).keys()
	expired := &http.Cookie{Name: sessionCookie, Value: seal(k.session, sessionData{User: "Dana", Expires: time.Now().Add(-time.Minute).Unix(), Nonce: "n"})}
	forged := &http.Cookie{Name: sessionCookie, Value: seal([]byte("not the key"), sessionData{User: "Mallory", Expires: time.Now().Add(time.Hour).Unix(), Nonce: "n"})}
	tampered := &http.Cookie{Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(`{"u":"Mallory","e":9999999999,"n":"x"}`)) + session.Value[strings.Index(session.Value, "."):]}

	for _, tc := range []struct {
		name   string
		csrf   string
		mods   []func(*http.Request)
		status int
		by     string
	}{
		{"none", csrf, nil, http.StatusUnauthorized, ""},
		{"bad bearer", "", []func(*http.Request){withHeader("Authorization", "Bearer wrong")}, http.StatusUnauthorized, ""},
		{"good bearer", "", []func(*http.Request){withHeader("Authorization", "Bearer "+testToken)}, http.StatusSeeOther, "token"},
		{"bad basic password", basicCSRF, []func(*http.Request){basic(basicUser, "nope")}, http.StatusUnauthorized, ""},
		{"bad basic user", basicCSRF, []func(*http.Request){basic("root", basicPass)}, http.StatusUnauthorized, ""},
		{"good basic", basicCSRF, []func(*http.Request){basic(basicUser, basicPass)}, http.StatusSeeOther, basicUser},
		{"session", csrf, []func(*http.Request){withCookies(session)}, http.StatusSeeOther, "Dana"},
		{"expired session", csrf, []func(*http.Request){withCookies(expired)}, http.StatusUnauthorized, ""},
		{"forged session", csrf, []func(*http.Request){withCookies(forged)}, http.StatusUnauthorized, ""},
		{"tampered session", csrf, []func(*http.Request){withCookies(tampered)}, http.StatusUnauthorized, ""},
		{"bad bearer with good session", csrf, []func(*http.Request){withCookies(session), withHeader("Authorization", "Bearer wrong")}, http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fd.rollbacks)
			w := do(h, postForm("/actions/rollback", rollbackForm(tc.csrf), tc.mods...))
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			_, _, rb := fd.calls()
			if tc.by == "" {
				if len(rb) != before {
					t.Fatal("refused request reached Deploys")
				}
				if tc.name == "bad basic password" && w.Header().Get("WWW-Authenticate") == "" {
					t.Error("no basic challenge")
				}
				return
			}
			if len(rb) != before+1 || rb[len(rb)-1].By != tc.by {
				t.Fatalf("rollbacks %+v, want one by %q", rb, tc.by)
			}
		})
	}

	// Rotating the token logs sessions out.
	h2, _ := newDeployTest(t, func(o *Options) { o.Auth.Token = secretOf("rotated") })
	if w := do(h2, postForm("/actions/rollback", rollbackForm(csrf), withCookies(session))); w.Code != http.StatusUnauthorized {
		t.Errorf("session survived a token rotation: %d", w.Code)
	}
	// An unreadable secret refuses with a retryable error, never opens.
	h3, _ := newDeployTest(t, func(o *Options) {
		o.Auth = Auth{Token: func() ([]byte, error) { return nil, errors.New("open /secrets/dashboard-token: permission denied") }}
	})
	w := do(h3, postForm("/actions/rollback", rollbackForm(""), withHeader("Authorization", "Bearer "+testToken)))
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "permission denied") {
		t.Errorf("unreadable token: %d %s", w.Code, w.Body)
	}
}

func TestCSRF(t *testing.T) {
	h, fd := newDeployTest(t, nil)
	session, csrf := login(t, h, "Dana", testToken)
	otherSession, otherCSRF := login(t, h, "Eve", testToken)
	if otherSession.Value == session.Value || otherCSRF == csrf {
		t.Fatal("two logins share a session or CSRF token")
	}
	for _, tc := range []struct {
		name string
		form url.Values
		mods []func(*http.Request)
	}{
		{"missing token", rollbackForm(""), nil},
		{"wrong token", rollbackForm("AAAA" + csrf[4:]), nil},
		{"token of another session", rollbackForm(otherCSRF), nil},
		{"foreign origin", rollbackForm(csrf), []func(*http.Request){withHeader("Origin", "https://evil.example")}},
		{"null origin", rollbackForm(csrf), []func(*http.Request){withHeader("Origin", "null")}},
		{"foreign referer", rollbackForm(csrf), []func(*http.Request){func(r *http.Request) {
			r.Header.Del("Origin")
			r.Header.Set("Referer", "https://evil.example/page")
		}}},
		{"cross-site fetch", rollbackForm(csrf), []func(*http.Request){withHeader("Sec-Fetch-Site", "cross-site")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := do(h, postForm("/actions/rollback", tc.form, append([]func(*http.Request){withCookies(session)}, tc.mods...)...))
			if w.Code != http.StatusForbidden {
				t.Fatalf("status %d, want 403: %s", w.Code, w.Body)
			}
		})
	}
	// A bearer token is cross-origin proof too: a foreign page cannot set
	// the header, but it can still be refused by origin.
	if w := do(h, postForm("/actions/rollback", rollbackForm(""), withHeader("Authorization", "Bearer "+testToken), withHeader("Origin", "https://evil.example"))); w.Code != http.StatusForbidden {
		t.Errorf("bearer from a foreign origin: %d", w.Code)
	}
	if _, _, rb := fd.calls(); len(rb) != 0 {
		t.Fatalf("refused requests reached Deploys: %+v", rb)
	}
	// Same origin via Referer only, and no browser headers at all (curl).
	for _, mod := range []func(*http.Request){
		func(r *http.Request) { r.Header.Del("Origin"); r.Header.Set("Referer", "http://example.com/") },
		func(r *http.Request) { r.Header.Del("Origin"); r.Header.Del("Sec-Fetch-Site") },
	} {
		if w := do(h, postForm("/actions/rollback", rollbackForm(csrf), withCookies(session), mod)); w.Code != http.StatusSeeOther {
			t.Errorf("same-origin post refused: %d %s", w.Code, w.Body)
		}
	}
	// Logout needs the token as well.
	if w := do(h, postForm("/logout", url.Values{}, withCookies(session))); w.Code != http.StatusForbidden {
		t.Errorf("logout without CSRF token: %d", w.Code)
	}
	w := do(h, postForm("/logout", url.Values{"csrf": {csrf}}, withCookies(session)))
	if c := cookie(w, sessionCookie); w.Code != http.StatusSeeOther || c == nil || c.MaxAge >= 0 {
		t.Errorf("logout: %d, cookie %+v", w.Code, c)
	}
}

func TestActionsCallDeploys(t *testing.T) {
	h, fd := newDeployTest(t, nil)
	session, csrf := login(t, h, "Dana", testToken)
	post := func(path string, form url.Values) *httptest.ResponseRecorder {
		t.Helper()
		form.Set("csrf", csrf)
		w := do(h, postForm(path, form, withCookies(session)))
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		return w
	}
	page := func(w *httptest.ResponseRecorder) string {
		t.Helper()
		fc := cookie(w, flashCookie)
		if fc == nil || !fc.HttpOnly || fc.SameSite != http.SameSiteStrictMode {
			t.Fatalf("flash cookie %+v", fc)
		}
		g := do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(session, fc))
		if c := cookie(g, flashCookie); c == nil || c.MaxAge >= 0 {
			t.Error("the flash is not cleared once shown")
		}
		return g.Body.String()
	}

	w := post("/actions/deploy", url.Values{"app": {"shop"}, "env": {"production"}, "release": {"11-aaaaaaa"}, "reason": {"  hotfix  "}})
	p := page(w)
	if !strings.Contains(p, `<div class="flash ok" role="status">Deploy of 11-aaaaaaa to shop/production started: <a href="`+testUI+`/namespaces/default/workflows/deploy%2Fshop%2Fproduction">deploy/shop/production</a></div>`) {
		t.Errorf("deploy flash missing:\n%s", p)
	}
	post("/actions/approve", url.Values{"app": {"shop"}, "env": {"staging"}, "workflow_id": {"deploy/shop/staging"}, "reason": {"looks good"}})
	post("/actions/reject", url.Values{"app": {"shop"}, "env": {"staging"}, "workflow_id": {"deploy/shop/staging"}})
	w = post("/actions/rollback", url.Values{"app": {"shop"}, "env": {"production"}, "to": {"11-aaaaaaa"}, "force": {"1"}, "reason": {"cart broken"}})
	if p := page(w); !strings.Contains(p, "Rollback of shop/production to 11-aaaaaaa started") {
		t.Error("rollback flash missing")
	}
	post("/actions/rollback", url.Values{"app": {"shop"}, "env": {"production"}})

	d, a, r := fd.calls()
	if want := []DeployRequest{{App: "shop", Env: "production", ReleaseID: "11-aaaaaaa", By: "Dana", Reason: "hotfix"}}; !slices.Equal(d, want) {
		t.Errorf("deploys %+v, want %+v", d, want)
	}
	if want := []ApprovalRequest{
		{App: "shop", Env: "staging", WorkflowID: "deploy/shop/staging", By: "Dana", Reason: "looks good", Approve: true},
		{App: "shop", Env: "staging", WorkflowID: "deploy/shop/staging", By: "Dana"},
	}; !slices.Equal(a, want) {
		t.Errorf("approvals %+v, want %+v", a, want)
	}
	if want := []RollbackRequest{
		{App: "shop", Env: "production", To: "11-aaaaaaa", By: "Dana", Reason: "cart broken", Force: true},
		{App: "shop", Env: "production", By: "Dana"},
	}; !slices.Equal(r, want) {
		t.Errorf("rollbacks %+v, want %+v", r, want)
	}

	// A flash shows once.
	if g := do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(session)); strings.Contains(g.Body.String(), `class="flash`) {
		t.Error("flash shown without its cookie")
	}
	// A forged flash cookie is ignored.
	forged := &http.Cookie{Name: flashCookie, Value: seal([]byte("x"), flash{Kind: "ok", Text: "all good, trust me"})}
	if g := do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(session, forged)); strings.Contains(g.Body.String(), "trust me") {
		t.Error("forged flash shown")
	}
}

func TestActionErrors(t *testing.T) {
	h, fd := newDeployTest(t, nil)
	session, csrf := login(t, h, "Dana", testToken)
	fd.err = errors.New("a deploy is already running: deploy/shop/production")
	flashPage := func(form url.Values, path string) string {
		t.Helper()
		form.Set("csrf", csrf)
		w := do(h, postForm(path, form, withCookies(session)))
		if w.Code != http.StatusSeeOther {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		return do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(session, cookie(w, flashCookie))).Body.String()
	}
	p := flashPage(url.Values{"app": {"shop"}, "env": {"production"}, "release": {"11-aaaaaaa"}}, "/actions/deploy")
	if !strings.Contains(p, `<div class="flash error" role="status">a deploy is already running: deploy/shop/production</div>`) {
		t.Errorf("error flash missing:\n%s", p)
	}
	before := len(fd.deploys)
	p = flashPage(url.Values{"app": {"shop"}, "env": {"../../etc"}, "release": {"11-aaaaaaa"}}, "/actions/deploy")
	if !strings.Contains(p, `no environment &#34;../../etc&#34; of app &#34;shop&#34;; configured: shop/production, shop/staging`) || len(fd.deploys) != before {
		t.Errorf("unknown environment not refused before Deploys:\n%s", p)
	}
	p = flashPage(url.Values{"app": {"shop"}, "env": {"production"}}, "/actions/deploy")
	if !strings.Contains(p, `the form field &#34;release&#34; is missing`) || len(fd.deploys) != before {
		t.Error("missing release not refused")
	}
	// Scripts get JSON.
	w := do(h, postForm("/actions/deploy", url.Values{"app": {"shop"}, "env": {"production"}, "release": {"11-aaaaaaa"}},
		withHeader("Authorization", "Bearer "+testToken), withHeader("Accept", "application/json")))
	var resp map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != http.StatusConflict || resp["error"] != fd.err.Error() {
		t.Errorf("JSON error: %d %s", w.Code, w.Body)
	}
	fd.err = nil
	w = do(h, postForm("/actions/deploy", url.Values{"app": {"shop"}, "env": {"production"}, "release": {"11-aaaaaaa"}},
		withHeader("Authorization", "Bearer "+testToken), withHeader("Accept", "application/json")))
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != http.StatusOK || resp["workflow_id"] != "deploy/shop/production" {
		t.Errorf("JSON success: %d %s", w.Code, w.Body)
	}
}

func TestLogin(t *testing.T) {
	h, _ := newDeployTest(t, nil)
	w := do(h, httptest.NewRequest(http.MethodGet, "/login?next=//evil.example/x", nil))
	lc, csrf := cookie(w, loginCookie), csrfOf(t, w.Body.String())
	if strings.Contains(w.Body.String(), "evil.example") {
		t.Error("open redirect target kept in the form")
	}
	try := func(form url.Values, mods ...func(*http.Request)) *httptest.ResponseRecorder {
		return do(h, postForm("/login", form, append([]func(*http.Request){withCookies(lc)}, mods...)...))
	}
	if w := try(url.Values{"csrf": {csrf}, "name": {"Dana"}, "password": {"wrong"}}); w.Code != http.StatusUnauthorized || cookie(w, sessionCookie) != nil || !strings.Contains(w.Body.String(), "wrong name or password") {
		t.Errorf("bad password: %d", w.Code)
	}
	if w := try(url.Values{"csrf": {"other"}, "password": {testToken}}); w.Code != http.StatusForbidden || cookie(w, sessionCookie) != nil {
		t.Errorf("login without the double-submit value: %d", w.Code)
	}
	if w := try(url.Values{"csrf": {csrf}, "password": {testToken}}, withHeader("Origin", "https://evil.example")); w.Code != http.StatusForbidden {
		t.Errorf("cross-origin login: %d", w.Code)
	}
	w = try(url.Values{"csrf": {csrf}, "name": {"<b>Dana</b>\x07"}, "password": {testToken}, "next": {"https://evil.example/"}})
	sc := cookie(w, sessionCookie)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" || sc == nil {
		t.Fatalf("login: %d %s", w.Code, w.Header().Get("Location"))
	}
	if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.MaxAge <= 0 || sc.MaxAge > int(sessionTTL/time.Second) {
		t.Errorf("session cookie attributes %+v", sc)
	}
	page := do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(sc)).Body.String()
	if !strings.Contains(page, "<span>&lt;b&gt;Dana&lt;/b&gt;</span>") {
		t.Error("login name not shown escaped")
	}
	// Basic credentials work in the form too, and name the basic user.
	w = try(url.Values{"csrf": {csrf}, "name": {basicUser}, "password": {basicPass}, "next": {"/deploys?app=shop&env=production"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/deploys?app=shop&env=production" {
		t.Fatalf("basic login: %d %s", w.Code, w.Header().Get("Location"))
	}
	page = do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(cookie(w, sessionCookie))).Body.String()
	if !strings.Contains(page, "<span>"+basicUser+"</span>") {
		t.Error("basic login does not act as the basic user")
	}
}

func TestProtectViews(t *testing.T) {
	h, _ := newDeployTest(t, func(o *Options) { o.Auth.ProtectViews = true })
	w := do(h, httptest.NewRequest(http.MethodGet, "/deploys?app=shop&env=production", nil))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login?next=%2Fdeploys%3Fapp%3Dshop%26env%3Dproduction" {
		t.Errorf("anonymous page: %d %s", w.Code, w.Header().Get("Location"))
	}
	for _, path := range []string{"/api/environments", "/api/deploys?app=shop&env=production", "/api/releases?app=shop"} {
		if w := do(h, httptest.NewRequest(http.MethodGet, path, nil)); w.Code != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d", path, w.Code)
		}
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Authorization", "Bearer "+testToken)
		if w := do(h, r); w.Code != http.StatusOK {
			t.Errorf("bearer %s: %d", path, w.Code)
		}
	}
	if w := do(h, httptest.NewRequest(http.MethodGet, "/healthz", nil)); w.Code != http.StatusOK {
		t.Errorf("healthz protected: %d", w.Code)
	}
	h, _ = newDeployTest(t, func(o *Options) { o.Auth = Auth{ProtectViews: true} })
	if w := do(h, httptest.NewRequest(http.MethodGet, "/", nil)); w.Code != http.StatusForbidden {
		t.Errorf("protect_views without credentials: %d", w.Code)
	}
}

func TestDeployDashboard(t *testing.T) {
	h, _ := newDeployTest(t, func(o *Options) { o.Namespace = "shops" })
	anon := do(h, httptest.NewRequest(http.MethodGet, "/", nil))
	if anon.Code != http.StatusOK || strings.Contains(anon.Body.String(), `action="/actions/`) || !strings.Contains(anon.Body.String(), `<a href="/login">Log in</a> to deploy`) {
		t.Errorf("anonymous view: %d, forms or login link wrong", anon.Code)
	}
	csp := anon.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("CSP %q", csp)
	}
	session, csrf := login(t, h, "Dana", testToken)
	page := do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(session)).Body.String()
	for _, want := range []string{
		`<article class="env" id="env-shop-production">`,
		`<h3>production <span class="badge neutral">approval required</span></h3>`,
		`<code class="current-release">12-3f9a2c1</code> · build 12`,
		`<code>main</code> <code>3f9a2c1</code> Fix &lt;script&gt;alert(1)&lt;/script&gt; cart`,
		`2024-05-01 12:00:00 UTC by alice · <a href="` + testUI + `/namespaces/shops/workflows/deploy%2Fshop%2Fproduction/run-1/history">workflow</a>`,
		`<span class="badge run">setup:upgrade ran</span>`,
		`<option value="">previous (11-aaaaaaa)</option>`,
		`<span class="badge run phase">waiting for approval</span>`,
		"<input type=\"hidden\" name=\"app\" value=\"shop\">\n<input type=\"hidden\" name=\"workflow_id\" value=\"deploy/shop/staging\">\n<input type=\"hidden\" name=\"env\" value=\"staging\">",
		`<button type="submit" class="danger" formaction="/actions/reject">Reject</button>`,
		`<span class="badge ok">production</span>`,
		`<input type="hidden" name="env" value="staging"><input type="hidden" name="release" value="12-3f9a2c1"><button type="submit">Deploy to staging</button>`,
		`<input type="hidden" name="env" value="production"><input type="hidden" name="release" value="11-aaaaaaa"><button type="submit">Deploy to production</button>`,
		`<span class="badge ok outcome">succeeded</span>`, `<td data-label="Duration" class="num">1m35s</td>`,
		`<span class="badge bad outcome">failed</span> <span class="error">health check failed on web3</span>`,
		`<a href="/deploys?app=shop&amp;env=production">deploy history</a>`,
		`name="csrf" value="` + csrf + `"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, `name="release" value="12-3f9a2c1"><button type="submit">Deploy to production`) {
		t.Error("unescaped markup, or a deploy button for the release production already runs")
	}
	if strings.Index(page, "succeeded") > strings.Index(page, "health check failed") {
		t.Error("recent deploys not newest first")
	}

	hist := do(h, httptest.NewRequest(http.MethodGet, "/deploys?app=shop&env=production", nil), withCookies(session))
	for _, want := range []string{`<td data-label="Kind">deploy</td>`, `&lt;img src=x onerror=alert(1)&gt;`, `<td data-label="Hosts">web1, web2</td>`,
		`<td data-label="Transfer">web1: delta from 11-aaaaaaa, 1.0 MiB fetched (1.0% of 100.0 MiB), 60000 linked, 3 written, 0 copied<br>web2: full, 100.0 MiB fetched (100.0% of 100.0 MiB) — base file &lt;b&gt;x&lt;/b&gt; changed</td>`} {
		if !strings.Contains(hist.Body.String(), want) {
			t.Errorf("history page lacks %s", want)
		}
	}
	if strings.Contains(hist.Body.String(), "<img") {
		t.Error("history page shows unescaped markup")
	}
	if w := do(h, httptest.NewRequest(http.MethodGet, "/deploys?app=shop&env=nope", nil)); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "no environment") {
		t.Errorf("unknown env history: %d", w.Code)
	}
}

func TestDeployDashboardFailures(t *testing.T) {
	h, fd := newDeployTest(t, nil)
	fd.histErr = errors.New("s3: access denied to bucket secret-bucket")
	page := do(h, httptest.NewRequest(http.MethodGet, "/", nil)).Body.String()
	if !strings.Contains(page, "could not read the deploy history") || strings.Contains(page, "secret-bucket") {
		t.Error("history failure not reported, or its cause leaked")
	}
	fd.envErr = errors.New("temporal: connection refused")
	w := do(h, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "could not read the environments") || !strings.Contains(w.Body.String(), "12-3f9a2c1") {
		t.Error("environment failure must still show the releases")
	}
	// Without Deploys the deploy routes do not exist.
	h, _, _ = newTest(t, func(o *Options) { o.Releases = sampleReleases() })
	for _, path := range []string{"/api/environments", "/deploys"} {
		if w := do(h, httptest.NewRequest(http.MethodGet, path, nil)); w.Code != http.StatusNotFound {
			t.Errorf("%s without Deploys: %d", path, w.Code)
		}
	}
}

func TestDeployAPIs(t *testing.T) {
	h, fd := newDeployTest(t, nil)
	var envs []EnvView
	w := do(h, httptest.NewRequest(http.MethodGet, "/api/environments", nil))
	if err := json.Unmarshal(w.Body.Bytes(), &envs); err != nil || w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("environments: %d %s", w.Code, w.Body)
	}
	if len(envs) != 2 || envs[0].State.Current != "12-3f9a2c1" || !envs[1].Running.WaitingApproval || envs[0].Running != nil {
		t.Fatalf("environments %+v", envs)
	}
	var raw []map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &raw)
	if raw[1]["running"].(map[string]any)["workflow_id"] != "deploy/shop/staging" || raw[0]["approval_required"] != true {
		t.Errorf("JSON field names: %s", w.Body)
	}
	if w := do(h, httptest.NewRequest(http.MethodGet, "/api/environments?app=other", nil)); strings.TrimSpace(w.Body.String()) != "[]" {
		t.Errorf("filtered environments: %s", w.Body)
	}
	var deps []catalog.Deploy
	w = do(h, httptest.NewRequest(http.MethodGet, "/api/deploys?app=shop&env=production", nil))
	if err := json.Unmarshal(w.Body.Bytes(), &deps); err != nil || len(deps) != 1 || deps[0].Outcome != catalog.OutcomeSucceeded || deps[0].Reason != "<img src=x onerror=alert(1)>" {
		t.Fatalf("deploys: %d %s", w.Code, w.Body)
	}
	for path, want := range map[string]int{
		"/api/deploys":                      http.StatusBadRequest,
		"/api/deploys?app=shop":             http.StatusBadRequest,
		"/api/deploys?app=shop&env=../envs": http.StatusNotFound,
	} {
		if w := do(h, httptest.NewRequest(http.MethodGet, path, nil)); w.Code != want {
			t.Errorf("%s: %d, want %d", path, w.Code, want)
		}
	}
	fd.histErr = errors.New("s3: secret-bucket")
	if w := do(h, httptest.NewRequest(http.MethodGet, "/api/deploys?app=shop&env=production", nil)); w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "secret-bucket") {
		t.Errorf("history error: %d %s", w.Code, w.Body)
	}
	fd.envErr = errors.New("down")
	if w := do(h, httptest.NewRequest(http.MethodGet, "/api/environments", nil)); w.Code != http.StatusServiceUnavailable {
		t.Errorf("environments error: %d", w.Code)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 850 * time.Millisecond: "850ms", 42*time.Second + 400*time.Millisecond: "42s",
		3*time.Minute + 7*time.Second: "3m07s", time.Hour + 2*time.Minute + 10*time.Second: "1h02m",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
