package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
)

// ReadinessWorkflowID derives the id from the instance and the lifecycle
// token, so a duplicate event (EventBridge redelivery, SQS and HTTP both
// delivering) joins the run already handling it.
func ReadinessWorkflowID(a fleet.LifecycleAction) string { return "readiness/" + a.Key() }

// ReadinessInput starts ScaleOutReadiness for one lifecycle action.
type ReadinessInput struct {
	// Group is the groups: entry (not the provider's name).
	Group  string
	Action fleet.LifecycleAction
	// AgentWait bounds the wait for the instance's agent (default 5 min).
	AgentWait time.Duration
	// DrainTimeout bounds the drain on scale-in (default 60 s).
	DrainTimeout time.Duration
	// ReadyTimeout bounds the whole launch check (default 45 min): an
	// instance whose agent stops answering mid-check would otherwise hold
	// its lifecycle action, kept alive by the heartbeat, indefinitely.
	ReadyTimeout time.Duration
}

// ReadinessResult says what happened to the instance.
type ReadinessResult struct {
	InstanceID string
	Result     fleet.Result
	ReleaseID  string
	InNginx    bool
	Reason     string
}

var fleetActs *activities.FleetActivities
var lbActs *agent.LBActivities

// ScaleOutReadiness proves a launching instance is ready — agent up, the
// environment's release on it, PHP answering, health URLs serving that
// release, OPcache warmed — before it joins the nginx upstream, and only
// then lets the autoscaling group put it in service. On scale-in it takes
// the instance out of nginx and drains it first. On the warm-pool entry
// path it prepares the instance but never adds it to nginx.
func ScaleOutReadiness(ctx workflow.Context, in ReadinessInput) (*ReadinessResult, error) {
	a := in.Action
	res := &ReadinessResult{InstanceID: a.InstanceID}
	if err := a.Validate(); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrInvalidInput, nil)
	}
	ctl := controlCtx(ctx)
	var plan activities.GroupPlan
	if err := workflow.ExecuteActivity(ctl, fleetActs.PlanGroup, in.Group).Get(ctx, &plan); err != nil {
		return nil, err
	}
	sas := []temporal.SearchAttributeUpdate{}
	if plan.App != "" {
		sas = append(sas, searchattr.App.ValueSet(plan.App), searchattr.Environment.ValueSet(plan.Env))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, sas...); err != nil {
		return nil, err
	}
	complete := func(r fleet.Result, reason string) error {
		res.Result, res.Reason = r, reason
		return workflow.ExecuteActivity(ctl, fleetActs.CompleteLifecycle, activities.CompleteInput{Action: a, Result: r}).Get(ctx, nil)
	}

	if a.LeavesService() {
		return res, scaleIn(ctx, in, plan, res, complete)
	}
	if a.Transition == fleet.TransitionTerminating {
		// A warm-pool instance being terminated (Warmed:Terminating:Wait)
		// never served: nothing to take out of nginx, nothing to drain.
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Warm-pool instance %s** is being terminated: it never served, continuing", a.InstanceID))
		return res, complete(fleet.Continue, "warm-pool instance: nothing to drain")
	}

	// Keep the lifecycle action alive while the checks run.
	hbCtx, stopHB := workflow.WithCancel(ctx)
	workflow.Go(hbCtx, func(ctx workflow.Context) {
		for {
			if workflow.Sleep(ctx, time.Minute) != nil {
				return
			}
			_ = workflow.ExecuteActivity(controlCtx(ctx), fleetActs.LifecycleHeartbeat, a).Get(ctx, nil)
		}
	})
	defer stopHB()

	var err error
	if workflow.GetVersion(ctx, "readiness-deadline", workflow.DefaultVersion, 1) == 1 {
		err = readyWithin(ctx, in, plan, res)
	} else {
		err = ready(ctx, in, plan, res)
	}
	if err != nil {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Instance %s is not ready**: %v — abandoning it, it never receives traffic", a.InstanceID, err))
		if res.InNginx {
			_ = workflow.ExecuteActivity(hostCtx(ctx, plan.Balancer, time.Minute, 0), lbActs.SetMembers,
				agent.SetMembersInput{Group: in.Group, Remove: []string{a.InstanceID}}).Get(ctx, nil)
			res.InNginx = false
		}
		if cerr := complete(fleet.Abandon, err.Error()); cerr != nil {
			return res, fmt.Errorf("%v; and abandoning failed: %w", err, cerr)
		}
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("instance %s abandoned: %v", a.InstanceID, err), "NotReady", nil)
	}
	if err := complete(fleet.Continue, ""); err != nil {
		return res, err
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Instance %s is in service** with release `%s` (in nginx: %v)", a.InstanceID, res.ReleaseID, res.InNginx))
	return res, nil
}

