package aws_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"

	"github.com/mageflow/mageflow/internal/fleet"
	fleetaws "github.com/mageflow/mageflow/internal/fleet/aws"
)

// newProvider points the real SDK clients at the fake. Shared AWS files and
// the instance metadata service are disabled so nothing leaves loopback.
func newProvider(t *testing.T, endpoint string) *fleetaws.Provider {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	p, err := fleetaws.New(context.Background(), fleetaws.Config{
		Region:      "eu-west-1",
		Endpoint:    endpoint,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDFLEETTEST", "secret", ""),
		MaxBackoff:  5 * time.Millisecond, // keep SDK retries fast; the count stays the SDK default
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func setup(t *testing.T) (*fakeAWS, *fleetaws.Provider, context.Context) {
	f := newFakeAWS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return f, newProvider(t, f.URL()), ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestDescribeResolvesTemplateAndJoinsEC2(t *testing.T) {
	f, p, ctx := setup(t)
	g, err := p.Describe(ctx, "web")
	must(t, err)

	eq(t, "name", g.Name, "web")
	eq(t, "desired", g.Desired, 2)
	eq(t, "min", g.Min, 1)
	eq(t, "max", g.Max, 4)
	// The group says $Default; the provider must store the number behind it.
	eq(t, "template", g.LaunchTemplate, fleet.LaunchTemplateRef{ID: "lt-0abc", Name: "web-template", Version: "1", ImageID: "ami-0001"})

	if len(g.Instances) != 2 {
		t.Fatalf("instances = %+v, want 2", g.Instances)
	}
	eq(t, "instance 0", g.Instances[0], fleet.Instance{
		ID: "i-0aaa", LifecycleState: fleet.StateInService, HealthStatus: "Healthy", ImageID: "ami-0001",
		LaunchTemplateVersion: "1", PrivateIP: "10.0.1.10",
	})
	eq(t, "instance 1 protected", g.Instances[1].ProtectedFromScaleIn, true)

	if g.WarmPool == nil {
		t.Fatal("warm pool missing")
	}
	eq(t, "pool config", g.WarmPool.WarmPoolConfig, fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 0, State: fleet.PoolStopped, ReuseOnScaleIn: true})
	if len(g.WarmPool.Instances) != 1 {
		t.Fatalf("pool instances = %+v", g.WarmPool.Instances)
	}
	w := g.WarmPool.Instances[0]
	eq(t, "warm state", w.LifecycleState, fleet.StateWarmedStopped)
	eq(t, "warm flag", w.InWarmPool, true)
	eq(t, "warm ip", w.PrivateIP, "10.0.1.12")
	if in, ok := g.Instance("i-0ccc"); !ok || !in.InWarmPool {
		t.Errorf("Group.Instance(i-0ccc) = %+v, %v", in, ok)
	}

	// Wire checks: what the SDK actually sent.
	eq(t, "group name param", f.callsOf("DescribeAutoScalingGroups")[0].Get("AutoScalingGroupNames.member.1"), "web")
	eq(t, "version param", f.callsOf("DescribeLaunchTemplateVersions")[0].Get("LaunchTemplateVersion.1"), "$Default")
	di := f.callsOf("DescribeInstances")[0]
	eq(t, "filter name", di.Get("Filter.1.Name"), "instance-id")
	eq(t, "filter values", strings.Join(flat(di, "Filter.1.Value"), ","), "i-0aaa,i-0bbb,i-0ccc")
	eq(t, "warm pool group", f.callsOf("DescribeWarmPool")[0].Get("AutoScalingGroupName"), "web")
}

func TestDescribeLatestAliasAndNoWarmPool(t *testing.T) {
	f, p, ctx := setup(t)
	f.LTVersion, f.Warm, f.WarmInstances = "$Latest", nil, nil
	g, err := p.Describe(ctx, "web")
	must(t, err)
	eq(t, "resolved version", g.LaunchTemplate.Version, "2")
	eq(t, "resolved image", g.LaunchTemplate.ImageID, "ami-0002")
	if g.WarmPool != nil {
		t.Errorf("warm pool = %+v, want nil", g.WarmPool)
	}
	eq(t, "DescribeWarmPool calls", len(f.callsOf("DescribeWarmPool")), 0)
}

func TestDescribeUnknownGroup(t *testing.T) {
	_, p, ctx := setup(t)
	_, err := p.Describe(ctx, "nope")
	if !errors.Is(err, fleet.ErrNotFound) || fleet.IsRetryable(err) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "eu-west-1") {
		t.Errorf("error should name the group and region: %v", err)
	}
}

func TestSetDesiredTakesFromWarmPool(t *testing.T) {
	f, p, ctx := setup(t)
	must(t, p.SetDesired(ctx, "web", 3, true))
	form := f.callsOf("SetDesiredCapacity")[0]
	eq(t, "DesiredCapacity", form.Get("DesiredCapacity"), "3")
	eq(t, "HonorCooldown", form.Get("HonorCooldown"), "true")

	g, err := p.Describe(ctx, "web")
	must(t, err)
	eq(t, "desired", g.Desired, 3)
	in, ok := g.Instance("i-0ccc")
	if !ok || in.InWarmPool || in.LifecycleState != fleet.StatePendingWait {
		t.Errorf("pooled instance after scale-out = %+v, want Pending:Wait in the group", in)
	}
	if len(g.WarmPool.Instances) != 1 || g.WarmPool.Instances[0].LifecycleState != fleet.StateWarmedPendingWait {
		t.Errorf("pool refill = %+v, want one Warmed:Pending:Wait", g.WarmPool.Instances)
	}

	err = p.SetDesired(ctx, "web", 9, false)
	if err == nil || fleet.IsRetryable(err) || errors.Is(err, fleet.ErrNoActiveAction) {
		t.Fatalf("above max: err = %v, want permanent", err)
	}
	if !strings.Contains(err.Error(), "above max value 4") || !strings.Contains(err.Error(), "permanent") {
		t.Errorf("error lacks AWS's message or class: %v", err)
	}
	eq(t, "HonorCooldown false sent", f.callsOf("SetDesiredCapacity")[1].Get("HonorCooldown"), "false")
}

func TestTerminate(t *testing.T) {
	f, p, ctx := setup(t)

	must(t, p.Terminate(ctx, "i-0aaa", true))
	eq(t, "decrement param", f.callsOf("TerminateInstanceInAutoScalingGroup")[0].Get("ShouldDecrementDesiredCapacity"), "true")
	eq(t, "desired after decrement", f.Desired, 1)
	eq(t, "held by terminate hook", f.state("i-0aaa"), "Terminating:Wait")

	// At min size, decrementing is refused by Auto Scaling: permanent.
	err := p.Terminate(ctx, "i-0bbb", true)
	if err == nil || fleet.IsRetryable(err) || !strings.Contains(err.Error(), "min size") {
		t.Fatalf("decrement below min: err = %v", err)
	}

	must(t, p.Terminate(ctx, "i-0bbb", false))
	eq(t, "decrement param", f.callsOf("TerminateInstanceInAutoScalingGroup")[2].Get("ShouldDecrementDesiredCapacity"), "false")
	eq(t, "desired kept", f.Desired, 1)
	g, err := p.Describe(ctx, "web")
	must(t, err)
	var replacements int
	for _, in := range g.Instances {
		if in.LifecycleState == fleet.StatePendingWait {
			replacements++
		}
	}
	eq(t, "replacement launched", replacements, 1)

	err = p.Terminate(ctx, "i-0gone", false)
	if !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("unknown instance: err = %v, want ErrNotFound", err)
	}
}

func TestLifecycleActionsThroughEventBridge(t *testing.T) {
	f, p, ctx := setup(t)
	must(t, p.SetDesired(ctx, "web", 3, false))

	// Leaving the pool: Pending:Wait, WarmPool → AutoScalingGroup.
	leave, err := fleet.ParseLifecycleEvent(f.eventBridgeJSON(f.action("i-0ccc")))
	must(t, err)
	if !leave.EntersService() || leave.EntersWarmPool() || leave.Origin != fleet.PlaceWarmPool {
		t.Fatalf("leave-pool action = %+v", leave)
	}
	must(t, p.RecordLifecycleHeartbeat(ctx, *leave))
	must(t, p.RecordLifecycleHeartbeat(ctx, *leave))
	eq(t, "heartbeats", f.action("i-0ccc").Heartbeats, 2)
	must(t, p.CompleteLifecycleAction(ctx, *leave, fleet.Continue))
	form := f.callsOf("CompleteLifecycleAction")[0]
	eq(t, "result", form.Get("LifecycleActionResult"), "CONTINUE")
	eq(t, "token", form.Get("LifecycleActionToken"), leave.Token)
	eq(t, "instance", form.Get("InstanceId"), "i-0ccc")
	eq(t, "hook", form.Get("LifecycleHookName"), "mageflow-launch")
	eq(t, "state after CONTINUE", f.state("i-0ccc"), "InService")

	// Completing again: the action is gone. Must be ErrNoActiveAction, not
	// retryable, so no caller loops on it.
	err = p.CompleteLifecycleAction(ctx, *leave, fleet.Continue)
	if !errors.Is(err, fleet.ErrNoActiveAction) || fleet.IsRetryable(err) {
		t.Fatalf("second completion: err = %v, want ErrNoActiveAction", err)
	}
	if err := p.RecordLifecycleHeartbeat(ctx, *leave); !errors.Is(err, fleet.ErrNoActiveAction) {
		t.Errorf("heartbeat after completion: err = %v, want ErrNoActiveAction", err)
	}

	// The pool refilled: Warmed:Pending:Wait, EC2 → WarmPool.
	g, err := p.Describe(ctx, "web")
	must(t, err)
	refill := g.WarmPool.Instances[0].ID
	enter, err := fleet.ParseLifecycleEvent(f.eventBridgeJSON(f.action(refill)))
	must(t, err)
	if !enter.EntersWarmPool() || enter.EntersService() || enter.WaitState() != fleet.StateWarmedPendingWait {
		t.Fatalf("enter-pool action = %+v", enter)
	}
	must(t, p.CompleteLifecycleAction(ctx, *enter, fleet.Continue))
	eq(t, "pooled after CONTINUE", f.state(refill), "Warmed:Stopped")

	// A cold launch (empty pool) abandoned after failed readiness is
	// terminated.
	must(t, p.PutWarmPool(ctx, "web", fleet.WarmPoolConfig{}))
	f.mu.Lock()
	f.WarmInstances = nil
	f.mu.Unlock()
	must(t, p.Terminate(ctx, "i-0aaa", false))
	cold := f.Instances[len(f.Instances)-1].ID
	launch, err := fleet.ParseLifecycleEvent(f.eventBridgeJSON(f.action(cold)))
	must(t, err)
	if launch.Origin != fleet.PlaceEC2 || !launch.EntersService() {
		t.Fatalf("cold launch action = %+v", launch)
	}
	must(t, p.CompleteLifecycleAction(ctx, *launch, fleet.Abandon))
	eq(t, "abandoned instance", f.state(cold), "")

	// The terminate hook on i-0aaa: drain, then CONTINUE.
	term, err := fleet.ParseLifecycleEvent(f.eventBridgeJSON(f.action("i-0aaa")))
	must(t, err)
	if !term.LeavesService() || term.WaitState() != fleet.StateTerminatingWait {
		t.Fatalf("terminate action = %+v", term)
	}
	must(t, p.CompleteLifecycleAction(ctx, *term, fleet.Continue))
	eq(t, "terminated instance", f.state("i-0aaa"), "")

	// Only the instance ID (no token) is also accepted by the API.
	noToken := fleet.LifecycleAction{Group: "web", Hook: "mageflow-launch", InstanceID: "i-0ccc"}
	if err := p.CompleteLifecycleAction(ctx, noToken, fleet.Continue); !errors.Is(err, fleet.ErrNoActiveAction) {
		t.Errorf("no-token completion of a done action: err = %v", err)
	}
	eq(t, "token omitted", f.callsOf("CompleteLifecycleAction")[5].Has("LifecycleActionToken"), false)

	// Invalid input is refused before any call.
	before := len(f.callsOf("CompleteLifecycleAction"))
	if err := p.CompleteLifecycleAction(ctx, *leave, "MAYBE"); err == nil || fleet.IsRetryable(err) {
		t.Errorf("bad result: err = %v", err)
	}
	if err := p.CompleteLifecycleAction(ctx, fleet.LifecycleAction{Group: "web"}, fleet.Continue); err == nil {
		t.Error("action without hook accepted")
	}
	eq(t, "calls for invalid input", len(f.callsOf("CompleteLifecycleAction")), before)
}

func TestCreateImage(t *testing.T) {
	f, p, ctx := setup(t)
	id, err := p.CreateImage(ctx, "i-0aaa", "web-2026-11-03", fleet.ImageOptions{NoReboot: true, Description: "refresh"})
	must(t, err)
	form := f.callsOf("CreateImage")[0]
	eq(t, "InstanceId", form.Get("InstanceId"), "i-0aaa")
	eq(t, "Name", form.Get("Name"), "web-2026-11-03")
	eq(t, "NoReboot", form.Get("NoReboot"), "true")
	eq(t, "Description", form.Get("Description"), "refresh")

	st, err := p.ImageState(ctx, id)
	must(t, err)
	eq(t, "first state", st, fleet.ImagePending)
	st, err = p.ImageState(ctx, id)
	must(t, err)
	eq(t, "second state", st, fleet.ImageAvailable)

	// A retried activity repeats the call: same name → same image.
	again, err := p.CreateImage(ctx, "i-0aaa", "web-2026-11-03", fleet.ImageOptions{})
	must(t, err)
	eq(t, "repeated CreateImage", again, id)
	eq(t, "images", len(f.Images), 1)

	f.Images[id].State = "failed"
	st, err = p.ImageState(ctx, id)
	if st != fleet.ImageFailed || err == nil || fleet.IsRetryable(err) || !strings.Contains(err.Error(), "snapshot failed") {
		t.Errorf("failed image: %v, %v", st, err)
	}
	if _, err := p.ImageState(ctx, "ami-0missing"); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("missing image: err = %v", err)
	}
	if _, err := p.CreateImage(ctx, "i-0gone", "x", fleet.ImageOptions{}); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("missing instance: err = %v", err)
	}
}

