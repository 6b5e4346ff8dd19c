package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
)

// DeployWorkflowID is one id per app and environment: the running deploy
// (or rollback) is the environment's lock. A crash cannot leave it stale —
// the lock is the workflow, and it finishes or is terminated in Temporal.
func DeployWorkflowID(app, env string) string { return "deploy/" + app + "/" + env }

// Update names of a deploy waiting for approval.
const (
	UpdateApprove = "approve"
	UpdateReject  = "reject"
	QueryStatus   = "status"
)

// DeployInput starts ZeroDowntimeDeploy (a deploy or a rollback).
type DeployInput = activities.DeployRequest

// Approval is the argument of the approve and reject updates.
type Approval struct {
	By     string
	Reason string
}

// DeployStatus is what the status query returns.
type DeployStatus struct {
	Phase           string
	ReleaseID       string
	Previous        string
	Hosts           []string
	WaitingApproval bool
	UpgradeNeeded   bool
	Maintenance     bool
	RequestedBy     string
	StartedAt       time.Time
}

var (
	hostActs   *agent.HostActivities
	deployActs *activities.DeployActivities
)

// ZeroDowntimeDeploy puts a release on every host of an environment and
// switches them together, holding maintenance only while Magento's database
// really needs upgrading, and rolls back by itself when the new release is
// unhealthy (unless the database was upgraded: then it keeps maintenance and
// fails loudly rather than serve old code on a new schema).
func ZeroDowntimeDeploy(ctx workflow.Context, in DeployInput) (*catalog.Deploy, error) {
	if in.Kind == "" {
		in.Kind = "deploy"
	}
	d := &deployRun{in: in}
	d.status.Phase = "starting"
	d.status.RequestedBy = in.RequestedBy
	d.status.StartedAt = workflow.Now(ctx)
	d.logger = log.With(workflow.GetLogger(ctx), "app", in.App, "env", in.Env)
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (DeployStatus, error) { return d.status, nil }); err != nil {
		return nil, err
	}
	return d.run(ctx)
}

type deployRun struct {
	in     DeployInput
	plan   activities.DeployPlan
	status DeployStatus
	rec    catalog.Deploy
	logger log.Logger
	// control runs the short control steps (local from deployLocalChange).
	control controlStep

	decided  bool
	approved bool
	decision Approval

	prepared   []string // hosts where this deploy put the new release (for cleanup)
	switched   bool
	upgradeRan bool
}

func (d *deployRun) phase(ctx workflow.Context, phase, details string) {
	d.status.Phase = phase
	workflow.SetCurrentDetails(ctx, details)
}

func (d *deployRun) step(name string, from time.Time, ctx workflow.Context) {
	d.rec.Steps = append(d.rec.Steps, release.StepDuration{Name: name, Seconds: workflow.Now(ctx).Sub(from).Seconds()})
}

func controlCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// Short: a killed worker's step is retried on another within 20 s.
		StartToCloseTimeout: 20 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
			NonRetryableErrorTypes: []string{activities.ErrConfig, activities.ErrInvalidInput, agent.ErrRollbackRefused},
		},
	})
}

// hostCtx routes an activity to a host's agent. Short steps get a short
// start-to-close so a killed agent is noticed quickly and the step retried
// when it is back; long ones heartbeat.
func hostCtx(ctx workflow.Context, host string, timeout, heartbeat time.Duration) workflow.Context {
	// Agents heartbeat every activity (agentapp.WorkerOptions), so a
	// killed agent's step is retried within 15 s, not after its timeout.
	if heartbeat == 0 || heartbeat > 15*time.Second {
		heartbeat = 15 * time.Second
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           agent.HostTaskQueue(host),
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 20 * time.Second, MaximumAttempts: 8,
			NonRetryableErrorTypes: []string{
				activities.ErrConfig, activities.ErrInvalidInput, agent.ErrDiskFull, agent.ErrChecksum,
				agent.ErrUnsafeReload, agent.ErrUpgradeFailed,
			},
		},
	})
}

