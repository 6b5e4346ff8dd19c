package server

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

const (
	// errCodecAuth tells an anonymous codec client how to authenticate.
	errCodecAuth = "the codec decrypts workflow payloads and needs the dashboard's credentials: " +
		"in the Temporal Web UI, log in to this server's /login in the same browser and turn on " +
		"\"Include cross-origin credentials\" in the UI's codec server settings (docs/operations.md, Web UI codec); " +
		"from scripts or the temporal CLI send Authorization: Bearer <server.auth.token> or HTTP basic credentials"
	// errCodecNoAuth refuses the codec of a server reachable beyond
	// loopback that has no credentials at all.
	errCodecNoAuth = "the codec is disabled: this server listens beyond loopback and no credentials are configured; " +
		"set server.auth (a token, or basic_user and basic_password) and restart `mageflow serve`, " +
		"or listen on 127.0.0.1 for local development"
	// errCodecOrigin refuses a browser page that is not the Web UI; %s are
	// the page's origin and the allowed ones.
	errCodecOrigin = "origin %s may not use this codec (allowed: %s); set temporal.ui_url to the address the Web UI is opened at"
	// errCodecCrossSite refuses a cookie sent by a page of another site.
	errCodecCrossSite = "refused a cross-site codec request carrying the session cookie; the codec answers the Web UI at temporal.ui_url only"
)

// codecHandler mounts Options.Codec at /codec with the operator's
// credentials required: the same bearer token, basic credentials or session
// cookie as the dashboard's actions. The Web UI sends the cookie when its
// codec setting "include cross-origin credentials" is on; for that the
// answers carry Access-Control-Allow-Origin (exactly the requesting origin,
// if it is one of CodecOrigins) and Access-Control-Allow-Credentials. A
// preflight (OPTIONS, which browsers send without credentials) is answered
// without authentication, for those origins only. A server without any
// credentials keeps an open codec only when it listens on loopback.
func (s *server) codecHandler() http.Handler {
	inner := http.StripPrefix("/codec", s.opt.Codec)
	origins := make([]string, 0, len(s.opt.CodecOrigins))
	for _, o := range s.opt.CodecOrigins {
		origins = append(origins, strings.TrimRight(o, "/"))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && !slices.Contains(origins, origin) {
			s.codecRefuse(w, r, http.StatusForbidden, fmt.Sprintf(errCodecOrigin, origin, cmp.Or(strings.Join(origins, ", "), "none")), false)
			return
		}
		if r.Method == http.MethodOptions {
			inner.ServeHTTP(w, r)
			return
		}
		if !s.opt.Auth.configured() {
			if s.opt.LoopbackOnly {
				inner.ServeHTTP(w, r)
				return
			}
			s.codecRefuse(w, r, http.StatusForbidden, errCodecNoAuth, origin != "")
			return
		}
		p, err := s.pages.auth.authenticate(r)
		if err != nil {
			var ae *authError
			if !errors.As(err, &ae) {
				ae = &authError{status: http.StatusInternalServerError, msg: err.Error()}
			}
			msg := ae.msg
			if ae.status == http.StatusUnauthorized {
				msg = errCodecAuth + " (" + ae.msg + ")"
				w.Header().Set("WWW-Authenticate", `Bearer realm="mageflow codec"`)
			}
			if ae.retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
			}
			s.codecRefuse(w, r, ae.status, msg, origin != "")
			return
		}
		if p.Method == "session" && origin == "" {
			if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
				s.codecRefuse(w, r, http.StatusForbidden, errCodecCrossSite, false)
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
}

// codecRefuse answers a refused codec request as JSON. With cors, the
// allowed origin may read the answer, so the Web UI can show why.
func (s *server) codecRefuse(w http.ResponseWriter, r *http.Request, status int, msg string, cors bool) {
	if cors {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
	s.log.Warn("codec request refused", slog.Int("status", status), slog.String("origin", r.Header.Get("Origin")), slog.String("remote", r.RemoteAddr))
	writeJSON(w, status, map[string]string{"error": msg})
}
