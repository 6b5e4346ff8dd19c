package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/platform/units"
)

// Deploys is what the dashboard needs from the deploy side: what every
// environment runs, what ran before, and the three ways to change it. The
// real implementation starts and signals Temporal workflows; the dashboard
// only renders and forwards, so every rule (one deploy per environment,
// approvals, rollback safety) is enforced there and its errors are shown to
// the operator verbatim.
type Deploys interface {
	// Environments lists every configured environment of every app, in
	// config order.
	Environments(ctx context.Context) ([]EnvView, error)
	// History returns an environment's deploys, newest first, at most limit.
	History(ctx context.Context, app, env string, limit int) ([]catalog.Deploy, error)
	// StartDeploy starts ZeroDowntimeDeploy and returns its workflow id.
	StartDeploy(ctx context.Context, r DeployRequest) (workflowID string, err error)
	// Approve approves or rejects a deploy waiting for approval.
	Approve(ctx context.Context, r ApprovalRequest) error
	// Rollback starts a rollback (to r.To, or to the previous release when
	// empty) and returns its workflow id.
	Rollback(ctx context.Context, r RollbackRequest) (workflowID string, err error)
}

// EnvView is one environment as the dashboard shows it.
type EnvView struct {
	App              string   `json:"app"`
	Env              string   `json:"env"`
	Branch           string   `json:"branch,omitempty"`
	URL              string   `json:"url,omitempty"`
	Hosts            []string `json:"hosts"`
	ApprovalRequired bool     `json:"approval_required"`
	// State is nil before the first deploy.
	State *catalog.EnvState `json:"state"`
	// Running is the deploy in progress, if any.
	Running *RunningDeploy `json:"running"`
}

// RunningDeploy is a deploy or rollback workflow that has not finished.
type RunningDeploy struct {
	WorkflowID      string    `json:"workflow_id"`
	RunID           string    `json:"run_id"`
	ReleaseID       string    `json:"release_id"`
	Phase           string    `json:"phase"`
	WaitingApproval bool      `json:"waiting_approval"`
	RequestedBy     string    `json:"requested_by"`
	StartedAt       time.Time `json:"started_at"`
}

// DeployRequest asks to deploy a release to an environment.
type DeployRequest struct{ App, Env, ReleaseID, By, Reason string }

// ApprovalRequest approves (Approve) or rejects a waiting deploy.
type ApprovalRequest struct {
	App, Env, WorkflowID, By, Reason string
	Approve                          bool
}

// RollbackRequest asks to switch an environment back; To empty means the
// previous release. Force overrides the refusal to roll back below a
// release that ran setup:upgrade.
type RollbackRequest struct {
	App, Env, To, By, Reason string
	Force                    bool
}

const (
	// actionTimeout bounds one call into Deploys. It is detached from the
	// request: an operator closing the tab must not cancel a start that is
	// about to succeed.
	actionTimeout = 15 * time.Second
	// recentDeploys is how many deploys the front page shows per app.
	recentDeploys = 10
	// historyDefault and historyMax bound /deploys and /api/deploys.
	historyDefault = 100
	historyMax     = 1000
	maxReasonLen   = 500
	maxIDLen       = 200
)

var deploysTemplate = template.Must(template.ParseFS(templateFS, "templates/base.html", "templates/deploys.html"))

type envView struct {
	App, Env, Branch, URL, Anchor, HistoryURL string
	Hosts                                     []string
	ApprovalRequired                          bool
	Current                                   *currentView
	Previous                                  string
	Running                                   *runningView
	// RollbackTo lists the releases a rollback may target, newest first.
	RollbackTo []string
}

type currentView struct {
	releaseView
	DeployedAt, DeployedBy, DeployURL string
	Upgrade                           bool
}

type runningView struct {
	RunningDeploy
	Started, For, WorkflowURL string
}

type deployView struct {
	Env, Kind, ReleaseID, Previous, Outcome, OutcomeClass, Started, Finished, Duration string
	By, ApprovedBy, Reason, Error, WorkflowID, WorkflowURL, Hosts, Maintenance, Steps  string
	Upgrade                                                                            bool
	UpgradeReasons                                                                     string
	// Transfers: per host, how the release got there and what it fetched.
	Transfers []string
}