// onHosts runs one activity per host at once and waits for all, so a step
// takes as long as the slowest host, not the sum. each (nil: just wait)
// reads one host's result.
func onHosts(ctx workflow.Context, hosts []string, start func(host string) workflow.Future, each func(host string, f workflow.Future) error) error {
	futures := make([]workflow.Future, len(hosts))
	for i, h := range hosts {
		futures[i] = start(h)
	}
	if each == nil {
		each = func(_ string, f workflow.Future) error { return f.Get(ctx, nil) }
	}
	var errs []string
	for i, h := range hosts {
		if err := each(h, futures[i]); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", h, err))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// fileHosts are the hosts whose file system a step changes: all of them, or
// only the first when they share storage (one prepare, one switch).
func (d *deployRun) fileHosts() []string {
	if d.plan.SharedStorage {
		return d.plan.Hosts[:1]
	}
	return d.plan.Hosts
}

func (d *deployRun) target(host string) agent.HostTarget {
	return agent.HostTarget{Host: host, App: d.in.App, Env: d.in.Env}
}

func (d *deployRun) record(ctx workflow.Context) {
	rec := d.rec
	_ = d.control.run(controlCtx(ctx), deployActs.RecordDeploy, rec).Get(ctx, nil)
}

func (d *deployRun) run(ctx workflow.Context) (*catalog.Deploy, error) {
	in := d.in
	info := workflow.GetInfo(ctx)
	d.rec = catalog.Deploy{App: in.App, Env: in.Env, Kind: in.Kind, RequestedBy: in.RequestedBy, Reason: in.Reason,
		StartedAt: workflow.Now(ctx).UTC(), Outcome: catalog.OutcomeRunning, WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID}
	d.control = localSteps(ctx, deployLocalChange)
	if err := d.control.upsertKeywords(ctx, keyword{searchattr.App, in.App}, keyword{searchattr.Environment, in.Env}); err != nil {
		return nil, err
	}

	d.phase(ctx, "plan", fmt.Sprintf("**Planning** %s of %s to %s", in.Kind, in.App, in.Env))
	if err := d.control.run(controlCtx(ctx), deployActs.PlanDeploy, in).Get(ctx, &d.plan); err != nil {
		return nil, err
	}
	p := &d.plan
	rel := p.Release
	d.rec.ReleaseID, d.rec.PreviousRelease, d.rec.Release, d.rec.Hosts = rel.ID, p.Previous, &rel, p.Hosts
	d.status.ReleaseID, d.status.Previous, d.status.Hosts = rel.ID, p.Previous, p.Hosts
	if err := workflow.UpsertTypedSearchAttributes(ctx, searchattr.ReleaseID.ValueSet(rel.ID), searchattr.CommitID.ValueSet(rel.Commit),
		searchattr.Branch.ValueSet(rel.Branch), searchattr.BuildNumber.ValueSet(int64(rel.BuildNumber))); err != nil {
		return nil, err
	}
	// An automatic deploy of a release that is not newer than what the
	// environment runs changes nothing: PlanDeploy said why.
	if p.Skip != "" && workflow.GetVersion(ctx, "auto-deploy-never-backwards", workflow.DefaultVersion, 1) == 1 {
		return d.skip(ctx)
	}
	d.record(ctx)

	outcome, err := d.deploy(ctx)
	// The final record is written even when the deploy was cancelled.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled) {
		outcome = catalog.OutcomeCanceled
		d.cleanupAfterCancel(dctx)
	}
	now := workflow.Now(dctx).UTC()
	d.rec.FinishedAt = &now
	d.rec.Outcome = outcome
	if err != nil {
		d.rec.Error = err.Error()
	}
	d.record(dctx)
	if err != nil {
		d.phase(dctx, outcome, fmt.Sprintf("**%s**: %v", strings.ToUpper(outcome), err))
		return &d.rec, err
	}
	d.phase(dctx, "done", fmt.Sprintf("**%s** now runs release `%s` on %d host(s)", in.Env, rel.ID, len(p.Hosts)))
	return &d.rec, nil
}

// skip completes an automatic deploy without touching a host, recording
// the reason with the deploy.
func (d *deployRun) skip(ctx workflow.Context) (*catalog.Deploy, error) {
	now := workflow.Now(ctx).UTC()
	d.rec.FinishedAt = &now
	d.rec.Outcome = agent.DeployOutcomeSkipped
	d.rec.Error = d.plan.Skip
	d.record(ctx)
	d.logger.Warn("automatic deploy skipped", "release", d.plan.Release.ID, "reason", d.plan.Skip)
	d.phase(ctx, agent.DeployOutcomeSkipped, "**Skipped**, nothing was changed: "+d.plan.Skip)
	return &d.rec, nil
}

// cleanupAfterCancel leaves no half release: before the switch, prepared
// releases are removed and maintenance is lifted if no upgrade ran; after
// the switch the environment simply runs the new release.
func (d *deployRun) cleanupAfterCancel(ctx workflow.Context) {
	if !d.switched {
		for _, h := range d.prepared {
			_ = workflow.ExecuteActivity(hostCtx(ctx, h, time.Minute, 0), hostActs.Discard, agent.ReleaseRef{HostTarget: d.target(h), ReleaseID: d.plan.Release.ID}).Get(ctx, nil)
		}
	}
	if d.status.Maintenance && d.rec.MaintenanceFrom != nil && !d.upgradeRan {
		for _, h := range d.fileHosts() {
			_ = workflow.ExecuteActivity(hostCtx(ctx, h, time.Minute, 0), hostActs.SetMaintenance, agent.MaintenanceInput{HostTarget: d.target(h), On: false, Reason: "deploy cancelled before the upgrade"}).Get(ctx, nil)
		}
		d.status.Maintenance = false
	}
}

func (d *deployRun) deploy(ctx workflow.Context) (string, error) {
	p := &d.plan
	rel := p.Release
	hosts := p.Hosts

	// Every host's agent must be there before anything changes.
	d.phase(ctx, "agents", fmt.Sprintf("**Checking agents** of %v", hosts))
	agentsCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, BackoffCoefficient: 1.5, MaximumInterval: 10 * time.Second, MaximumAttempts: 6},
	})
	if err := d.control.run(agentsCtx, deployActs.CheckAgents, activities.CheckAgentsInput{Hosts: hosts}).Get(ctx, nil); err != nil {
		return catalog.OutcomeFailed, err
	}

	if p.ApprovalRequired {
		outcome, err := d.awaitApproval(ctx)
		if err != nil {
			return outcome, err
		}
	}

	// Prepare everywhere before anything switches.
	t := workflow.Now(ctx)
	d.phase(ctx, "prepare", fmt.Sprintf("**Preparing** release `%s` (build #%d) on %d host(s)", rel.ID, rel.BuildNumber, len(hosts)))
	err := onHosts(ctx, d.fileHosts(), func(h string) workflow.Future {
		return workflow.ExecuteActivity(hostCtx(ctx, h, 30*time.Minute, time.Minute), hostActs.Prepare, agent.PrepareInput{
			HostTarget: d.target(h), ReleaseID: rel.ID, ArtifactURI: rel.Artifact.URI, SHA256: rel.Artifact.SHA256,
			Size: rel.Artifact.Size, UncompressedSize: rel.Artifact.UncompressedSize, ContentVersion: fmt.Sprintf("%d", rel.BuildNumber),
			IndexSHA256: rel.Artifact.IndexSHA256,
		})
	}, func(h string, f workflow.Future) error {
		var res agent.PrepareResult
		if err := f.Get(ctx, &res); err != nil {
			return err
		}
		// Only releases this deploy put there are cleaned up on failure or
		// cancel: one already on the host (a rollback target) stays.
		if !res.AlreadyPrepared {
			d.prepared = append(d.prepared, h)
			d.rec.Transfers = append(d.rec.Transfers, catalog.HostTransfer{Host: h, Transfer: res.Transfer})
		}
		return nil
	})
	d.step("prepare", t, ctx)
	if err != nil {
		// Leave no half-deployed release behind on the hosts that made it.
		for _, h := range d.prepared {
			_ = workflow.ExecuteActivity(hostCtx(ctx, h, time.Minute, 0), hostActs.Discard, agent.ReleaseRef{HostTarget: d.target(h), ReleaseID: rel.ID}).Get(ctx, nil)
		}
		return catalog.OutcomeFailed, fmt.Errorf("prepare failed, nothing was switched: %w", err)
	}

	// A rollback never upgrades: PlanDeploy already refused one onto code
	// older than the last database upgrade (unless forced).
	if d.in.Kind == "rollback" {
		return d.switchWithoutUpgrade(ctx)
	}
	// Magento decides whether the database needs upgrading.
	t = workflow.Now(ctx)
	var dec agent.UpgradeDecision
	if err := workflow.ExecuteActivity(hostCtx(ctx, hosts[0], 5*time.Minute, 0), hostActs.UpgradeStatus, agent.ReleaseRef{HostTarget: d.target(hosts[0]), ReleaseID: rel.ID}).Get(ctx, &dec); err != nil {
		return catalog.OutcomeFailed, fmt.Errorf("upgrade check failed, nothing was switched: %w", err)
	}
	d.step("upgrade-check", t, ctx)
	d.rec.UpgradeNeeded, d.rec.UpgradeReasons = dec.Needed, dec.Reasons
	d.status.UpgradeNeeded = dec.Needed
	d.record(ctx)

	if !dec.Needed {
		return d.switchWithoutUpgrade(ctx)
	}
	return d.switchWithUpgrade(ctx)
}

