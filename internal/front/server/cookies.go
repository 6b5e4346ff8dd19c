package server

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// seal encodes v and appends its HMAC: base64url(json) "." base64url(mac).
func seal(key []byte, v any) string {
	b, _ := json.Marshal(v)
	p := base64.RawURLEncoding.EncodeToString(b)
	return p + "." + base64.RawURLEncoding.EncodeToString(mac(key, p))
}

func openSigned(key []byte, s string, v any) bool {
	p, sig, ok := strings.Cut(s, ".")
	if !ok {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(key, p)) {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	return err == nil && json.Unmarshal(b, v) == nil
}

// randomString returns 128 random bits, base32-encoded.
func randomString() string { return rand.Text() }

// csrfToken is the hidden form field bound to p's session. Bearer requests
// do not need one (a browser never adds that header by itself), but a
// bearer-authenticated page still renders working forms.
func (a *authenticator) csrfToken(p *principal) string {
	if p == nil {
		return ""
	}
	k, err := a.keys()
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(mac(k.csrf, p.Method, p.Session))
}

func (a *authenticator) checkCSRF(p *principal, got string) bool {
	if p.Method == "bearer" {
		return true
	}
	want := a.csrfToken(p)
	return want != "" && equal([]byte(got), []byte(want))
}

// sameOrigin rejects requests a browser sent on behalf of another site.
// Fetch metadata is checked first (every current browser sends it), then
// Origin, then Referer; a request with none of them (curl) passes here and
// is left to the CSRF token. The host is compared, not the scheme, so a TLS
// terminating proxy in front does not break it.
func sameOrigin(r *http.Request) error {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return fmt.Errorf("refused a %s request: the form must be submitted from this dashboard", site)
	}
	check := func(header, v string) error {
		u, err := url.Parse(v)
		if v == "null" || err != nil || u.Host == "" {
			return fmt.Errorf("refused: unusable %s header %q; submit the form from this dashboard", header, v)
		}
		if !strings.EqualFold(u.Host, r.Host) {
			return fmt.Errorf("refused a cross-origin request from %s (this server is %s)", u.Host, r.Host)
		}
		return nil
	}
	if o := r.Header.Get("Origin"); o != "" {
		return check("Origin", o)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		return check("Referer", ref)
	}
	return nil
}

func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, ttl time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: secureRequest(r), MaxAge: int(ttl / time.Second)}
	if ttl <= 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// localPath keeps a post-login redirect on this server.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}
