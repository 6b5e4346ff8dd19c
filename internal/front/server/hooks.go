package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/mageflow/mageflow/internal/platform/webhook"
)

// hookResponse is the JSON body of every /hooks answer. Providers show it in
// their delivery logs, which is where an operator looks first when a push
// did not build, so every non-accepted answer says why.
type hookResponse struct {
	Status string `json:"status"` // accepted | duplicate | ignored | error
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// Check names the authentication check that failed on a 401
	// (webhook.Check… constants).
	Check       string         `json:"check,omitempty"`
	WorkflowID  string         `json:"workflow_id,omitempty"`
	App         string         `json:"app,omitempty"`
	Environment string         `json:"environment,omitempty"`
	Commit      string         `json:"commit,omitempty"`
	Builds      []startedBuild `json:"builds,omitempty"` // set when one delivery starts several builds
	RetryAfter  int            `json:"retry_after_seconds,omitempty"`
}

type startedBuild struct {
	App         string `json:"app"`
	Environment string `json:"environment"`
	Branch      string `json:"branch,omitempty"`
	Commit      string `json:"commit,omitempty"`
	WorkflowID  string `json:"workflow_id"`
}

// accepted is what the delivery cache remembers of a started delivery.
type accepted struct {
	commit string // of the first build
	builds []startedBuild
}

func (a accepted) response(status string) hookResponse {
	b := a.builds[0]
	r := hookResponse{Status: status, Commit: a.commit, App: b.App, Environment: b.Environment, WorkflowID: b.WorkflowID}
	if len(a.builds) > 1 {
		r.Builds = a.builds
	}
	return r
}

// target is one build a delivery asks for: a mapped branch of one app.
type target struct {
	app    App
	update webhook.Update
}

const (
	msgDuplicate  = "duplicate delivery, ignored: this delivery id was already accepted and nothing new was started"
	msgNoRepoPing = "; it names no repository (an organization or GitHub App webhook), so there is nothing to build: each push is matched to an app by its repository"
)

func hookError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, hookResponse{Status: "error", Error: msg})
}

func hookIgnored(w http.ResponseWriter, log *slog.Logger, reason string) {
	log.Info("webhook ignored", slog.String("reason", reason))
	writeJSON(w, http.StatusAccepted, hookResponse{Status: "ignored", Reason: reason})
}

// handleHook processes one delivery. The order matters for safety:
//
//  1. the body is read through MaxBytesReader, so at most MaxBody bytes are
//     ever buffered;
//  2. it is parsed only to learn which repository it claims to be from;
//     nothing parsed is acted upon yet;
//  3. the signature is checked, over the raw body as received, with the
//     secret of every app configured for that repository; only apps whose
//     secret verifies go on. An unsigned or wrongly signed request
//     therefore stops here with 401, whatever it claims;
//  4. only then are the event, branches and delivery id trusted, and the
//     replay checks (delivery id, push age, branch order) applied.
func (s *server) handleHook(w http.ResponseWriter, r *http.Request) {
	p := webhook.Provider(r.PathValue("provider"))
	if !p.Valid() {
		hookError(w, http.StatusNotFound, "unknown provider "+strconv.Quote(string(p))+"; use /hooks/github, /hooks/gitlab or /hooks/bitbucket")
		return
	}
	log := s.log.With(slog.String("provider", string(p)))
	body, ok := s.readHookBody(w, r)
	if !ok {
		return
	}
	push, err := webhook.Parse(p, r.Header, body)
	var ignored *webhook.Ignored
	if err != nil && !errors.As(err, &ignored) {
		log.Warn("webhook rejected: malformed", slog.String("error", err.Error()))
		hookError(w, http.StatusBadRequest, err.Error())
		return
	}
	if ignored != nil && len(push.RepoURLs) == 0 {
		hookIgnored(w, log, ignored.Reason+msgNoRepoPing)
		return
	}
	apps, ok := s.authenticate(w, log, p, push, ignored, r.Header, body)
	if !ok {
		return
	}
	// From here on the delivery is authentic.
	log = log.With(slog.String("delivery", push.DeliveryID), slog.String("event", push.Event))
	if ignored != nil {
		hookIgnored(w, log, ignored.Reason)
		return
	}
	var dedupKey string
	if push.DeliveryID != "" {
		dedupKey = string(p) + "\x00" + push.DeliveryID
		if prev, ok := s.seen.get(dedupKey); ok {
			log.Info("webhook duplicate delivery", slog.String("workflow_id", prev.builds[0].WorkflowID))
			resp := prev.response("duplicate")
			resp.Reason = msgDuplicate
			writeJSON(w, http.StatusAccepted, resp)
			return
		}
	}
	targets := targetsOf(push, apps)
	if len(targets) == 0 {
		hookIgnored(w, log, unmappedReason(push, apps))
		return
	}
	if msg := s.staleMessage(push, targets[0].app.Name); msg != "" {
		log.Warn("webhook refused: stale push", slog.Time("pushed_at", push.PushedAt))
		hookError(w, http.StatusUnprocessableEntity, msg)
		return
	}
	result, ok := s.startTargets(w, r.Context(), log, push, targets)
	if ok && dedupKey != "" {
		s.seen.add(dedupKey, result)
	}
}

