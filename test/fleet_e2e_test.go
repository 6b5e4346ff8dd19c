package test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/mageflow/mageflow/internal/fleet"
	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
	"github.com/mageflow/mageflow/test/fleetstack"
	"github.com/mageflow/mageflow/workflows"
)

// fleetLoadClients keep the balancer busy during refreshes: bounded, on
// loopback, against our own containers.
const (
	fleetLoadClients = 4
	fleetLoadPause   = 10 * time.Millisecond
	fleetDesired     = 3
	fleetWarmPool    = 1
)

// TestFleetDocker runs a group of 3 instances (containers of the instance
// image, each with its agent, nginx and php-fpm) with a warm pool of 1
// behind a real nginx balancer on this machine, the control worker (and
// with it the docker provider's controller) as an OS process, and load on
// the balancer throughout:
//
//  1. a refresh to a new image completes without one failed request and
//     with nginx never serving fewer members than the desired capacity;
//  2. a refresh during which the control worker is SIGKILLed and started
//     again completes, launching no more instances than it needs;
//  3. on the cluster of `make test-cluster` only: a refresh during which
//     the history service is SIGKILLed (its supervisor restarts it)
//     completes exactly once, without one failed request;
//  4. a refresh to an image whose storefront answers 500: every instance
//     of it is abandoned by ScaleOutReadiness, never appears in nginx and
//     never answers a request; the refresh gives up and is undone.
func TestFleetDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := fleetstack.BuildStaticWorker(ctx, dir)
	require.NoError(t, err)
	agentBin, err := fleetstack.BuildStaticAgent(ctx, dir)
	require.NoError(t, err)
	s, err := fleetstack.Start(ctx, fleetstack.Options{
		Dir: filepath.Join(dir, "stack"), Temporal: dev.FrontendHostPort(), Queue: "it-" + t.Name(),
		Desired: fleetDesired, WarmPool: fleetWarmPool, WorkerBin: bin, AgentBin: agentBin, Log: t.Logf,
	})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- control worker (last 8 KiB)\n%s", tail(s.ControlLog(), 8<<10))
			t.Logf("--- instances\n%s", tail(s.InstanceLogs(), 12<<10))
			t.Logf("--- balancer\n%s", tail(s.Balancer.Logs(), 4<<10))
		}
	})

	t.Run("refresh under load", func(t *testing.T) {
		img, err := s.DeriveImage(ctx, "mageflow/fleet-test:v2-"+s.GroupName,
			map[string]string{"/etc/mageflow-image": "v2\n"})
		require.NoError(t, err)
		r := runRefresh(t, ctx, s, img, nil)
		require.NoError(t, r.err)
		r.requireClean(t)
		requireAllOn(t, ctx, s, img)
	})

	t.Run("SIGKILL of the control worker mid-refresh", func(t *testing.T) {
		img, err := s.DeriveImage(ctx, "mageflow/fleet-test:v3-"+s.GroupName,
			map[string]string{"/etc/mageflow-image": "v3\n"})
		require.NoError(t, err)
		var killedAt, restartedAt time.Time
		r := runRefresh(t, ctx, s, img, func(started time.Time) error {
			if err := waitReplacementPrepared(ctx, s); err != nil {
				return err
			}
			killedAt = time.Now()
			if err := s.Control.Kill(); err != nil {
				return err
			}
			time.Sleep(time.Second) // the fault: the control worker stays down a second, not a wait
			restartedAt = time.Now()
			return s.Control.Start()
		})
		require.NoError(t, r.err)
		require.False(t, killedAt.IsZero(), "the kill never happened")
		t.Logf("SIGKILL at +%s, restarted at +%s, refresh done at +%s", killedAt.Sub(r.start).Round(time.Millisecond),
			restartedAt.Sub(r.start).Round(time.Millisecond), r.took.Round(time.Millisecond))
		require.True(t, killedAt.Before(r.start.Add(r.took)), "the kill landed after the refresh finished")
		r.requireClean(t)
		requireAllOn(t, ctx, s, img)
		// Every old instance is replaced once, the warm pool is refreshed
		// and refilled: a crash must not launch more than that.
		limit := fleetDesired + 1 + fleetWarmPool
		require.LessOrEqual(t, r.launched, limit, "instances launched during the refresh")
	})

	t.Run("SIGKILL of the history service mid-refresh", func(t *testing.T) {
		dir := clusterDirOrSkip(t)
		img, err := s.DeriveImage(ctx, "mageflow/fleet-test:v4-"+s.GroupName,
			map[string]string{"/etc/mageflow-image": "v4\n"})
		require.NoError(t, err)
		var killedAt time.Time
		var gone time.Duration
		r := runRefresh(t, ctx, s, img, func(started time.Time) error {
			// As above, but the engine's history service instead of our
			// worker.
			if err := waitReplacementPrepared(ctx, s); err != nil {
				return err
			}
			killedAt = time.Now()
			var err error
			gone, err = killService(dir, "history")
			return err
		})
		require.NoError(t, r.err)
		require.False(t, killedAt.IsZero(), "the kill never happened")
		t.Logf("history SIGKILLed at +%s, back after %s, refresh done at +%s", killedAt.Sub(r.start).Round(time.Millisecond),
			gone.Round(time.Millisecond), r.took.Round(time.Millisecond))
		require.True(t, killedAt.Before(r.start.Add(r.took)), "the kill landed after the refresh finished")
		r.requireClean(t)
		requireAllOn(t, ctx, s, img)
		require.LessOrEqual(t, r.launched, fleetDesired+1+fleetWarmPool, "instances launched during the refresh")
		requireOneRefreshRun(t, ctx, s, r.start)
	})

	t.Run("unhealthy instances are abandoned", func(t *testing.T) {
		img, err := s.DeriveImage(ctx, "mageflow/fleet-test:broken-"+s.GroupName, map[string]string{
			"/etc/php/8.2/fpm/conf.d/99-mageflow-broken.ini": "auto_prepend_file=/opt/mageflow-broken.php\n",
			"/opt/mageflow-broken.php":                       "<?php http_response_code(500); echo \"broken instance\\n\"; exit;\n",
		})
		require.NoError(t, err)
		g, err := s.Describe(ctx)
		require.NoError(t, err)
		before := inService(g)
		// Every instance the refresh launches is broken. Readiness gives up
		// on one after its checks (the best-effort warm-up retries first),
		// then the refresh is cancelled, which undoes it.
		var abandoned map[string]bool
		r := runRefresh(t, ctx, s, img, func(time.Time) error {
			// assert, not require: this runs beside the test's goroutine.
			var lastErr error
			if !assert.Eventually(t, func() bool {
				abandoned, lastErr = abandonedReadiness(ctx, s)
				return lastErr == nil && len(abandoned) > 0
			}, 3*time.Minute, time.Second, "no ScaleOutReadiness ended in ABANDON within 3 minutes") {
				return fmt.Errorf("no abandoned readiness (last error: %v)", lastErr)
			}
			return s.Client.CancelWorkflow(ctx, workflows.RefreshWorkflowID(s.Group), "")
		}, func(in *workflows.RefreshInput) { in.Poll = time.Second })
		require.Error(t, r.err, "the refresh to a broken image was cancelled")
		require.Contains(t, r.err.Error(), "canceled")
		broken := r.launchedOn(img)
		require.NotEmpty(t, broken, "no instance of the broken image was launched")
		t.Logf("broken instances launched: %v; refresh: %v", broken, r.err)
		for _, id := range broken {
			require.NotContains(t, r.members.Ever, id, "a broken instance appeared in nginx's upstream")
			for _, smp := range r.samples {
				require.NotEqual(t, id, smp.Host, "a broken instance answered a request")
			}
		}
		var hit []string
		for _, id := range broken {
			if abandoned[id] {
				hit = append(hit, id)
			}
		}
		require.NotEmpty(t, hit, "no ScaleOutReadiness of a broken instance ended in ABANDON (abandoned: %v)", abandoned)
		r.requireClean(t)
		// The undo left the group serving the instances it had.
		g, err = s.Describe(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, before, inService(g))
		ids, err := fleetstack.WaitMembers(ctx, s.VerifyURL, func([]string) bool { return true })
		require.NoError(t, err)
		require.ElementsMatch(t, before, ids)
	})
}