func TestPublishLaunchTemplateVersionAndRollback(t *testing.T) {
	f, p, ctx := setup(t)
	before, err := p.Describe(ctx, "web")
	must(t, err)

	// The update of the group fails once after the version was created: the
	// activity retries, and must get the same version back, not a fourth.
	f.failNext("UpdateAutoScalingGroup", 1, 400, "ScalingActivityInProgress", "Scaling activity 7f2 is in progress and blocks this action.")
	_, err = p.PublishLaunchTemplateVersion(ctx, "web", "ami-0new")
	if !fleet.IsRetryable(err) {
		t.Fatalf("first publish: err = %v, want retryable", err)
	}
	ref, err := p.PublishLaunchTemplateVersion(ctx, "web", "ami-0new")
	must(t, err)
	eq(t, "new ref", ref, fleet.LaunchTemplateRef{ID: "lt-0abc", Name: "web-template", Version: "3", ImageID: "ami-0new"})
	eq(t, "template versions", len(f.Templates["lt-0abc"].Versions), 3)

	calls := f.callsOf("CreateLaunchTemplateVersion")
	eq(t, "create calls", len(calls), 2)
	eq(t, "LaunchTemplateId", calls[0].Get("LaunchTemplateId"), "lt-0abc")
	eq(t, "SourceVersion", calls[0].Get("SourceVersion"), "1") // the number behind $Default
	eq(t, "ImageId", calls[0].Get("LaunchTemplateData.ImageId"), "ami-0new")
	if tok := calls[0].Get("ClientToken"); tok == "" || tok != calls[1].Get("ClientToken") {
		t.Errorf("ClientTokens %q, %q: want equal and set", tok, calls[1].Get("ClientToken"))
	}
	upd := f.callsOf("UpdateAutoScalingGroup")[1]
	eq(t, "update template", upd.Get("LaunchTemplate.LaunchTemplateId"), "lt-0abc")
	eq(t, "update version", upd.Get("LaunchTemplate.Version"), "3")

	// Already published: no new version.
	again, err := p.PublishLaunchTemplateVersion(ctx, "web", "ami-0new")
	must(t, err)
	eq(t, "republish", again, ref)
	eq(t, "create calls after republish", len(f.callsOf("CreateLaunchTemplateVersion")), 2)

	g, err := p.Describe(ctx, "web")
	must(t, err)
	eq(t, "group template", g.LaunchTemplate, ref)

	// The warm pool still holds the old image (AWS does not refresh it on a
	// template change): terminating a pooled instance without decrement
	// refills the pool from the new version, which is how a refresh renews it.
	stale := g.WarmPool.Instances[0]
	eq(t, "pooled image before refresh", stale.ImageID, "ami-0001")
	must(t, p.Terminate(ctx, stale.ID, false))
	g, err = p.Describe(ctx, "web")
	must(t, err)
	eq(t, "desired kept", g.Desired, 2)
	fresh := g.WarmPool.Instances[0]
	eq(t, "pooled image after refresh", fresh.ImageID, "ami-0new")
	eq(t, "pooled template version", fresh.LaunchTemplateVersion, "3")
	enter, err := fleet.ParseLifecycleEvent(f.eventBridgeJSON(f.action(fresh.ID)))
	must(t, err)
	must(t, p.CompleteLifecycleAction(ctx, *enter, fleet.Continue))

	// A replacement now comes warm and on the new image.
	must(t, p.Terminate(ctx, "i-0aaa", false))
	g, err = p.Describe(ctx, "web")
	must(t, err)
	newest := g.Instances[len(g.Instances)-1]
	eq(t, "replacement", newest.ID, fresh.ID)
	eq(t, "replacement image", newest.ImageID, "ami-0new")

	// Rollback to the recorded previous version.
	must(t, p.SetLaunchTemplateVersion(ctx, "web", before.LaunchTemplate))
	g, err = p.Describe(ctx, "web")
	must(t, err)
	eq(t, "rolled back", g.LaunchTemplate, before.LaunchTemplate)

	err = p.SetLaunchTemplateVersion(ctx, "web", fleet.LaunchTemplateRef{ID: "lt-0abc", Version: "42"})
	if err == nil || fleet.IsRetryable(err) {
		t.Errorf("unknown version: err = %v, want permanent", err)
	}
}

