// Package server is the HTTP side of `mageflow serve`: it turns signed push
// deliveries from GitHub, GitLab and Bitbucket into BuildRelease workflows,
// shows the releases and environments of every app on a small dashboard
// (where authenticated operators deploy, approve and roll back), and hosts
// the Temporal payload codec for the Web UI. It holds no state that matters
// across restarts: builds are deduplicated by workflow id on the Temporal
// side, and the in-memory delivery cache only saves work.
package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/platform/webhook"
)

// Builds starts build workflows.
type Builds interface {
	// StartBuild starts BuildRelease (or joins the running/finished one for
	// that commit) and returns its workflow id.
	StartBuild(ctx context.Context, req BuildRequest) (workflowID string, err error)
}

// BuildRequest is what a verified push asks to build.
type BuildRequest struct {
	App        string
	Ref        string
	Commit     string
	Branch     string
	Trigger    string // "webhook:github", "webhook:gitlab", "webhook:bitbucket"
	DeliveryID string
	Sender     string
}

// Releases lists the releases of an app.
type Releases interface {
	// List returns the releases of app, newest first.
	List(ctx context.Context, app string) ([]release.Meta, error)
}

// App is one configured application as far as webhooks are concerned.
type App struct {
	Name     string
	RepoURL  string
	Provider webhook.Provider
	// Secret returns the webhook secret. It is called for every delivery so
	// a rotated secret file takes effect without a restart, and so the
	// secret never sits in a struct that might be logged.
	Secret func() ([]byte, error)
	// Branches maps a branch name to the environment it deploys to; pushes
	// to other branches are acknowledged and ignored.
	Branches map[string]string
}

// Options configures New.
type Options struct {
	// Lifecycle starts readiness checks for autoscaling lifecycle events
	// posted to /hooks/aws-lifecycle with LifecycleToken as bearer token.
	Lifecycle      Lifecycle
	LifecycleToken func() ([]byte, error)

	Apps     []App
	Builds   Builds
	Releases Releases
	// Codec, when set, is mounted at /codec/ with the prefix stripped, so
	// the Web UI's codec endpoint is http://HOST/codec. It answers only
	// the credentials Auth accepts (codecauth.go).
	Codec http.Handler
	// CodecOrigins are the origins of the Temporal Web UI that may call the
	// codec from a browser, with credentials (scheme://host:port).
	CodecOrigins []string
	// LoopbackOnly says the server listens on loopback only. Then, and only
	// then, a server with no credentials configured serves the codec to
	// anyone (local development).
	LoopbackOnly bool

	Logger *slog.Logger
	// MaxBody bounds a webhook body; larger deliveries get 413. Default 5 MiB
	// (GitHub caps payloads at 25 MB, but pushes with that much metadata are
	// not worth buffering).
	MaxBody int64
	// WebhookMaxAge refuses a delivery whose signed push time (GitHub's
	// repository.pushed_at) is older than this, so a captured delivery
	// cannot be replayed later. Zero means DefaultWebhookMaxAge; negative
	// turns the check off.
	WebhookMaxAge time.Duration
	// UIBaseURL is the Temporal Web UI (e.g. http://127.0.0.1:8233), used for
	// links from the dashboard to workflows.
	UIBaseURL string
	Namespace string
	// Ready reports whether the server can do its job (Temporal reachable…);
	// /healthz answers 503 with its error. Nil means always ready.
	Ready func(ctx context.Context) error
	// Deploys adds the environments, deploy history and deploy, approve,
	// reject and rollback actions to the dashboard. Nil: no deploy views.
	Deploys Deploys
	// Auth protects the actions (and, with ProtectViews, the pages). With
	// no credentials configured every action is refused.
	Auth Auth
	// HardenReports adds /reports/harden/ (latest hardening report per
	// host, reports.go). Nil: no such pages.
	HardenReports HardenReports

	// clock replaces time.Now for sessions and rate limits in tests.
	clock func() time.Time
}

// DefaultMaxBody is the webhook body limit when Options.MaxBody is zero.
const DefaultMaxBody = 5 << 20

const (
	// startTimeout bounds one StartBuild call. It is detached from the
	// request context: a provider that hangs up (GitHub waits 10 s) must not
	// cancel a start that is about to succeed.
	startTimeout = 10 * time.Second
	readyTimeout = 3 * time.Second
	// retryAfter is the hint given with 503s; providers and operators
	// redelivering after it will be deduplicated if the first start did land.
	retryAfter = 30
	// dedupSize bounds the recent-delivery cache; a few thousand entries
	// cover any realistic redelivery burst in a few hundred KiB.
	dedupSize = 4096
)

type server struct {
	opt   Options
	log   *slog.Logger
	seen  *lru[accepted]
	heads *lru[branchHead] // newest accepted push per app and branch (hooks_replay.go)
	mux   *http.ServeMux
	pages *dashboard
}

// New returns the handler serving every route of `mageflow serve`.
func New(opt Options) http.Handler {
	if opt.MaxBody <= 0 {
		opt.MaxBody = DefaultMaxBody
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Namespace == "" {
		opt.Namespace = "default"
	}
	s := &server{opt: opt, log: opt.Logger, seen: newLRU(dedupSize), heads: newCache[branchHead](dedupSize), mux: http.NewServeMux()}
	s.pages = newDashboard(opt)
	s.mux.HandleFunc("POST /hooks/aws-lifecycle", s.handleLifecycle)
	s.mux.HandleFunc("POST /hooks/{provider}", s.handleHook)
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	p := s.pages
	s.mux.HandleFunc("GET /{$}", p.protect(p.serveIndex))
	s.mux.HandleFunc("GET /api/releases", p.protect(p.serveAPI))
	s.mux.HandleFunc("GET /login", p.serveLogin)
	s.mux.HandleFunc("POST /login", p.handleLogin)
	s.mux.HandleFunc("POST /logout", p.handleLogout)
	if opt.HardenReports != nil {
		s.mux.HandleFunc("GET /reports/harden/{$}", p.protectSensitive(p.serveHardenIndex))
		s.mux.HandleFunc("GET /reports/harden/{host}/{file}", p.protectSensitive(p.serveHardenReport))
	}
	if opt.Deploys != nil {
		s.mux.HandleFunc("GET /deploys", p.protect(p.serveDeploysPage))
		s.mux.HandleFunc("GET /api/environments", p.protect(p.serveEnvironmentsAPI))
		s.mux.HandleFunc("GET /api/deploys", p.protect(p.serveDeploysAPI))
		s.mux.HandleFunc("POST /actions/deploy", p.handleDeploy)
		s.mux.HandleFunc("POST /actions/approve", p.handleApprove)
		s.mux.HandleFunc("POST /actions/reject", p.handleReject)
		s.mux.HandleFunc("POST /actions/rollback", p.handleRollback)
	}
	if opt.Codec != nil {
		s.mux.Handle("/codec/", s.codecHandler())
	}
	return s.accessLog(s.mux)
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.opt.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.opt.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// writeJSON answers with v; encoding errors can only be write errors to a
// gone client, so they are not reported.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController (used by MaxBytesReader to close the
// connection after an oversized body) reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.status),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		)
	})
}