type refreshRun struct {
	start    time.Time
	took     time.Duration
	err      error
	samples  []deploystack.Sample
	members  fleetstack.MemberSummary
	launched int
	created  []fleetstack.Launch
}

// runRefresh refreshes s's group to image under load while watching
// nginx's members and the containers created; during runs alongside.
func runRefresh(t *testing.T, ctx context.Context, s *fleetstack.Stack, image string, during func(time.Time) error, tweak ...func(*workflows.RefreshInput)) *refreshRun {
	t.Helper()
	launches := fleetstack.WatchLaunches(s.Docker, dockerfleet.LabelGroup, s.GroupName)
	defer launches.Stop()
	members := fleetstack.WatchMembers(s.VerifyURL, 20*time.Millisecond)
	defer members.Stop()
	load := deploystack.StartLoad(s.BalancerURL, fleetLoadClients, fleetLoadPause)
	defer load.Stop()
	servedAtLeast(t, load, 20)

	in := workflows.RefreshInput{Group: s.Group, ImageID: image, Batch: 1, ReadyTimeout: 2 * time.Minute, Poll: time.Second}
	for _, f := range tweak {
		f(&in)
	}
	r := &refreshRun{start: time.Now()}
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Minute)
	defer rcancel()
	run, err := (&start.Fleet{Client: s.Client, Config: s.Cfg}).Refresh(rctx, in)
	require.NoError(t, err)
	errc := make(chan error, 1)
	if during != nil {
		go func() { errc <- during(r.start) }()
	} else {
		errc <- nil
	}
	var res workflows.RefreshResult
	r.err = run.Get(rctx, &res)
	r.took = time.Since(r.start)
	require.NoError(t, <-errc)
	servedAtLeast(t, load, load.Count()+20) // the pool after the refresh serves too
	r.samples = load.Stop()
	r.members = fleetstack.SummarizeMembers(members.Stop())
	n, err := launches.Count()
	require.NoError(t, err, "docker event stream")
	r.launched, r.created = n, launches.All()
	sum := deploystack.Summarize(r.samples, nil)
	t.Logf("refresh to %s: %v in %s; replaced %v with %v; load %s; nginx members min %d max %d over %d reads; %d instances launched",
		short(image), errText(r.err), r.took.Round(time.Millisecond), res.Replaced, res.Added, sum, r.members.Min, r.members.Max, r.members.N, n)
	return r
}