func TestSetMinMaxAndPutWarmPool(t *testing.T) {
	f, p, ctx := setup(t)
	must(t, p.SetMinMax(ctx, "web", 3, 6))
	form := f.callsOf("UpdateAutoScalingGroup")[0]
	eq(t, "MinSize", form.Get("MinSize"), "3")
	eq(t, "MaxSize", form.Get("MaxSize"), "6")
	eq(t, "no template sent", form.Has("LaunchTemplate.Version"), false)
	g, err := p.Describe(ctx, "web")
	must(t, err)
	eq(t, "bounds", [3]int{g.Min, g.Desired, g.Max}, [3]int{3, 3, 6})

	if err := p.SetMinMax(ctx, "web", 5, 2); err == nil || fleet.IsRetryable(err) {
		t.Errorf("min > max: err = %v", err)
	}
	eq(t, "invalid bounds not sent", len(f.callsOf("UpdateAutoScalingGroup")), 1)

	cfg := fleet.WarmPoolConfig{MinSize: 2, State: fleet.PoolHibernated}
	must(t, p.PutWarmPool(ctx, "web", cfg))
	wp := f.callsOf("PutWarmPool")[0]
	eq(t, "pool MinSize", wp.Get("MinSize"), "2")
	eq(t, "pool MaxGroupPreparedCapacity", wp.Get("MaxGroupPreparedCapacity"), "-1")
	eq(t, "pool PoolState", wp.Get("PoolState"), "Hibernated")
	eq(t, "pool reuse", wp.Get("InstanceReusePolicy.ReuseOnScaleIn"), "false")
	g, err = p.Describe(ctx, "web")
	must(t, err)
	eq(t, "pool read back", g.WarmPool.WarmPoolConfig, cfg)

	must(t, p.PutWarmPool(ctx, "web", fleet.WarmPoolConfig{MaxPreparedCapacity: 5, ReuseOnScaleIn: true}))
	wp = f.callsOf("PutWarmPool")[1]
	eq(t, "explicit max prepared", wp.Get("MaxGroupPreparedCapacity"), "5")
	eq(t, "default state", wp.Get("PoolState"), "Stopped")
}

