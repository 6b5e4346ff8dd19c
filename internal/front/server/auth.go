package server

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Auth protects the dashboard's actions (deploy, approve, reject, rollback)
// and, with ProtectViews, its pages and JSON APIs. Nothing is open by
// default: with neither a token nor basic credentials every action answers
// 403.
//
// Three ways to authenticate, all checked in constant time:
//   - "Authorization: Bearer <token>" for scripts (acting user "token");
//   - HTTP basic auth with BasicUser/BasicPassword (acting user BasicUser);
//   - the /login form, which takes the token (plus a free-form name that
//     becomes the acting user) or the basic credentials, and sets a signed
//     session cookie. Logging out revokes the session on the server.
//
// Failed credentials are rate limited per client address and overall
// (ratelimit.go). For the rule that the requester of a deploy cannot
// approve it, everyone holding the token is one identity, whatever name
// they typed; only BasicUser is a named identity of its own.
//
// The secrets are functions so that a rotated secret file takes effect
// without a restart, and so that no secret sits in a struct that might be
// logged. Surrounding whitespace (a trailing newline in a file) is ignored;
// an empty secret counts as not configured, never as "any password".
type Auth struct {
	// Token is the bearer token and login-form password.
	Token func() ([]byte, error)
	// BasicUser and BasicPassword enable HTTP basic auth (and the login
	// form with that user name).
	BasicUser     string
	BasicPassword func() ([]byte, error)
	// ProtectViews requires authentication for the pages and the JSON APIs
	// too, not only for actions. /healthz, /hooks and /codec are never
	// covered: they have their own protection.
	ProtectViews bool
	// AllowSelfApproval lets the principal who requested a deploy approve
	// it too. Off (the default), the approval is refused with 403.
	AllowSelfApproval bool
}

func (a Auth) configured() bool {
	return a.Token != nil || (a.BasicUser != "" && a.BasicPassword != nil)
}

const (
	sessionCookie = "mageflow_session"
	loginCookie   = "mageflow_login"
	flashCookie   = "mageflow_flash"
	// sessionTTL bounds a stolen cookie's usefulness while sparing
	// operators a login per deploy during a working day.
	sessionTTL = 12 * time.Hour
	flashTTL   = time.Minute
	maxNameLen = 64
	maxFormLen = 64 << 10
)

// errViewsNoAuth is what protected pages answer when Auth has no
// credentials.
const errViewsNoAuth = "the pages are protected (server.auth.protect_views, on by default when server.listen is not loopback) but no credentials are configured: " +
	"set server.auth.token (or basic_user and basic_password) and restart `mageflow serve`; or listen on 127.0.0.1; or set protect_views: false to publish releases, hosts and deployers"

// errNoAuth is what every action answers when Auth has no credentials.
const errNoAuth = "actions are disabled: no credentials are configured for this server; set server.auth (a token, or basic_user and basic_password) in the mageflow config and restart `mageflow serve`"

// principal is an authenticated user.
type principal struct {
	User   string // acting user, recorded as "By"
	Method string // bearer | basic | session
	// Session identifies what the CSRF token is bound to: the session
	// cookie's nonce, or the basic-auth user.
	Session string
	// Identity is who this is for separation of duties: identityToken for
	// everyone holding the token (bearer or a token login under any name),
	// "user:"+BasicUser for the basic credentials.
	Identity string
	// session is the verified cookie, for logout.
	session *sessionData
}

// identityToken is the one identity every token holder shares.
const identityToken = "token"

func userIdentity(name string) string { return "user:" + name }

// keys are derived per request from the configured secrets, so rotating
// the token (or password) logs every session out and voids every CSRF token
// and flash message signed with the old one.
type keys struct{ session, csrf, flash []byte }

// authenticator checks credentials and signs cookies.
type authenticator struct {
	auth    Auth
	log     *slog.Logger
	now     func() time.Time
	limit   *limiter
	revoked *revocations
}

func newAuthenticator(a Auth, log *slog.Logger, now func() time.Time) *authenticator {
	if now == nil {
		now = time.Now
	}
	return &authenticator{auth: a, log: log, now: now, limit: newLimiter(now), revoked: newRevocations(now(), maxRevoked)}
}

var errSecretUnreadable = errors.New("the dashboard credentials could not be read on the server; see the server log")

func readSecret(f func() ([]byte, error)) ([]byte, error) {
	if f == nil {
		return nil, nil
	}
	b, err := f()
	if err != nil {
		return nil, err
	}
	return bytes.TrimSpace(b), nil
}

// secrets reads the configured secrets; either may be empty.
func (a *authenticator) secrets() (token, password []byte, err error) {
	token, err = readSecret(a.auth.Token)
	if err != nil {
		a.log.Error("dashboard auth: reading the token failed", slog.String("error", err.Error()))
		return nil, nil, errSecretUnreadable
	}
	if a.auth.BasicUser != "" {
		password, err = readSecret(a.auth.BasicPassword)
		if err != nil {
			a.log.Error("dashboard auth: reading the basic password failed", slog.String("error", err.Error()))
			return nil, nil, errSecretUnreadable
		}
	}
	if len(token) == 0 && len(password) == 0 {
		a.log.Error("dashboard auth: the configured token and password are empty; every request is refused")
		return nil, nil, errSecretUnreadable
	}
	return token, password, nil
}