// requireClean: no failed request, load ran, nginx never short of members.
func (r *refreshRun) requireClean(t *testing.T) {
	t.Helper()
	sum := deploystack.Summarize(r.samples, nil)
	if sum.Failed > 0 {
		for _, smp := range r.samples {
			if !smp.OK() {
				t.Logf("failed: %s", smp)
			}
		}
	}
	require.Zero(t, sum.Failed, "failed requests during the refresh")
	require.Greater(t, sum.N, 50, "the load must have run")
	require.Zero(t, r.members.Errors, "nginx's member list did not answer")
	require.GreaterOrEqual(t, r.members.Min, fleetDesired, "nginx served fewer members than the desired capacity")
}

// launchedOn lists the instances created from image.
func (r *refreshRun) launchedOn(image string) []string {
	var ids []string
	for _, l := range r.created {
		if l.Image == image || strings.TrimPrefix(l.Image, "sha256:") == strings.TrimPrefix(image, "sha256:") {
			ids = append(ids, l.Instance)
		}
	}
	return ids
}

func requireAllOn(t *testing.T, ctx context.Context, s *fleetstack.Stack, image string) {
	t.Helper()
	g, err := s.Describe(ctx)
	require.NoError(t, err)
	require.Len(t, inService(g), fleetDesired)
	for _, i := range g.Instances {
		if !i.LifecycleState.Leaving() { // replaced ones may still drain
			require.Equal(t, image, i.ImageID, "instance %s (%s) after the refresh", i.ID, i.LifecycleState)
		}
	}
	if g.WarmPool != nil {
		for _, i := range g.WarmPool.Instances {
			require.Equal(t, image, i.ImageID, "warm pool instance %s after the refresh", i.ID)
		}
	}
	ids, err := fleetstack.WaitMembers(ctx, s.VerifyURL, func([]string) bool { return true })
	require.NoError(t, err)
	require.ElementsMatch(t, inService(g), ids, "nginx serves exactly the in-service instances")
}