func (d *deployRun) awaitApproval(ctx workflow.Context) (string, error) {
	d.status.WaitingApproval = true
	d.phase(ctx, "approval", fmt.Sprintf("**Waiting for approval** of release `%s` for %s: `mageflow approve --app %s --env %s`", d.plan.Release.ID, d.in.Env, d.in.App, d.in.Env))
	validate := func(a Approval) error {
		if strings.TrimSpace(a.By) == "" {
			return errors.New("say who decides (--by)")
		}
		if d.decided {
			return errors.New("this deploy was already decided")
		}
		return nil
	}
	handler := func(approve bool) func(workflow.Context, Approval) (string, error) {
		return func(ctx workflow.Context, a Approval) (string, error) {
			d.decided, d.approved, d.decision = true, approve, a
			if approve {
				return "approved", nil
			}
			return "rejected", nil
		}
	}
	for _, u := range []struct {
		name    string
		approve bool
	}{{UpdateApprove, true}, {UpdateReject, false}} {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, handler(u.approve), workflow.UpdateHandlerOptions{Validator: validate}); err != nil {
			return catalog.OutcomeFailed, err
		}
	}
	ok, err := workflow.AwaitWithTimeout(ctx, d.plan.ApprovalTimeout, func() bool { return d.decided })
	d.status.WaitingApproval = false
	if err != nil {
		return catalog.OutcomeCanceled, err
	}
	if !ok {
		return catalog.OutcomeTimedOut, temporal.NewNonRetryableApplicationError(fmt.Sprintf("nobody approved within %s; nothing was changed", d.plan.ApprovalTimeout), "ApprovalTimeout", nil)
	}
	if !d.approved {
		return catalog.OutcomeRejected, temporal.NewNonRetryableApplicationError(fmt.Sprintf("rejected by %s: %s", d.decision.By, d.decision.Reason), "Rejected", nil)
	}
	d.rec.ApprovedBy = d.decision.By
	return "", nil
}