func (s *server) readHookBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > s.opt.MaxBody {
		hookError(w, http.StatusRequestEntityTooLarge, tooLarge(s.opt.MaxBody))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opt.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			hookError(w, http.StatusRequestEntityTooLarge, tooLarge(s.opt.MaxBody))
			return nil, false
		}
		hookError(w, http.StatusBadRequest, "could not read the request body")
		return nil, false
	}
	return body, true
}

// authenticate finds the apps configured for the delivery's repository whose
// secret verifies it, answering (and returning false) when there are none.
func (s *server) authenticate(w http.ResponseWriter, log *slog.Logger, p webhook.Provider, push *webhook.Push, ignored *webhook.Ignored, h http.Header, body []byte) ([]App, bool) {
	candidates := s.appsFor(p, push)
	repo := firstNonEmpty(push.RepoFullName, strings.Join(push.RepoURLs, ", "), "none named")
	if len(candidates) == 0 {
		log.Warn("webhook: no app configured for repository", slog.String("repository", push.RepoFullName), slog.Any("urls", push.RepoURLs))
		if ignored != nil && push.Event == "ping" {
			hookIgnored(w, log, "ping from repository "+repo+", for which no app is configured: add an app with this repo and webhook provider "+string(p)+" to the mageflow config")
			return nil, false
		}
		hookError(w, http.StatusNotFound, "no app is configured for this "+string(p)+" repository ("+repo+"); add it to the mageflow config with provider "+string(p))
		return nil, false
	}
	apps, secretFailed, verr := s.verified(log, p, candidates, h, body)
	if len(apps) > 0 {
		return apps, true
	}
	if secretFailed {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		hookError(w, http.StatusServiceUnavailable, "the webhook secret could not be read on the server; retry later")
		return nil, false
	}
	resp := hookResponse{Status: "error", Error: "the delivery is not authenticated for repository " + repo}
	var ve *webhook.VerifyError
	if errors.As(verr, &ve) {
		resp.Check, resp.Error = ve.Check, ve.Error()
	}
	log.Warn("webhook rejected: not authenticated", slog.String("repository", push.RepoFullName), slog.String("check", resp.Check))
	writeJSON(w, http.StatusUnauthorized, resp)
	return nil, false
}

// targetsOf lists, for every branch the delivery moved, the apps that map
// that branch to an environment.
func targetsOf(push *webhook.Push, apps []App) []target {
	var out []target
	for _, u := range push.Updates {
		for _, app := range apps {
			if _, ok := app.Branches[u.Branch]; ok {
				out = append(out, target{app: app, update: u})
			}
		}
	}
	return out
}

func unmappedReason(push *webhook.Push, apps []App) string {
	branches := make([]string, len(push.Updates))
	for i, u := range push.Updates {
		branches[i] = u.Branch
	}
	what := "branch " + strings.Join(branches, ", ") + " is"
	if len(branches) > 1 {
		what = "branches " + strings.Join(branches, ", ") + " are"
	}
	return what + " not mapped to an environment of app " + appNames(apps) + "; map a branch under the app's environments to build it"
}