// readyWithin runs ready under the input's ReadyTimeout: when it expires
// the checks are cancelled and the instance is abandoned like any other
// that is not ready.
func readyWithin(ctx workflow.Context, in ReadinessInput, plan activities.GroupPlan, res *ReadinessResult) error {
	limit := in.ReadyTimeout
	if limit <= 0 {
		limit = 45 * time.Minute
	}
	checkCtx, cancelChecks := workflow.WithCancel(ctx)
	defer cancelChecks()
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	expired := false
	workflow.Go(timerCtx, func(gctx workflow.Context) {
		if workflow.NewTimer(gctx, limit).Get(gctx, nil) == nil {
			expired = true
			cancelChecks()
		}
	})
	err := ready(checkCtx, in, plan, res)
	if expired {
		return fmt.Errorf("not ready within %s (its agent stopped answering, or a step never started): %v", limit, err)
	}
	return err
}

// ready runs the checks and, for instances entering service, the nginx
// registration.
func ready(ctx workflow.Context, in ReadinessInput, plan activities.GroupPlan, res *ReadinessResult) error {
	a := in.Action
	host := a.InstanceID
	wait := in.AgentWait
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Waiting** for the agent of %s", host))
	agentCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 20 * time.Second, ScheduleToCloseTimeout: wait,
		// The agent usually starts polling within seconds of the launch:
		// look again every second at most (retries add no history events;
		// each is one DescribeTaskQueue call).
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 300 * time.Millisecond, BackoffCoefficient: 1.5, MaximumInterval: time.Second},
	})
	if err := workflow.ExecuteActivity(agentCtx, deployActs.CheckAgents, activities.CheckAgentsInput{Hosts: []string{host}}).Get(ctx, nil); err != nil {
		return fmt.Errorf("its agent did not poll within %s: %w", wait, err)
	}
	if plan.App == "" {
		return nil // no environment deploys here: nothing to check
	}
	var rel *release.Meta
	if err := workflow.ExecuteActivity(controlCtx(ctx), fleetActs.ReleaseForInstance, activities.ReleaseForInstanceInput{App: plan.App, Env: plan.Env}).Get(ctx, &rel); err != nil {
		return err
	}
	t := agent.HostTarget{Host: host, App: plan.App, Env: plan.Env}
	if rel != nil {
		res.ReleaseID = rel.ID
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Putting release** `%s` on %s", rel.ID, host))
		if err := workflow.ExecuteActivity(hostCtx(ctx, host, 30*time.Minute, time.Minute), hostActs.Prepare, agent.PrepareInput{
			HostTarget: t, ReleaseID: rel.ID, ArtifactURI: rel.Artifact.URI, SHA256: rel.Artifact.SHA256, Size: rel.Artifact.Size, UncompressedSize: rel.Artifact.UncompressedSize,
			ContentVersion: fmt.Sprintf("%d", rel.BuildNumber), IndexSHA256: rel.Artifact.IndexSHA256}).Get(ctx, nil); err != nil {
			return fmt.Errorf("prepare release %s: %w", rel.ID, err)
		}
		if err := workflow.ExecuteActivity(hostCtx(ctx, host, 30*time.Second, 0), hostActs.Switch, agent.ReleaseRef{HostTarget: t, ReleaseID: rel.ID}).Get(ctx, nil); err != nil {
			return fmt.Errorf("switch to %s: %w", rel.ID, err)
		}
		if err := workflow.ExecuteActivity(hostCtx(ctx, host, 2*time.Minute, 0), hostActs.ReloadPHP, t).Get(ctx, nil); err != nil {
			return fmt.Errorf("php-fpm: %w", err)
		}
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Checking** %s (health, warm-up)", host))
	// OPcache warm-up: best effort and a single attempt; the health check
	// below decides, so
	// a broken instance must not spend a minute in warm-up retries first.
	warmCtx := workflow.WithRetryPolicy(hostCtx(ctx, host, 5*time.Minute, 0), temporal.RetryPolicy{MaximumAttempts: 1})
	_ = workflow.ExecuteActivity(warmCtx, hostActs.Warm, agent.WarmInput{HostTarget: t, Paths: []string{"/"}}).Get(ctx, nil)
	var hr agent.HealthResult
	if err := workflow.ExecuteActivity(hostCtx(ctx, host, 2*time.Minute, 0), hostActs.Health, agent.HealthInput{
		HostTarget: t, Paths: []string{"/"}, ExpectRelease: res.ReleaseID}).Get(ctx, &hr); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if len(hr.Failures) > 0 {
		return fmt.Errorf("unhealthy: %v", hr.Failures)
	}
	if !a.EntersService() || plan.Balancer == "" {
		return nil // warm-pool entry: prepared, never in nginx
	}
	var g fleet.Group
	if err := workflow.ExecuteActivity(controlCtx(ctx), fleetActs.DescribeGroup, in.Group).Get(ctx, &g); err != nil {
		return err
	}
	inst, ok := g.Instance(host)
	if !ok || inst.PrivateIP == "" {
		return fmt.Errorf("the group does not list %s with an address", host)
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Adding** %s to nginx on %s", host, plan.Balancer))
	res.InNginx = true // from here a failure must take it out again
	if err := workflow.ExecuteActivity(hostCtx(ctx, plan.Balancer, 2*time.Minute, 0), lbActs.SetMembers, agent.SetMembersInput{
		Group: in.Group, Add: []agent.Member{{ID: host, Addr: fmt.Sprintf("%s:%d", inst.PrivateIP, plan.Port)}}}).Get(ctx, nil); err != nil {
		return fmt.Errorf("add to nginx: %w", err)
	}
	return nil
}

// scaleIn takes a terminating instance out of nginx and drains it before
// the group may terminate it.
func scaleIn(ctx workflow.Context, in ReadinessInput, plan activities.GroupPlan, res *ReadinessResult, complete func(fleet.Result, string) error) error {
	a := in.Action
	drain := in.DrainTimeout
	if drain <= 0 {
		drain = 60 * time.Second
	}
	if plan.Balancer != "" {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Removing** %s from nginx and draining (≤ %s)", a.InstanceID, drain))
		if err := workflow.ExecuteActivity(hostCtx(ctx, plan.Balancer, 2*time.Minute, 0), lbActs.SetMembers, agent.SetMembersInput{
			Group: in.Group, Remove: []string{a.InstanceID}}).Get(ctx, nil); err != nil {
			return fmt.Errorf("remove %s from nginx: %w", a.InstanceID, err)
		}
		if err := workflow.ExecuteActivity(hostCtx(ctx, plan.Balancer, drain+time.Minute, 0), lbActs.Drain, agent.DrainInput{
			Group: in.Group, ID: a.InstanceID, Timeout: drain}).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("drain did not finish; continuing the termination", "instance", a.InstanceID, "error", err)
		}
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Instance %s drained**: termination continues", a.InstanceID))
	return complete(fleet.Continue, "drained")
}
