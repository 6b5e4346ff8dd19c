package codec

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.temporal.io/sdk/converter"
)

// maxCodecBody bounds what one /encode or /decode request may send. Temporal
// rejects payloads over 2 MiB by default; a batch of a few is well below this.
const maxCodecBody = 8 << 20

// DefaultAllowedOrigins are the origins of a local Temporal Web UI
// (`temporal server start-dev`).
var DefaultAllowedOrigins = []string{"http://localhost:8233", "http://127.0.0.1:8233"}

// UIOrigins returns the browser origins (scheme://host[:port]) of the Web UI
// at uiURL, the only pages allowed to call the codec with credentials. A UI
// on loopback also gets its other spelling (localhost and 127.0.0.1 are
// one machine, but two origins). Nil when uiURL is not an absolute URL.
func UIOrigins(uiURL string) []string {
	u, err := url.Parse(strings.TrimSpace(uiURL))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil
	}
	origins := []string{strings.ToLower(u.Scheme + "://" + u.Host)}
	port := u.Port()
	alias := map[string]string{"localhost": "127.0.0.1", "127.0.0.1": "localhost"}[strings.ToLower(u.Hostname())]
	if alias != "" {
		host := alias
		if port != "" {
			host = net.JoinHostPort(alias, port)
		}
		origins = append(origins, strings.ToLower(u.Scheme)+"://"+host)
	}
	return origins
}

// Handler serves POST /encode and /decode for the Temporal Web UI and CLI
// ("codec server"), with CORS for allowedOrigins. Requests carrying an Origin
// that is not allowed are refused outright: the browser would hide the answer
// anyway, but a cross-site form post must not get payloads decrypted at all.
// Requests without Origin (the temporal CLI, curl) are served.
func Handler(codec converter.PayloadCodec, allowedOrigins []string) http.Handler {
	inner := converter.NewPayloadCodecHTTPHandler(codec)
	allowed := make([]string, len(allowedOrigins))
	for i, o := range allowedOrigins {
		allowed[i] = strings.TrimRight(o, "/")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !slices.Contains(allowed, origin) {
				http.Error(w, "origin "+origin+" is not allowed to use this codec server; add it to the allowed origins", http.StatusForbidden)
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST, OPTIONS")
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxCodecBody)
		inner.ServeHTTP(w, r)
	})
}