func (a *authenticator) keys() (keys, error) {
	token, password, err := a.secrets()
	if err != nil {
		return keys{}, err
	}
	m := hmac.New(sha256.New, []byte("mageflow dashboard v1"))
	for _, part := range [][]byte{token, []byte(a.auth.BasicUser), password} {
		fmt.Fprintf(m, "%d:", len(part))
		m.Write(part)
	}
	root := m.Sum(nil)
	derive := func(label string) []byte { return mac(root, label) }
	return keys{session: derive("session"), csrf: derive("csrf"), flash: derive("flash")}, nil
}

func mac(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		fmt.Fprintf(m, "%d:%s", len(p), p)
	}
	return m.Sum(nil)
}

// equal compares secrets in constant time, also hiding their lengths.
func equal(a, b []byte) bool {
	ha, hb := sha256.Sum256(a), sha256.Sum256(b)
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// authError is a refused authentication with the status to answer.
type authError struct {
	status int
	msg    string
	// retryAfter, in seconds, is sent as Retry-After with a 429.
	retryAfter int
}

func (e *authError) Error() string { return e.msg }

var errUnauthenticated = &authError{status: http.StatusUnauthorized, msg: "authentication required: log in at /login, or send Authorization: Bearer <token> or HTTP basic credentials"}

// authenticate returns who sent r. An Authorization header that is present
// but wrong fails outright rather than falling back to the cookie, so a
// script with a stale token learns about it. A client address over the
// failure limit is refused before its header is checked.
func (a *authenticator) authenticate(r *http.Request) (*principal, error) {
	if !a.auth.configured() {
		return nil, &authError{status: http.StatusForbidden, msg: errNoAuth}
	}
	if r.Header.Get("Authorization") != "" {
		return a.authenticateHeader(r)
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errUnauthenticated
	}
	k, err := a.keys()
	if err != nil {
		return nil, &authError{status: http.StatusServiceUnavailable, msg: err.Error()}
	}
	var s sessionData
	if !openSigned(k.session, c.Value, &s) || a.now().Unix() > s.Expires || s.Nonce == "" {
		return nil, errSessionExpired
	}
	if !a.revoked.valid(s) {
		return nil, errSessionRevoked
	}
	id := identityToken
	if s.Kind == kindBasic {
		id = userIdentity(s.User)
	}
	return &principal{User: s.User, Method: "session", Session: "session:" + s.Nonce, Identity: id, session: &s}, nil
}

var (
	errSessionExpired = &authError{status: http.StatusUnauthorized, msg: "your session has expired or the server's credentials changed; log in again at /login"}
	errSessionRevoked = &authError{status: http.StatusUnauthorized, msg: "this session was logged out (or the server restarted since it began); log in again at /login"}
)

// authenticateHeader checks a bearer token or basic credentials.
func (a *authenticator) authenticateHeader(r *http.Request) (*principal, error) {
	if wait := a.limit.blocked(r); wait > 0 {
		return nil, tooManyFailures(wait)
	}
	token, password, err := a.secrets()
	if err != nil {
		return nil, &authError{status: http.StatusServiceUnavailable, msg: err.Error()}
	}
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch strings.ToLower(scheme) {
	case "bearer":
		if len(token) > 0 && equal([]byte(strings.TrimSpace(cred)), token) {
			return &principal{User: "token", Method: "bearer", Identity: identityToken}, nil
		}
	case "basic":
		if user, pass, ok := r.BasicAuth(); ok && len(password) > 0 {
			// Both compared, always, so timing says nothing about
			// which one was wrong.
			okUser := equal([]byte(user), []byte(a.auth.BasicUser))
			okPass := equal([]byte(pass), password)
			if okUser && okPass {
				return &principal{User: a.auth.BasicUser, Method: "basic", Session: "basic:" + a.auth.BasicUser, Identity: userIdentity(a.auth.BasicUser)}, nil
			}
		}
	}
	a.limit.fail(r)
	a.log.Warn("dashboard auth: wrong credentials in the Authorization header", slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr))
	return nil, &authError{status: http.StatusUnauthorized, msg: "the credentials in the Authorization header are wrong"}
}

// errTooManyFailures is the message of a 429; %d is the wait in seconds.
const errTooManyFailures = "too many failed logins from your address (or from everywhere): wait %d s and try again; nothing is checked until then, a right password included"

// tooManyFailures is the refusal of a blocked address.
func tooManyFailures(wait time.Duration) *authError {
	secs := retryAfterSeconds(wait)
	return &authError{status: http.StatusTooManyRequests, msg: fmt.Sprintf(errTooManyFailures, secs), retryAfter: secs}
}

// errNameTaken refuses a token login under the basic user's name, which
// would let the token holder pass for that user (and approve their own
// deploys); %q is the name.
const errNameTaken = "the name %q belongs to the basic-auth user: log in with that user's password, or type your own name with the token"