// TestErrorClassification drives each fault through the SDK's retryer and
// checks both how often the fake was called (who retried) and the class the
// caller sees.
func TestErrorClassification(t *testing.T) {
	type tc struct {
		name       string
		op         string // wire action the fault is queued on
		count      int    // how many times the fault is returned
		status     int
		code, msg  string
		call       func(ctx context.Context, p *fleetaws.Provider) error
		wantErr    error // nil: success expected
		wantCalls  int
		wantInText string
	}
	setDesired := func(ctx context.Context, p *fleetaws.Provider) error { return p.SetDesired(ctx, "web", 3, false) }
	describe := func(ctx context.Context, p *fleetaws.Provider) error { _, err := p.Describe(ctx, "web"); return err }
	complete := func(ctx context.Context, p *fleetaws.Provider) error {
		return p.CompleteLifecycleAction(ctx, fleet.LifecycleAction{Group: "web", Hook: "mageflow-launch", Token: "t"}, fleet.Continue)
	}
	cases := []tc{
		{name: "throttling twice then success, retried by the SDK", op: "SetDesiredCapacity", count: 2, status: 400,
			code: "Throttling", msg: "Rate exceeded", call: setDesired, wantCalls: 3},
		{name: "persistent throttling", op: "SetDesiredCapacity", count: 10, status: 400,
			code: "Throttling", msg: "Rate exceeded", call: setDesired, wantErr: fleet.ErrRetryable, wantCalls: 3},
		{name: "scaling activity in progress: not an SDK retry, retryable for the caller", op: "SetDesiredCapacity", count: 10, status: 400,
			code: "ScalingActivityInProgress", msg: "Scaling activity 5b6 is in progress and blocks this action.",
			call: setDesired, wantErr: fleet.ErrRetryable, wantCalls: 1},
		{name: "resource contention (500) retried then surfaced", op: "SetDesiredCapacity", count: 10, status: 500,
			code: "ResourceContention", msg: "You already have a pending update to an Auto Scaling resource.",
			call: setDesired, wantErr: fleet.ErrRetryable, wantCalls: 3},
		{name: "instance refresh in progress", op: "SetDesiredCapacity", count: 10, status: 400,
			code: "InstanceRefreshInProgress", msg: "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.",
			call: setDesired, wantErr: fleet.ErrRetryable, wantCalls: 1},
		{name: "EC2 request limit twice then success", op: "DescribeInstances", count: 2, status: 503,
			code: "RequestLimitExceeded", msg: "Request limit exceeded.", call: describe, wantCalls: 3},
		{name: "EC2 request limit persistent", op: "DescribeLaunchTemplateVersions", count: 10, status: 503,
			code: "RequestLimitExceeded", msg: "Request limit exceeded.", call: describe, wantErr: fleet.ErrRetryable, wantCalls: 3},
		{name: "no active lifecycle action", op: "CompleteLifecycleAction", count: 1, status: 400,
			code: "ValidationError", msg: "No active Lifecycle Action found with token t", call: complete,
			wantErr: fleet.ErrNoActiveAction, wantCalls: 1},
		{name: "other validation error is permanent", op: "SetDesiredCapacity", count: 1, status: 400,
			code: "ValidationError", msg: "1 validation error detected", call: setDesired,
			wantErr: errPermanent, wantCalls: 1, wantInText: "1 validation error detected"},
		{name: "access denied names the fix", op: "SetDesiredCapacity", count: 1, status: 403,
			code: "AccessDenied", msg: "User is not authorized to perform: autoscaling:SetDesiredCapacity", call: setDesired,
			wantErr: errPermanent, wantCalls: 1, wantInText: "grant the mageflow role"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, p, ctx := setup(t)
			f.failNext(c.op, c.count, c.status, c.code, c.msg)
			err := c.call(ctx, p)
			eq(t, "calls of "+c.op, len(f.callsOf(c.op)), c.wantCalls)
			switch c.wantErr {
			case nil:
				must(t, err)
				return
			case errPermanent:
				if err == nil || fleet.IsRetryable(err) || errors.Is(err, fleet.ErrNoActiveAction) || errors.Is(err, fleet.ErrNotFound) {
					t.Fatalf("err = %v, want permanent", err)
				}
			default:
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
			}
			var fe *fleet.Error
			if !errors.As(err, &fe) || fe.Code != c.code {
				t.Errorf("fleet.Error code = %+v, want %s", fe, c.code)
			}
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != c.code {
				t.Errorf("underlying smithy.APIError lost: %v", err)
			}
			if c.wantInText != "" && !strings.Contains(err.Error(), c.wantInText) {
				t.Errorf("error text %q lacks %q", err, c.wantInText)
			}
		})
	}
}