func inService(g *fleet.Group) []string {
	var ids []string
	for _, i := range g.Instances {
		if i.LifecycleState == fleet.StateInService {
			ids = append(ids, i.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// abandonedReadiness maps instance ids to true whose ScaleOutReadiness run
// on the stack's queue failed with "abandoned".
func abandonedReadiness(ctx context.Context, s *fleetstack.Stack) (map[string]bool, error) {
	out := map[string]bool{}
	q := fmt.Sprintf("WorkflowType = 'ScaleOutReadiness' AND TaskQueue = '%s' AND ExecutionStatus = 'Failed'", s.Cfg.Temporal.TaskQueue)
	resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: testNamespace, Query: q, PageSize: 100})
	if err != nil {
		return nil, err
	}
	for _, e := range resp.Executions {
		if e.Status != enums.WORKFLOW_EXECUTION_STATUS_FAILED {
			continue
		}
		var res workflows.ReadinessResult
		err := s.Client.GetWorkflow(ctx, e.Execution.WorkflowId, e.Execution.RunId).Get(ctx, &res)
		if err != nil && strings.Contains(err.Error(), "abandoned") {
			// readiness/<group>/<instance>/<token>
			if parts := strings.Split(e.Execution.WorkflowId, "/"); len(parts) >= 3 {
				out[parts[2]] = true
			}
		}
	}
	return out, nil
}

func short(image string) string {
	image = strings.TrimPrefix(image, "sha256:")
	if len(image) > 12 && !strings.Contains(image, ":") {
		return image[:12]
	}
	return image
}

func errText(err error) string {
	if err == nil {
		return "done"
	}
	return "failed (" + err.Error() + ")"
}

// waitReplacementPrepared returns once a refresh's first replacement is
// being prepared: an instance nginx did not list before shows up. The
// fault tests kill something at that point.
func waitReplacementPrepared(ctx context.Context, s *fleetstack.Stack) error {
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	before, err := fleetstack.WaitMembers(wctx, s.VerifyURL, func([]string) bool { return true })
	if err != nil {
		return err
	}
	_, err = fleetstack.WaitMembers(wctx, s.VerifyURL, func(ids []string) bool { return len(ids) > len(before) })
	return err
}

// requireOneRefreshRun checks that exactly one refresh run of s's group
// started since since, and that it completed: a fault in the engine must
// neither lose the refresh nor start it twice.
func requireOneRefreshRun(t *testing.T, ctx context.Context, s *fleetstack.Stack, since time.Time) {
	t.Helper()
	q := fmt.Sprintf("WorkflowId = '%s' AND StartTime >= '%s'", workflows.RefreshWorkflowID(s.Group), since.Add(-time.Second).UTC().Format(time.RFC3339Nano))
	var states []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q})
		require.NoError(t, err, q)
		states = states[:0]
		for _, e := range resp.GetExecutions() {
			states = append(states, e.GetStatus().String())
		}
		if len(states) == 1 && states[0] == enums.WORKFLOW_EXECUTION_STATUS_COMPLETED.String() {
			return
		}
		time.Sleep(500 * time.Millisecond) // visibility is eventually consistent
	}
	t.Fatalf("want exactly one completed refresh run since %s; have %v", since.Format(time.RFC3339), states)
}
