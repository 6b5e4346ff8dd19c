package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable time for the rate limit and sessions.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestLogoutAttackReplayedCookie: an attacker copies the operator's session
// cookie (shared machine, a proxy log, a browser extension); the operator
// logs out. The copy must be refused afterwards, on an action and on a
// protected view, although its signature and expiry are still valid.
func TestLogoutAttackReplayedCookie(t *testing.T) {
	h, fd := newDeployTest(t, func(o *Options) { o.Auth.ProtectViews = true })
	sc, csrf := login(t, h, "Dana", testToken)
	stolen := *sc

	// Before the logout the copy works: the test can tell.
	if w := do(h, httptest.NewRequest(http.MethodGet, "/api/environments", nil), withCookies(&stolen)); w.Code != http.StatusOK {
		t.Fatalf("the copied cookie does not work even before the logout: %d", w.Code)
	}
	w := do(h, postForm("/logout", url.Values{"csrf": {csrf}}, withCookies(sc)))
	if w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}

	w = do(h, postForm("/actions/rollback", rollbackForm(csrf), withCookies(&stolen), withHeader("Accept", "application/json")))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "logged out") {
		t.Errorf("action with the copied cookie after logout: %d %s", w.Code, w.Body)
	}
	if _, _, rb := fd.calls(); len(rb) != 0 {
		t.Errorf("a rollback started with a revoked session: %+v", rb)
	}
	w = do(h, httptest.NewRequest(http.MethodGet, "/api/environments", nil), withCookies(&stolen))
	if w.Code != http.StatusUnauthorized {
		t.Errorf("protected API with the copied cookie after logout: %d %s", w.Code, w.Body)
	}
	w = do(h, httptest.NewRequest(http.MethodGet, "/", nil), withCookies(&stolen))
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/login") {
		t.Errorf("protected page with the copied cookie after logout: %d %s", w.Code, w.Header().Get("Location"))
	}
	// The operator's own next login is unaffected.
	sc2, _ := login(t, h, "Dana", testToken)
	if w := do(h, httptest.NewRequest(http.MethodGet, "/api/environments", nil), withCookies(sc2)); w.Code != http.StatusOK {
		t.Errorf("a new login after the logout: %d", w.Code)
	}
}

// TestRevocationsBounded: a full revocation set never forgets a logout; it
// refuses every session issued up to the one it drops instead.
func TestRevocationsBounded(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	v := newRevocations(start, 3)
	sess := func(ms int64, nonce string) sessionData {
		return sessionData{User: "u", Nonce: nonce, Issued: start.UnixMilli() + ms, Expires: start.Add(time.Hour).Unix()}
	}
	old := sess(10, "old")
	if !v.valid(old) {
		t.Fatal("fresh session refused")
	}
	if v.valid(sess(-5000, "before-start")) {
		t.Error("a session issued before the server started is accepted: a restart would revive logged-out sessions")
	}
	for i, s := range []sessionData{old, sess(20, "b"), sess(30, "c"), sess(40, "d"), sess(50, "e")} {
		v.revoke(s, start)
		if !v.valid(sess(60, "live")) {
			t.Fatalf("after revocation %d a newer live session is refused", i)
		}
	}
	for _, n := range []string{"old", "b", "c", "d", "e"} {
		ms := map[string]int64{"old": 10, "b": 20, "c": 30, "d": 40, "e": 50}[n]
		if v.valid(sess(ms, n)) {
			t.Errorf("revoked session %s accepted again after the set overflowed", n)
		}
	}
	if len(v.nonces) > 3 {
		t.Errorf("the set holds %d entries, bound 3", len(v.nonces))
	}
}

// TestLoginAttackBruteForce: a burst of wrong passwords from one address
// gets 429 with Retry-After; the right password from that address is
// refused too until the window passes (the block is no oracle), while an
// operator at another address logs in normally.
func TestLoginAttackBruteForce(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	h, _ := newDeployTest(t, func(o *Options) { o.clock, o.Auth.ProtectViews = clock.now, true })
	const attacker, operator = "203.0.113.7:40000", "198.51.100.2:50000"
	try := func(remote, name, pass string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/login", nil)
		r.RemoteAddr = remote
		w := do(h, r)
		lc := cookie(w, loginCookie)
		return do(h, postForm("/login", url.Values{"csrf": {csrfOf(t, w.Body.String())}, "name": {name}, "password": {pass}},
			withCookies(lc), func(r *http.Request) { r.RemoteAddr = remote }))
	}
	for i := range limitPerAddr {
		if w := try(attacker, basicUser, "guess-"+strconv.Itoa(i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	for _, pass := range []string{"guess-x", basicPass} {
		w := try(attacker, basicUser, pass)
		if w.Code != http.StatusTooManyRequests || cookie(w, sessionCookie) != nil {
			t.Fatalf("blocked address with %q: %d, session %v", pass, w.Code, cookie(w, sessionCookie))
		}
		if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); ra <= 0 || ra > 60 {
			t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
		}
	}
	// The same guesses through the Authorization header are blocked too.
	r := httptest.NewRequest(http.MethodGet, "/api/environments", nil)
	r.RemoteAddr = attacker
	r.SetBasicAuth(basicUser, basicPass)
	if w := do(h, r); w.Code != http.StatusTooManyRequests {
		t.Errorf("blocked address with basic auth: %d", w.Code)
	}
	if w := try(operator, basicUser, basicPass); w.Code != http.StatusSeeOther || cookie(w, sessionCookie) == nil {
		t.Errorf("an operator at another address: %d %s", w.Code, w.Body)
	}
	clock.advance(limitWindow + time.Second)
	if w := try(attacker, basicUser, basicPass); w.Code != http.StatusSeeOther {
		t.Errorf("after the window the right password: %d", w.Code)
	}
}

// TestLoginGlobalLimit: guesses spread over many addresses stop at the
// global limit.
func TestLoginGlobalLimit(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	h, _ := newDeployTest(t, func(o *Options) { o.clock, o.Auth.ProtectViews = clock.now, true })
	basic := func(i int, pass string) int {
		r := httptest.NewRequest(http.MethodGet, "/api/environments", nil)
		r.RemoteAddr = "10.1." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) + ":1234"
		r.SetBasicAuth(basicUser, pass)
		return do(h, r).Code
	}
	for i := range limitGlobal {
		if c := basic(i, "guess"); c != http.StatusUnauthorized {
			t.Fatalf("guess %d from a fresh address: %d", i, c)
		}
	}
	if c := basic(limitGlobal+1, basicPass); c != http.StatusTooManyRequests {
		t.Errorf("past the global limit, a fresh address with the right password: %d", c)
	}
}

// TestClientKeyIPv6: one IPv6 /64 is one client; X-Forwarded-For is not
// believed.
func TestClientKeyIPv6(t *testing.T) {
	a := &http.Request{RemoteAddr: "[2001:db8:1:2::1]:1", Header: http.Header{"X-Forwarded-For": {"192.0.2.9"}}}
	b := &http.Request{RemoteAddr: "[2001:db8:1:2:ffff::9]:2"}
	if clientKey(a) != clientKey(b) || clientKey(a) != "2001:db8:1:2::/64" {
		t.Errorf("keys %q %q", clientKey(a), clientKey(b))
	}
}