// errWrongPassword is the answer to wrong login credentials.
var errWrongPassword = &authError{status: http.StatusUnauthorized, msg: "wrong name or password"}

// checkPassword validates the login form. With the token, the acting user is
// the name typed in (or "token") and the kind is kindToken; with the basic
// credentials it is the basic user and kindBasic. Errors are *authError.
func (a *authenticator) checkPassword(name, password string) (user, kind string, err error) {
	token, basicPass, err := a.secrets()
	if err != nil {
		return "", "", &authError{status: http.StatusServiceUnavailable, msg: err.Error()}
	}
	okBasic := len(basicPass) > 0 && equal([]byte(name), []byte(a.auth.BasicUser)) && equal([]byte(password), basicPass)
	okToken := len(token) > 0 && equal([]byte(password), token)
	switch {
	case okBasic:
		return a.auth.BasicUser, kindBasic, nil
	case okToken:
		if name = cleanName(name); name == "" {
			name = "token"
		}
		if a.auth.BasicUser != "" && strings.EqualFold(name, a.auth.BasicUser) {
			return "", "", &authError{status: http.StatusForbidden, msg: fmt.Sprintf(errNameTaken, name)}
		}
		return name, kindToken, nil
	}
	return "", "", errWrongPassword
}

// cleanName keeps a login name printable and short: it ends up in deploy
// records, logs and workflow memos.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if r := []rune(s); len(r) > maxNameLen {
		s = string(r[:maxNameLen])
	}
	return strings.TrimSpace(s)
}

// authorizeAction runs every check a state-changing POST needs, in order:
// credentials configured, same origin, authenticated, form readable, CSRF
// token. It answers the request itself when one fails.
func (d *dashboard) authorizeAction(w http.ResponseWriter, r *http.Request) (*principal, bool) {
	if !d.opt.Auth.configured() {
		d.refuse(w, r, http.StatusForbidden, errNoAuth)
		return nil, false
	}
	if err := sameOrigin(r); err != nil {
		d.log.Warn("dashboard action refused", slog.String("path", r.URL.Path), slog.String("reason", err.Error()), slog.String("remote", r.RemoteAddr))
		d.refuse(w, r, http.StatusForbidden, err.Error())
		return nil, false
	}
	p, err := d.auth.authenticate(r)
	if err != nil {
		d.refuseAuth(w, r, err)
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormLen)
	if err := r.ParseForm(); err != nil {
		d.refuse(w, r, http.StatusBadRequest, "could not read the form: "+err.Error())
		return nil, false
	}
	if !d.auth.checkCSRF(p, r.PostForm.Get("csrf")) {
		d.log.Warn("dashboard action refused: bad CSRF token", slog.String("path", r.URL.Path), slog.String("user", p.User), slog.String("remote", r.RemoteAddr))
		d.refuse(w, r, http.StatusForbidden, "refused: the form's security token is missing or stale; reload the dashboard and try again")
		return nil, false
	}
	return p, true
}

// refuse answers a refused action as JSON for scripts and as plain text
// otherwise (a refused form post is rare and needs no styling).
func (d *dashboard) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, status)
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// viewer returns who is looking at a page, or nil; it never refuses.
func (d *dashboard) viewer(r *http.Request) *principal {
	if !d.opt.Auth.configured() {
		return nil
	}
	p, err := d.auth.authenticate(r)
	if err != nil {
		return nil
	}
	return p
}

// protectSensitive wraps pages that show weak spots (hardening reports):
// whenever credentials are configured they are required, with or without
// ProtectViews; only a server with no auth at all (local dev) serves them
// to anyone.
func (d *dashboard) protectSensitive(h http.HandlerFunc) http.HandlerFunc {
	if !d.opt.Auth.configured() {
		return h
	}
	strict := *d
	strict.opt.Auth.ProtectViews = true
	return strict.protect(h)
}

// protect wraps a page or API handler: with ProtectViews, anonymous
// browsers are sent to the login form and scripts get 401.
func (d *dashboard) protect(h http.HandlerFunc) http.HandlerFunc {
	if !d.opt.Auth.ProtectViews {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !d.opt.Auth.configured() {
			d.refuse(w, r, http.StatusForbidden, errViewsNoAuth)
			return
		}
		_, err := d.auth.authenticate(r)
		if err == nil {
			h(w, r)
			return
		}
		var ae *authError
		errors.As(err, &ae)
		if ae.status == http.StatusUnauthorized && !strings.HasPrefix(r.URL.Path, "/api/") && r.Header.Get("Authorization") == "" {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		d.refuseAuth(w, r, err)
	}
}

// refuseAuth answers a failed authenticate: the basic-auth challenge with a
// 401, Retry-After with a 429.
func (d *dashboard) refuseAuth(w http.ResponseWriter, r *http.Request, err error) {
	var ae *authError
	if !errors.As(err, &ae) {
		d.refuse(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	if ae.status == http.StatusUnauthorized && d.opt.Auth.BasicUser != "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="mageflow", charset="UTF-8"`)
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
	}
	d.refuse(w, r, ae.status, ae.msg)
}