// switchAll points current at id on every host at once; the futures are all
// issued before any is awaited so the switches land as close together as the
// agents allow.
func (d *deployRun) switchAll(ctx workflow.Context, id string) error {
	return onHosts(ctx, d.fileHosts(), func(h string) workflow.Future {
		return workflow.ExecuteActivity(hostCtx(ctx, h, 30*time.Second, 0), hostActs.Switch, agent.ReleaseRef{HostTarget: d.target(h), ReleaseID: id})
	}, nil)
}

// settle reloads PHP, warms and health-checks every host (and the
// environment URL), returning the failures.
func (d *deployRun) settle(ctx workflow.Context, id string, bypass bool) ([]string, error) {
	p := &d.plan
	t := workflow.Now(ctx)
	if err := onHosts(ctx, p.Hosts, func(h string) workflow.Future {
		return workflow.ExecuteActivity(hostCtx(ctx, h, 2*time.Minute, 0), hostActs.ReloadPHP, d.target(h))
	}, nil); err != nil {
		return nil, fmt.Errorf("reload PHP: %w", err)
	}
	d.step("reload-php", t, ctx)
	if len(p.WarmPaths) > 0 {
		t = workflow.Now(ctx)
		// Warm-up is best effort: two attempts, then health decides.
		warmCtx := func(h string) workflow.Context {
			c := hostCtx(ctx, h, 5*time.Minute, 0)
			o := workflow.GetActivityOptions(c)
			o.RetryPolicy.MaximumAttempts = 2
			return workflow.WithActivityOptions(c, o)
		}
		if err := onHosts(ctx, p.Hosts, func(h string) workflow.Future {
			return workflow.ExecuteActivity(warmCtx(h), hostActs.Warm, agent.WarmInput{HostTarget: d.target(h), Paths: p.WarmPaths, BypassMaintain: bypass})
		}, nil); err != nil {
			d.logger.Warn("warm-up failed", "error", err)
		}
		d.step("warm", t, ctx)
	}
	t = workflow.Now(ctx)
	var failures []string
	collect := func(h string, f workflow.Future) error {
		var hr agent.HealthResult
		if err := f.Get(ctx, &hr); err != nil {
			return err
		}
		for _, fl := range hr.Failures {
			failures = append(failures, h+": "+fl)
		}
		return nil
	}
	if err := onHosts(ctx, p.Hosts, func(h string) workflow.Future {
		return workflow.ExecuteActivity(hostCtx(ctx, h, 2*time.Minute, 0), hostActs.Health, agent.HealthInput{
			HostTarget: d.target(h), Paths: p.HealthPaths, ExpectRelease: id, BypassMaintain: bypass})
	}, collect); err != nil {
		return nil, fmt.Errorf("health check: %w", err)
	}
	if p.EnvURL != "" {
		h := p.Hosts[0]
		f := workflow.ExecuteActivity(hostCtx(ctx, h, 2*time.Minute, 0), hostActs.Health, agent.HealthInput{
			HostTarget: d.target(h), BaseURL: p.EnvURL, Paths: p.HealthPaths, ExpectRelease: id, BypassMaintain: bypass})
		if err := collect("environment "+p.EnvURL, f); err != nil {
			return nil, fmt.Errorf("environment health check: %w", err)
		}
	}
	d.step("health", t, ctx)
	return failures, nil
}