type deploysPageView struct {
	chrome
	App, Env, Error string
	Deploys         []deployView
	Limit           int
}

// envsByApp groups environments by app, keeping their order.
func envsByApp(envs []EnvView) map[string][]EnvView {
	m := map[string][]EnvView{}
	for _, e := range envs {
		m[e.App] = append(m[e.App], e)
	}
	return m
}

// fillDeploys adds the environments, deploy buttons and recent deploys of
// one app to its view.
func (d *dashboard) fillDeploys(ctx context.Context, av *appView, envs []EnvView, metas []release.Meta) {
	byID := map[string]release.Meta{}
	for _, m := range metas {
		byID[m.ID] = m
	}
	runningOn := map[string][]string{}
	var recent []catalog.Deploy
	for _, e := range envs {
		ev := envView{App: e.App, Env: e.Env, Branch: e.Branch, URL: e.URL, Hosts: e.Hosts, ApprovalRequired: e.ApprovalRequired,
			Anchor: "env-" + e.App + "-" + e.Env, HistoryURL: historyURL(e.App, e.Env)}
		current := ""
		if st := e.State; st != nil && st.Current != "" {
			current = st.Current
			meta, ok := byID[st.Current]
			if st.Release != nil {
				meta, ok = *st.Release, true
			}
			cv := &currentView{DeployedBy: st.DeployedBy, Upgrade: st.UpgradeNeeded}
			if ok {
				cv.releaseView = d.releaseView(meta)
			}
			cv.ID = st.Current
			cv.DeployedAt = formatTime(st.DeployedAt)
			cv.DeployURL = d.runURL(st.WorkflowID, st.RunID)
			ev.Current = cv
			ev.Previous = st.Previous
			runningOn[st.Current] = append(runningOn[st.Current], e.Env)
		}
		if r := e.Running; r != nil {
			ev.Running = &runningView{RunningDeploy: *r, Started: formatTime(r.StartedAt), WorkflowURL: d.runURL(r.WorkflowID, r.RunID)}
			if !r.StartedAt.IsZero() {
				ev.Running.For = formatDuration(time.Since(r.StartedAt))
			}
		}
		for _, m := range metas {
			if m.ID != current && len(ev.RollbackTo) < maxDashboardReleases {
				ev.RollbackTo = append(ev.RollbackTo, m.ID)
			}
		}
		av.Envs = append(av.Envs, ev)

		hist, err := d.opt.Deploys.History(ctx, e.App, e.Env, recentDeploys)
		if err != nil {
			d.log.Error("dashboard: reading deploy history failed", slog.String("app", e.App), slog.String("env", e.Env), slog.String("error", err.Error()))
			av.DeploysError = "could not read the deploy history; see the server log"
			continue
		}
		recent = append(recent, hist...)
	}
	slices.SortStableFunc(recent, func(a, b catalog.Deploy) int { return b.StartedAt.Compare(a.StartedAt) })
	for i, dep := range recent {
		if i == recentDeploys {
			break
		}
		av.Deploys = append(av.Deploys, d.deployView(dep))
	}
	for i := range av.Releases {
		rv := &av.Releases[i]
		rv.RunningOn = runningOn[rv.ID]
		for _, e := range av.Envs {
			if e.Current == nil || e.Current.ID != rv.ID {
				rv.Targets = append(rv.Targets, e.Env)
			}
		}
	}
}

