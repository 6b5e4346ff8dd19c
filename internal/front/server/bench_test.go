package server

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHook measures the in-process cost of one signed GitHub delivery
// (read, verify, parse, start with an instant fake) against GET /healthz
// through the same handler, with the access log formatted to io.Discard.
// The loopback figures with a simulated Temporal latency come from
// cmd/bench-webhook.
func BenchmarkHook(b *testing.B) {
	h := New(Options{Apps: testApps(), Builds: &fakeBuilds{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	body := githubPush("shop", "refs/heads/main", sha, false)
	sig := sign(ghSecret, body)
	b.Run("healthz", func(b *testing.B) {
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		}
	})
	b.Run("github-push", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		i := 0
		for b.Loop() {
			i++
			r := httptest.NewRequest(http.MethodPost, "/hooks/github", bytes.NewReader(body))
			r.Header.Set("X-GitHub-Event", "push")
			r.Header.Set("X-GitHub-Delivery", fmt.Sprint(i)) // unique: every delivery reaches StartBuild
			r.Header.Set("X-Hub-Signature-256", sig)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