func (d *deployRun) switchWithoutUpgrade(ctx workflow.Context) (string, error) {
	p := &d.plan
	rel := p.Release
	d.phase(ctx, "switch", fmt.Sprintf("**Switching** %d host(s) to `%s` (no database upgrade needed: no maintenance)", len(p.Hosts), rel.ID))
	t := workflow.Now(ctx)
	err := d.switchAll(ctx, rel.ID)
	d.switched = true
	d.step("switch", t, ctx)
	if err != nil {
		return d.rollback(ctx, fmt.Errorf("switch: %w", err))
	}
	failures, err := d.settle(ctx, rel.ID, false)
	if err != nil {
		return d.rollback(ctx, err)
	}
	if len(failures) > 0 {
		return d.rollback(ctx, fmt.Errorf("release %s is unhealthy: %s", rel.ID, strings.Join(failures, "; ")))
	}
	return d.finish(ctx, false)
}

// rollback switches every host back to the previous release after an
// unhealthy switch without upgrade, checks it, and fails the deploy with the
// reason.
func (d *deployRun) rollback(ctx workflow.Context, cause error) (string, error) {
	p := &d.plan
	if p.Previous == "" {
		return catalog.OutcomeFailed, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%v; there is no earlier release to roll back to", cause), agent.ErrUnhealthy, nil)
	}
	d.phase(ctx, "rollback", fmt.Sprintf("**Rolling back** to `%s`: %v", p.Previous, cause))
	t := workflow.Now(ctx)
	if err := d.switchAll(ctx, p.Previous); err != nil {
		return catalog.OutcomeFailed, fmt.Errorf("%v; rollback to %s failed too: %w", cause, p.Previous, err)
	}
	failures, err := d.settle(ctx, p.Previous, false)
	d.step("rollback", t, ctx)
	if err != nil || len(failures) > 0 {
		return catalog.OutcomeFailed, fmt.Errorf("%v; rolled back to %s but it is not healthy either: %v %v", cause, p.Previous, err, failures)
	}
	d.rec.ReleaseID = p.Previous
	return catalog.OutcomeRolledBack, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%v; rolled back to %s, which is healthy", cause, p.Previous), agent.ErrUnhealthy, nil)
}