func (d *dashboard) deployView(dep catalog.Deploy) deployView {
	v := deployView{Env: dep.Env, Kind: cmp.Or(dep.Kind, "deploy"), ReleaseID: dep.ReleaseID, Previous: dep.PreviousRelease,
		Outcome: dep.Outcome, OutcomeClass: outcomeClass(dep.Outcome), Started: formatTime(dep.StartedAt),
		By: dep.RequestedBy, ApprovedBy: dep.ApprovedBy, Reason: dep.Reason, Error: dep.Error,
		WorkflowID: dep.WorkflowID, WorkflowURL: d.runURL(dep.WorkflowID, dep.RunID),
		Hosts: strings.Join(dep.Hosts, ", "), Upgrade: dep.UpgradeNeeded, UpgradeReasons: strings.Join(dep.UpgradeReasons, "; ")}
	if dep.FinishedAt != nil {
		v.Finished = formatTime(*dep.FinishedAt)
		v.Duration = formatDuration(dep.FinishedAt.Sub(dep.StartedAt))
	} else if !dep.StartedAt.IsZero() && dep.Outcome == catalog.OutcomeRunning {
		v.Duration = formatDuration(time.Since(dep.StartedAt)) + " so far"
	}
	if dep.MaintenanceFrom != nil && dep.MaintenanceTo != nil {
		v.Maintenance = formatDuration(dep.MaintenanceTo.Sub(*dep.MaintenanceFrom))
	}
	var steps []string
	for _, s := range dep.Steps {
		steps = append(steps, fmt.Sprintf("%s %s", s.Name, formatDuration(time.Duration(s.Seconds*float64(time.Second)))))
	}
	v.Steps = strings.Join(steps, " · ")
	for _, t := range dep.Transfers {
		v.Transfers = append(v.Transfers, transferText(t))
	}
	return v
}

// transferText is one host's transfer for people: "web1: delta from
// 12-abc, 1.2 MiB fetched (0.9% of 89 MiB), 60,012 linked, 3 written" or
// "web2: full, 89 MiB fetched (no complete release … to start from)".
func transferText(t catalog.HostTransfer) string {
	fetched := units.Bytes(t.BytesFetched) + " fetched"
	if t.ArtifactSize > 0 {
		fetched += fmt.Sprintf(" (%.1f%% of %s)", 100*float64(t.BytesFetched)/float64(t.ArtifactSize), units.Bytes(t.ArtifactSize))
	}
	switch t.Mode {
	case catalog.TransferDelta:
		s := fmt.Sprintf("%s: delta from %s, %s, %d linked, %d written, %d copied", t.Host, t.Base, fetched, t.FilesLinked, t.FilesWritten, t.FilesCopied)
		if t.Recycled != "" {
			s += ", directory tree of " + t.Recycled + " reused"
		} else if t.RecycleNote != "" {
			s += " — " + t.RecycleNote
		}
		return s
	case "":
		return t.Host + ": " + fetched
	}
	s := fmt.Sprintf("%s: %s, %s", t.Host, t.Mode, fetched)
	if t.FallbackReason != "" {
		s += " — " + t.FallbackReason
	}
	return s
}

// outcomeClass picks the colour of an outcome badge.
func outcomeClass(o string) string {
	switch o {
	case catalog.OutcomeSucceeded:
		return "ok"
	case catalog.OutcomeRunning:
		return "run"
	case catalog.OutcomeFailed, catalog.OutcomeRolledBack, catalog.OutcomeTimedOut:
		return "bad"
	}
	return "neutral"
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// formatDuration is short and stable: "850ms", "42s", "3m07s", "1h02m".
func formatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s"
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// runURL links to one run's history in the Web UI, or to the workflow (its
// latest run) when the run id is unknown.
func (d *dashboard) runURL(workflowID, runID string) string {
	if d.opt.UIBaseURL == "" || workflowID == "" {
		return ""
	}
	return tclient.WorkflowURL(d.opt.UIBaseURL, d.opt.Namespace, workflowID, runID)
}

func historyURL(app, env string) string {
	return "/deploys?" + url.Values{"app": {app}, "env": {env}}.Encode()
}

// findEnv looks an environment up among the configured ones. Every handler
// that takes app and env from a request goes through it, so names that are
// not configured (or that try to reach other store keys) never get to
// Deploys.
func (d *dashboard) findEnv(ctx context.Context, app, env string) (*EnvView, error) {
	envs, err := d.opt.Deploys.Environments(ctx)
	if err != nil {
		d.log.Error("dashboard: listing environments failed", slog.String("error", err.Error()))
		return nil, errors.New("could not read the environments; see the server log")
	}
	for i := range envs {
		if envs[i].App == app && envs[i].Env == env {
			return &envs[i], nil
		}
	}
	var names []string
	for _, e := range envs {
		names = append(names, e.App+"/"+e.Env)
	}
	return nil, &notFoundError{fmt.Sprintf("no environment %q of app %q; configured: %s", env, app, cmp.Or(strings.Join(names, ", "), "none"))}
}

// formError is a request whose fields are missing or invalid.
type formError struct{ msg string }

func (e *formError) Error() string { return e.msg }

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

func errStatus(err error) int {
	var nf *notFoundError
	if errors.As(err, &nf) {
		return http.StatusNotFound
	}
	return http.StatusServiceUnavailable
}

func parseLimit(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return historyDefault
	}
	return min(n, historyMax)
}