// startTargets starts one build per target, after refusing targets that
// would go back behind a newer accepted push of the same branch. It
// answers the request; ok reports that something was started.
func (s *server) startTargets(w http.ResponseWriter, rctx context.Context, log *slog.Logger, push *webhook.Push, targets []target) (accepted, bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rctx), startTimeout)
	defer cancel()
	var result accepted
	var refused []string
	for _, t := range targets {
		app, u := t.app, t.update
		env := app.Branches[u.Branch]
		if newer, ok := s.claimHead(app.Name, u, push.PushedAt); !ok {
			log.Warn("webhook refused: older than an accepted push", slog.String("app", app.Name), slog.String("branch", u.Branch),
				slog.String("commit", u.After), slog.String("newer_commit", newer.commit))
			refused = append(refused, supersededMessage(app.Name, env, u, newer))
			continue
		}
		id, err := s.opt.Builds.StartBuild(ctx, BuildRequest{
			App: app.Name, Ref: u.Ref, Commit: u.After, Branch: u.Branch,
			Trigger: "webhook:" + string(push.Provider), DeliveryID: push.DeliveryID, Sender: push.Pusher,
		})
		if err != nil {
			// The cause (Temporal address, TLS…) goes to the log, not to the
			// provider's delivery page.
			log.Error("webhook: starting build failed", slog.String("app", app.Name), slog.String("commit", u.After), slog.String("error", err.Error()))
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
			writeJSON(w, http.StatusServiceUnavailable, hookResponse{Status: "error", App: app.Name, Commit: u.After,
				Error: "could not start the build; redeliver this webhook later", RetryAfter: retryAfter})
			return result, false
		}
		if result.commit == "" {
			result.commit = u.After
		}
		result.builds = append(result.builds, startedBuild{App: app.Name, Environment: env, Branch: u.Branch, Commit: u.After, WorkflowID: id})
		log.Info("webhook accepted", slog.String("app", app.Name), slog.String("branch", u.Branch),
			slog.String("commit", u.After), slog.String("workflow_id", id), slog.String("sender", push.Pusher))
	}
	if len(result.builds) == 0 {
		hookError(w, http.StatusConflict, strings.Join(refused, "; "))
		return result, false
	}
	resp := result.response("accepted")
	resp.Reason = strings.Join(refused, "; ")
	writeJSON(w, http.StatusAccepted, resp)
	return result, true
}

// appsFor returns the apps configured for provider p whose repository is one
// the delivery names. Several apps may share a repository (one per
// environment, or a monorepo).
func (s *server) appsFor(p webhook.Provider, push *webhook.Push) []App {
	var out []App
	for _, app := range s.opt.Apps {
		if app.Provider == p && webhook.MatchRepo(app.RepoURL, push) {
			out = append(out, app)
		}
	}
	return out
}

// verified returns the candidates whose secret authenticates the delivery,
// and the first verification error for the 401 answer. secretFailed
// reports that at least one secret could not be read, which turns a
// would-be 401 into a retryable 503: the sender may be genuine.
func (s *server) verified(log *slog.Logger, p webhook.Provider, candidates []App, h http.Header, body []byte) (apps []App, secretFailed bool, firstErr error) {
	for _, app := range candidates {
		if app.Secret == nil {
			log.Error("webhook: app has no secret configured; deliveries for it are refused", slog.String("app", app.Name))
			continue
		}
		secret, err := app.Secret()
		if err != nil {
			log.Error("webhook: reading secret failed", slog.String("app", app.Name), slog.String("error", err.Error()))
			secretFailed = true
			continue
		}
		if err := webhook.Verify(p, secret, h, body); err != nil {
			log.Debug("webhook: not authenticated", slog.String("app", app.Name), slog.String("reason", err.Error()))
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		apps = append(apps, app)
	}
	return apps, secretFailed, firstErr
}

func tooLarge(limit int64) string {
	return "payload larger than " + strconv.FormatInt(limit, 10) + " bytes; if this is a genuine push, raise the server's webhook body limit"
}

func appNames(apps []App) string {
	names := make([]string, len(apps))
	for i, a := range apps {
		names[i] = a.Name
	}
	return strings.Join(names, ", ")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