func (d *deployRun) maintenance(ctx workflow.Context, on bool, reason string) error {
	// Entering: the window starts when the flags are requested (some hosts
	// may apply them before others answer). Leaving: it ends once all are
	// removed.
	if on {
		from := workflow.Now(ctx).UTC()
		d.rec.MaintenanceFrom = &from
		d.status.Maintenance = true
	}
	err := onHosts(ctx, d.fileHosts(), func(h string) workflow.Future {
		return workflow.ExecuteActivity(hostCtx(ctx, h, time.Minute, 0), hostActs.SetMaintenance, agent.MaintenanceInput{HostTarget: d.target(h), On: on, Reason: reason})
	}, nil)
	if err == nil && !on {
		to := workflow.Now(ctx).UTC()
		d.rec.MaintenanceTo = &to
		d.status.Maintenance = false
	}
	return err
}

// switchWithUpgrade holds maintenance across upgrade → switch → flush →
// health, so old code never serves the upgraded database. Anything failing
// inside the window leaves maintenance on and says so.
func (d *deployRun) switchWithUpgrade(ctx workflow.Context) (string, error) {
	p := &d.plan
	rel := p.Release
	hosts := p.Hosts
	loud := func(what string, err error) (string, error) {
		msg := fmt.Sprintf("%s failed inside the maintenance window: %v. MAINTENANCE IS STILL ON for %s/%s — the database may be upgraded, so the old code must not serve it. Fix and deploy again, or lift it by hand once you are sure.", what, err, d.in.App, d.in.Env)
		d.logger.Error(msg)
		return catalog.OutcomeFailed, temporal.NewNonRetryableApplicationError(msg, agent.ErrUpgradeFailed, nil)
	}
	d.phase(ctx, "maintenance", fmt.Sprintf("**Maintenance on** for %s: %s", d.in.Env, strings.Join(d.rec.UpgradeReasons, "; ")))
	t := workflow.Now(ctx)
	if err := d.maintenance(ctx, true, "upgrading to "+rel.ID); err != nil {
		return catalog.OutcomeFailed, fmt.Errorf("could not enter maintenance, nothing was upgraded: %w", err)
	}
	if err := onHosts(ctx, hosts, func(h string) workflow.Future {
		return workflow.ExecuteActivity(hostCtx(ctx, h, 5*time.Minute, 0), hostActs.StopJobs, d.target(h))
	}, nil); err != nil {
		return loud("stopping cron and consumers", err)
	}
	d.phase(ctx, "upgrade", fmt.Sprintf("**Upgrading** the database for `%s` (maintenance on)", rel.ID))
	d.upgradeRan = true
	if err := workflow.ExecuteActivity(hostCtx(ctx, hosts[0], 2*time.Hour, time.Minute), hostActs.RunUpgrade, agent.ReleaseRef{HostTarget: d.target(hosts[0]), ReleaseID: rel.ID}).Get(ctx, nil); err != nil {
		return loud("setup:upgrade", err)
	}
	d.step("upgrade", t, ctx)
	t = workflow.Now(ctx)
	err := d.switchAll(ctx, rel.ID)
	d.switched = true
	d.step("switch", t, ctx)
	if err != nil {
		return loud("switch", err)
	}
	if err := workflow.ExecuteActivity(hostCtx(ctx, hosts[0], 5*time.Minute, 0), hostActs.FlushCache, agent.ReleaseRef{HostTarget: d.target(hosts[0]), ReleaseID: rel.ID}).Get(ctx, nil); err != nil {
		return loud("cache:flush", err)
	}
	failures, err := d.settle(ctx, rel.ID, true)
	if err != nil {
		return loud("settling PHP", err)
	}
	if len(failures) > 0 {
		return loud("health check", errors.New(strings.Join(failures, "; ")))
	}
	if err := onHosts(ctx, hosts, func(h string) workflow.Future {
		return workflow.ExecuteActivity(hostCtx(ctx, h, 5*time.Minute, 0), hostActs.StartJobs, d.target(h))
	}, nil); err != nil {
		return loud("starting cron and consumers", err)
	}
	if err := d.maintenance(ctx, false, "upgraded to "+rel.ID); err != nil {
		return loud("leaving maintenance", err)
	}
	d.phase(ctx, "maintenance-off", "**Maintenance off**")
	return d.finish(ctx, true)
}