func (d *dashboard) serveDeploysPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	q := r.URL.Query()
	v := deploysPageView{App: q.Get("app"), Env: q.Get("env"), Limit: parseLimit(q.Get("limit"))}
	v.chrome = d.chrome(w, r, d.viewer(r), "deploys of "+v.App+"/"+v.Env)
	status := http.StatusOK
	if _, err := d.findEnv(ctx, v.App, v.Env); err != nil {
		v.Error, status = err.Error(), errStatus(err)
	} else if deps, err := d.opt.Deploys.History(ctx, v.App, v.Env, v.Limit); err != nil {
		d.log.Error("dashboard: reading deploy history failed", slog.String("app", v.App), slog.String("env", v.Env), slog.String("error", err.Error()))
		v.Error, status = "could not read the deploy history; see the server log", http.StatusServiceUnavailable
	} else {
		for _, dep := range deps {
			v.Deploys = append(v.Deploys, d.deployView(dep))
		}
	}
	d.render(w, status, deploysTemplate, v)
}

func (d *dashboard) serveEnvironmentsAPI(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	envs, err := d.opt.Deploys.Environments(ctx)
	if err != nil {
		d.log.Error("api: listing environments failed", slog.String("error", err.Error()))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "could not read the environments; see the server log"})
		return
	}
	if app := r.URL.Query().Get("app"); app != "" {
		envs = slices.DeleteFunc(envs, func(e EnvView) bool { return e.App != app })
	}
	if envs == nil {
		envs = []EnvView{}
	}
	writeJSON(w, http.StatusOK, envs)
}

func (d *dashboard) serveDeploysAPI(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), listTimeout)
	defer cancel()
	q := r.URL.Query()
	app, env := q.Get("app"), q.Get("env")
	if app == "" || env == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "add ?app=NAME&env=NAME (see /api/environments)"})
		return
	}
	if _, err := d.findEnv(ctx, app, env); err != nil {
		writeJSON(w, errStatus(err), map[string]string{"error": err.Error()})
		return
	}
	deps, err := d.opt.Deploys.History(ctx, app, env, parseLimit(q.Get("limit")))
	if err != nil {
		d.log.Error("api: reading deploy history failed", slog.String("app", app), slog.String("env", env), slog.String("error", err.Error()))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "could not read the deploy history; see the server log"})
		return
	}
	if deps == nil {
		deps = []catalog.Deploy{}
	}
	writeJSON(w, http.StatusOK, deps)
}

// actionForm is what every action form posts, and the environment it names.
type actionForm struct {
	App, Env, Reason string
	env              *EnvView
}