// errPermanent is a marker for "no class" in the table above.
var errPermanent = errors.New("permanent")

func TestModeledFaultTypeReachesCaller(t *testing.T) {
	f, p, ctx := setup(t)
	f.failNext("SetDesiredCapacity", 1, 400, "ScalingActivityInProgress", "busy")
	err := p.SetDesired(ctx, "web", 3, false)
	var fault *astypes.ScalingActivityInProgressFault
	if !errors.As(err, &fault) {
		t.Fatalf("err = %T %v, want the SDK's modeled ScalingActivityInProgressFault inside", err, err)
	}
}

func TestTransportFailureIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	url := "http://" + l.Addr().String()
	must(t, l.Close()) // nothing listens there any more: connection refused
	p := newProvider(t, url)
	err = p.SetDesired(context.Background(), "web", 1, false)
	var fe *fleet.Error
	if !fleet.IsRetryable(err) || !errors.As(err, &fe) || fe.Code != "Transport" {
		t.Fatalf("err = %v, want retryable transport error", err)
	}
}

func TestCanceledContextIsNotRetryable(t *testing.T) {
	_, p, _ := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.SetDesired(ctx, "web", 3, false)
	if !errors.Is(err, context.Canceled) || fleet.IsRetryable(err) {
		t.Fatalf("err = %v, want context.Canceled, not retryable", err)
	}
}
