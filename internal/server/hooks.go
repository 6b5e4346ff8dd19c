package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/mageflow/mageflow/internal/webhook"
)

// hookResponse is the JSON body of every /hooks answer. Providers show it in
// their delivery logs, which is where an operator looks first when a push
// did not build, so every non-accepted answer says why.
type hookResponse struct {
	Status      string         `json:"status"` // accepted | duplicate | ignored | error
	Reason      string         `json:"reason,omitempty"`
	Error       string         `json:"error,omitempty"`
	WorkflowID  string         `json:"workflow_id,omitempty"`
	App         string         `json:"app,omitempty"`
	Environment string         `json:"environment,omitempty"`
	Commit      string         `json:"commit,omitempty"`
	Builds      []startedBuild `json:"builds,omitempty"` // set when one push builds several apps
	RetryAfter  int            `json:"retry_after_seconds,omitempty"`
}

type startedBuild struct {
	App         string `json:"app"`
	Environment string `json:"environment"`
	WorkflowID  string `json:"workflow_id"`
}

// accepted is what the delivery cache remembers of a started delivery.
type accepted struct {
	commit string
	builds []startedBuild
}

func (a accepted) response(status string) hookResponse {
	r := hookResponse{Status: status, Commit: a.commit,
		App: a.builds[0].App, Environment: a.builds[0].Environment, WorkflowID: a.builds[0].WorkflowID}
	if len(a.builds) > 1 {
		r.Builds = a.builds
	}
	return r
}

func hookError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, hookResponse{Status: "error", Error: msg})
}

// handleHook processes one delivery. The order matters for safety:
//
//  1. the body is read through MaxBytesReader, so at most MaxBody bytes are
//     ever buffered;
//  2. it is parsed only to learn which repository it claims to be from;
//     nothing parsed is acted upon yet;
//  3. the signature is checked with the secret of every app configured for
//     that repository; only apps whose secret verifies go on. An unsigned or
//     wrongly signed request therefore stops here with 401, whatever it
//     claims;
//  4. only then are the event, branch and delivery id trusted.
func (s *server) handleHook(w http.ResponseWriter, r *http.Request) {
	p := webhook.Provider(r.PathValue("provider"))
	if !p.Valid() {
		hookError(w, http.StatusNotFound, "unknown provider "+strconv.Quote(string(p))+"; use /hooks/github, /hooks/gitlab or /hooks/bitbucket")
		return
	}
	log := s.log.With(slog.String("provider", string(p)))

	if r.ContentLength > s.opt.MaxBody {
		hookError(w, http.StatusRequestEntityTooLarge, tooLarge(s.opt.MaxBody))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opt.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			hookError(w, http.StatusRequestEntityTooLarge, tooLarge(s.opt.MaxBody))
			return
		}
		hookError(w, http.StatusBadRequest, "could not read the request body")
		return
	}

	push, err := webhook.Parse(p, r.Header, body)
	var ignored *webhook.Ignored
	if err != nil && !errors.As(err, &ignored) {
		log.Warn("webhook rejected: malformed", slog.String("error", err.Error()))
		hookError(w, http.StatusBadRequest, err.Error())
		return
	}

	candidates := s.appsFor(p, push)
	if len(candidates) == 0 {
		log.Warn("webhook rejected: no app configured for repository",
			slog.String("repository", push.RepoFullName), slog.Any("urls", push.RepoURLs))
		hookError(w, http.StatusNotFound, "no app is configured for this "+string(p)+" repository ("+
			firstNonEmpty(push.RepoFullName, strings.Join(push.RepoURLs, ", "), "none named")+"); add it to the mageflow config with provider "+string(p))
		return
	}

	apps, secretFailed := s.verified(log, p, candidates, r.Header, body)
	if len(apps) == 0 {
		if secretFailed {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
			hookError(w, http.StatusServiceUnavailable, "the webhook secret could not be read on the server; retry later")
			return
		}
		log.Warn("webhook rejected: bad signature", slog.String("repository", push.RepoFullName))
		hookError(w, http.StatusUnauthorized, "signature does not match the secret configured for this repository; check the webhook secret")
		return
	}

	// From here on the delivery is authentic.
	log = log.With(slog.String("delivery", push.DeliveryID), slog.String("event", push.Event))
	if ignored != nil {
		log.Info("webhook ignored", slog.String("reason", ignored.Reason))
		writeJSON(w, http.StatusAccepted, hookResponse{Status: "ignored", Reason: ignored.Reason})
		return
	}

	var dedupKey string
	if push.DeliveryID != "" {
		dedupKey = string(p) + "\x00" + push.DeliveryID
		if prev, ok := s.seen.get(dedupKey); ok {
			log.Info("webhook duplicate delivery", slog.String("workflow_id", prev.builds[0].WorkflowID))
			writeJSON(w, http.StatusAccepted, prev.response("duplicate"))
			return
		}
	}

	var targets []App
	for _, app := range apps {
		if _, ok := app.Branches[push.Branch]; ok {
			targets = append(targets, app)
		}
	}
	if len(targets) == 0 {
		reason := "branch " + push.Branch + " is not mapped to an environment of app " + appNames(apps)
		log.Info("webhook ignored", slog.String("reason", reason))
		writeJSON(w, http.StatusAccepted, hookResponse{Status: "ignored", Reason: reason})
		return
	}

	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), startTimeout)
	defer cancel()
	result := accepted{commit: push.After}
	for _, app := range targets {
		id, err := s.opt.Builds.StartBuild(ctx, BuildRequest{
			App: app.Name, Ref: push.Ref, Commit: push.After, Branch: push.Branch,
			Trigger: "webhook:" + string(p), DeliveryID: push.DeliveryID, Sender: push.Pusher,
		})
		if err != nil {
			// The cause (Temporal address, TLS…) goes to the log, not to the
			// provider's delivery page.
			log.Error("webhook: starting build failed", slog.String("app", app.Name), slog.String("commit", push.After), slog.String("error", err.Error()))
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
			writeJSON(w, http.StatusServiceUnavailable, hookResponse{Status: "error", App: app.Name, Commit: push.After,
				Error: "could not start the build; redeliver this webhook later", RetryAfter: retryAfter})
			return
		}
		result.builds = append(result.builds, startedBuild{App: app.Name, Environment: app.Branches[push.Branch], WorkflowID: id})
		log.Info("webhook accepted", slog.String("app", app.Name), slog.String("branch", push.Branch),
			slog.String("commit", push.After), slog.String("workflow_id", id), slog.String("sender", push.Pusher))
	}
	if dedupKey != "" {
		s.seen.add(dedupKey, result)
	}
	writeJSON(w, http.StatusAccepted, result.response("accepted"))
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

// verified returns the candidates whose secret authenticates the delivery.
// secretFailed reports that at least one secret could not be read, which
// turns a would-be 401 into a retryable 503: the sender may be genuine.
func (s *server) verified(log *slog.Logger, p webhook.Provider, candidates []App, h http.Header, body []byte) (apps []App, secretFailed bool) {
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
			log.Debug("webhook: signature mismatch", slog.String("app", app.Name), slog.String("reason", err.Error()))
			continue
		}
		apps = append(apps, app)
	}
	return apps, secretFailed
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