// readAction authorizes the request and checks the fields every action
// shares; it answers the request itself when something is wrong.
func (d *dashboard) readAction(w http.ResponseWriter, r *http.Request) (*principal, actionForm, context.Context, context.CancelFunc, bool) {
	p, ok := d.authorizeAction(w, r)
	if !ok {
		return nil, actionForm{}, nil, nil, false
	}
	f := actionForm{App: r.PostForm.Get("app"), Env: r.PostForm.Get("env"), Reason: strings.TrimSpace(r.PostForm.Get("reason"))}
	if len(f.Reason) > maxReasonLen {
		d.done(w, r, "", "", &formError{"the reason is too long; keep it under 500 characters"})
		return nil, actionForm{}, nil, nil, false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), actionTimeout)
	env, err := d.findEnv(ctx, f.App, f.Env)
	if err != nil {
		cancel()
		d.done(w, r, "", "", err)
		return nil, actionForm{}, nil, nil, false
	}
	f.env = env
	return p, f, ctx, cancel, true
}

func formID(r *http.Request, name string) (string, error) {
	v := strings.TrimSpace(r.PostForm.Get(name))
	if v == "" || len(v) > maxIDLen || strings.ContainsFunc(v, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return "", &formError{fmt.Sprintf("the form field %q is missing or invalid; reload the dashboard and try again", name)}
	}
	return v, nil
}

func (d *dashboard) handleDeploy(w http.ResponseWriter, r *http.Request) {
	p, f, ctx, cancel, ok := d.readAction(w, r)
	if !ok {
		return
	}
	defer cancel()
	id, err := formID(r, "release")
	if err != nil {
		d.done(w, r, "", "", err)
		return
	}
	wf, err := d.opt.Deploys.StartDeploy(ctx, DeployRequest{App: f.App, Env: f.Env, ReleaseID: id, By: p.User, Reason: f.Reason})
	d.audit(r, p, "deploy", f, slog.String("release", id), slog.String("workflow_id", wf), errAttr(err))
	d.done(w, r, fmt.Sprintf("Deploy of %s to %s/%s started", id, f.App, f.Env), wf, err)
}

func (d *dashboard) handleApprove(w http.ResponseWriter, r *http.Request) {
	d.handleApproval(w, r, true)
}
func (d *dashboard) handleReject(w http.ResponseWriter, r *http.Request) {
	d.handleApproval(w, r, false)
}

func (d *dashboard) handleApproval(w http.ResponseWriter, r *http.Request, approve bool) {
	p, f, ctx, cancel, ok := d.readAction(w, r)
	if !ok {
		return
	}
	defer cancel()
	wf, err := formID(r, "workflow_id")
	if err != nil {
		d.done(w, r, "", "", err)
		return
	}
	if approve {
		if msg := d.selfApproval(p, f.env); msg != "" {
			d.audit(r, p, "approve", f, slog.String("workflow_id", wf), slog.String("error", msg))
			d.refuse(w, r, http.StatusForbidden, msg)
			return
		}
	}
	err = d.opt.Deploys.Approve(ctx, ApprovalRequest{App: f.App, Env: f.Env, WorkflowID: wf, By: p.User, Reason: f.Reason, Approve: approve})
	verb, msg := "reject", "Rejected the deploy to %s/%s"
	if approve {
		verb, msg = "approve", "Approved the deploy to %s/%s"
	}
	d.audit(r, p, verb, f, slog.String("workflow_id", wf), errAttr(err))
	d.done(w, r, fmt.Sprintf(msg, f.App, f.Env), wf, err)
}

// errSelfApproval refuses an approval by the deploy's requester; %q are the
// requester and the environment.
const errSelfApproval = "refused: %q requested this deploy and cannot approve it too (server.auth.allow_self_approval is off); " +
	"someone else must approve %s, logged in as a different identity. Everyone holding the token counts as one identity, " +
	"whatever name they typed; a second person logs in as server.auth.basic_user, or approves with `mageflow approve`"

// selfApproval says why p may not approve the deploy running on env, or ""
// when it may. The requester's identity is read from the deploy's
// RequestedBy: the basic user's name is that user (token logins may not
// take it), any other name is the token's. An environment that needs no
// approval, or no running deploy, is left to the deploy side to refuse.
func (d *dashboard) selfApproval(p *principal, env *EnvView) string {
	if d.opt.Auth.AllowSelfApproval || env == nil || !env.ApprovalRequired || env.Running == nil {
		return ""
	}
	requester := identityToken
	if by := env.Running.RequestedBy; d.opt.Auth.BasicUser != "" && by == d.opt.Auth.BasicUser {
		requester = userIdentity(by)
	}
	if requester != p.Identity {
		return ""
	}
	return fmt.Sprintf(errSelfApproval, env.Running.RequestedBy, env.App+"/"+env.Env)
}