// finish prunes old releases and records what the environment runs now.
func (d *deployRun) finish(ctx workflow.Context, upgraded bool) (string, error) {
	p := &d.plan
	rel := p.Release
	protect := []string{rel.ID}
	if p.Previous != "" {
		protect = append(protect, p.Previous)
	}
	t := workflow.Now(ctx)
	if err := onHosts(ctx, d.fileHosts(), func(h string) workflow.Future {
		return workflow.ExecuteActivity(hostCtx(ctx, h, 5*time.Minute, 0), hostActs.Prune, agent.PruneInput{HostTarget: d.target(h), Keep: p.KeepReleases, Protect: protect})
	}, nil); err != nil {
		d.logger.Warn("pruning old releases failed; the deploy itself succeeded", "error", err)
	}
	d.step("prune", t, ctx)
	info := workflow.GetInfo(ctx)
	st := catalog.EnvState{App: d.in.App, Env: d.in.Env, Current: rel.ID, Previous: p.Previous, Release: &rel,
		DeployedAt: workflow.Now(ctx).UTC(), DeployedBy: d.in.RequestedBy, UpgradeNeeded: upgraded,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID, UpgradedAtBuild: p.UpgradedAtBuild}
	if p.Previous == rel.ID {
		st.Previous = ""
	}
	if upgraded && rel.BuildNumber > st.UpgradedAtBuild {
		st.UpgradedAtBuild = rel.BuildNumber
	}
	if err := d.control.run(controlCtx(ctx), deployActs.RecordEnv, st).Get(ctx, nil); err != nil {
		return catalog.OutcomeFailed, fmt.Errorf("the environment runs %s but recording it failed: %w", rel.ID, err)
	}
	return catalog.OutcomeSucceeded, nil
}
