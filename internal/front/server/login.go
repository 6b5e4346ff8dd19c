package server

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

type loginView struct {
	chrome
	Next, Name, Error string
	BasicUser         string
	Configured        bool
}

var loginTemplate = template.Must(template.ParseFS(templateFS, "templates/base.html", "templates/login.html"))

// serveLogin shows the login form. The form carries a random value that is
// also set as a cookie (double submit): a cross-site page cannot read the
// cookie, so it cannot log a victim into the attacker's session.
func (d *dashboard) serveLogin(w http.ResponseWriter, r *http.Request) {
	d.renderLogin(w, r, http.StatusOK, loginView{Next: localPath(r.URL.Query().Get("next"))})
}

func (d *dashboard) renderLogin(w http.ResponseWriter, r *http.Request, status int, v loginView) {
	nonce := randomString()
	setCookie(w, r, loginCookie, nonce, 30*time.Minute)
	v.chrome = chrome{Title: "log in", CSRF: nonce, AuthConfigured: d.opt.Auth.configured()}
	v.Configured = d.opt.Auth.configured()
	v.BasicUser = d.opt.Auth.BasicUser
	if !v.Configured {
		v.Error = errNoAuth
		status = http.StatusForbidden
	}
	d.render(w, status, loginTemplate, v)
}

// handleLogin checks the form and sets the session cookie. A client address
// over the failure limit is refused before the password is looked at, so a
// right password is refused too until the window passes: the block cannot
// tell a guesser which guess was right.
func (d *dashboard) handleLogin(w http.ResponseWriter, r *http.Request) {
	if !d.opt.Auth.configured() {
		d.renderLogin(w, r, http.StatusForbidden, loginView{})
		return
	}
	if err := sameOrigin(r); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormLen)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "could not read the form", http.StatusBadRequest)
		return
	}
	next := localPath(r.PostForm.Get("next"))
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || !equal([]byte(c.Value), []byte(r.PostForm.Get("csrf"))) {
		d.renderLogin(w, r, http.StatusForbidden, loginView{Next: next, Error: "the login form expired; try again"})
		return
	}
	name := r.PostForm.Get("name")
	if wait := d.auth.limit.blocked(r); wait > 0 {
		ae := tooManyFailures(wait)
		d.log.Warn("dashboard login refused: too many failures", slog.String("name", cleanName(name)), slog.String("remote", r.RemoteAddr))
		w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
		d.renderLogin(w, r, ae.status, loginView{Next: next, Name: name, Error: ae.msg})
		return
	}
	user, kind, err := d.auth.checkPassword(name, r.PostForm.Get("password"))
	if err != nil {
		var ae *authError
		errors.As(err, &ae)
		if ae == errWrongPassword {
			d.auth.limit.fail(r)
			d.log.Warn("dashboard login failed", slog.String("name", cleanName(name)), slog.String("remote", r.RemoteAddr))
		}
		d.renderLogin(w, r, ae.status, loginView{Next: next, Name: name, Error: ae.msg})
		return
	}
	k, err := d.auth.keys()
	if err != nil {
		d.renderLogin(w, r, http.StatusServiceUnavailable, loginView{Next: next, Error: err.Error()})
		return
	}
	now := d.auth.now()
	s := sessionData{User: user, Kind: kind, Issued: now.UnixMilli(), Expires: now.Add(sessionTTL).Unix(), Nonce: randomString()}
	setCookie(w, r, sessionCookie, seal(k.session, s), sessionTTL)
	setCookie(w, r, loginCookie, "", 0)
	d.log.Info("dashboard login", slog.String("user", user), slog.String("auth", kind), slog.String("remote", r.RemoteAddr))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// handleLogout revokes the session on the server, not only in this browser:
// a copy of the cookie taken before is refused from now on.
func (d *dashboard) handleLogout(w http.ResponseWriter, r *http.Request) {
	p, ok := d.authorizeAction(w, r)
	if !ok {
		return
	}
	if p.session != nil {
		d.auth.revoked.revoke(*p.session, d.auth.now())
	}
	setCookie(w, r, sessionCookie, "", 0)
	d.log.Info("dashboard logout", slog.String("user", p.User))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