func (d *dashboard) handleRollback(w http.ResponseWriter, r *http.Request) {
	p, f, ctx, cancel, ok := d.readAction(w, r)
	if !ok {
		return
	}
	defer cancel()
	to := strings.TrimSpace(r.PostForm.Get("to"))
	if len(to) > maxIDLen {
		d.done(w, r, "", "", &formError{"the rollback target is not a release id"})
		return
	}
	force := checked(r.PostForm.Get("force"))
	wf, err := d.opt.Deploys.Rollback(ctx, RollbackRequest{App: f.App, Env: f.Env, To: to, By: p.User, Reason: f.Reason, Force: force})
	d.audit(r, p, "rollback", f, slog.String("to", to), slog.Bool("force", force), slog.String("workflow_id", wf), errAttr(err))
	target := "the previous release"
	if to != "" {
		target = to
	}
	d.done(w, r, fmt.Sprintf("Rollback of %s/%s to %s started", f.App, f.Env, target), wf, err)
}

func checked(v string) bool {
	switch strings.ToLower(v) {
	case "on", "1", "true", "yes":
		return true
	}
	return false
}

func errAttr(err error) slog.Attr {
	if err == nil {
		return slog.Attr{}
	}
	return slog.String("error", err.Error())
}

// audit logs every action with who asked for it: the deploy records say
// what happened, the log says who clicked what, refused or not.
func (d *dashboard) audit(r *http.Request, p *principal, action string, f actionForm, attrs ...slog.Attr) {
	level := slog.LevelInfo
	for _, a := range attrs {
		if a.Key == "error" {
			level = slog.LevelWarn
		}
	}
	attrs = append([]slog.Attr{slog.String("action", action), slog.String("user", p.User), slog.String("auth", p.Method),
		slog.String("app", f.App), slog.String("env", f.Env), slog.String("reason", f.Reason), slog.String("remote", r.RemoteAddr)}, attrs...)
	d.log.LogAttrs(r.Context(), level, "dashboard action", attrs...)
}

// flash is the one-time message shown after an action.
type flash struct {
	Kind        string `json:"k"` // ok | error
	Text        string `json:"t"`
	WorkflowID  string `json:"w,omitempty"`
	WorkflowURL string `json:"-"`
}

// done finishes an action: JSON for scripts, otherwise a flash message and
// a 303 back to the dashboard, so a reload does not post again.
func (d *dashboard) done(w http.ResponseWriter, r *http.Request, okText, workflowID string, err error) {
	f := flash{Kind: "ok", Text: okText, WorkflowID: workflowID}
	if err != nil {
		f = flash{Kind: "error", Text: err.Error()}
	}
	if wantsJSON(r) {
		if err != nil {
			status := http.StatusConflict // refused by the deploy side
			var nf *notFoundError
			var fe *formError
			switch {
			case errors.As(err, &nf):
				status = http.StatusNotFound
			case errors.As(err, &fe):
				status = http.StatusBadRequest
			}
			writeJSON(w, status, map[string]string{"error": f.Text})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"message": f.Text, "workflow_id": workflowID})
		return
	}
	if k, kerr := d.auth.keys(); kerr == nil {
		setCookie(w, r, flashCookie, seal(k.flash, f), flashTTL)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// takeFlash reads and clears the flash cookie. A cookie that does not verify
// (forged, or signed with a rotated secret) is dropped silently.
func (d *dashboard) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	setCookie(w, r, flashCookie, "", 0)
	k, err := d.auth.keys()
	if err != nil {
		return nil
	}
	var f flash
	if !openSigned(k.flash, c.Value, &f) || f.Text == "" {
		return nil
	}
	f.WorkflowURL = d.runURL(f.WorkflowID, "")
	return &f
}
