// Command benchfleet measures scaling on the docker fleet provider with the
// stack the fleet end-to-end tests use (test/fleetstack): a group of 3
// instances with a warm pool of 1 behind a real nginx on this machine, the
// control worker (workflows, fleet activities, the provider's controller)
// as its own process, and a bounded load on the balancer.
//
//   - scale-out: from the request (SetDesired) to the first request a new
//     instance serves through nginx, per kind (-kinds): warm-stopped (a
//     stopped pool container started: the instance boots again, but its
//     release is already prepared), warm-running (a running pool
//     container moved into service: no boot, agent already polling,
//     php-fpm and OPcache warm) and cold (a new container); and the part
//     of it that is mageflow's own orchestration: the total minus the
//     instance's boot (container start to its agent polling) and the
//     readiness checks (prepare, switch, PHP reload, warm-up, health);
//   - a refresh of the 3 instances to a new image: total time, failed
//     requests, fewest members nginx served.
//
// It starts its own Temporal dev server ($TEMPORAL_CLI or ./bin/temporal)
// and needs Docker with the instance image
// (internal/fleet/docker/image/build.sh), nginx-light, php-cli and git.
// Run from the module root: go run ./test/benchfleet
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/fleet"
	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
	"github.com/mageflow/mageflow/test/fleetstack"
	"github.com/mageflow/mageflow/workflows"
)

func main() {
	var (
		reps    = flag.Int("reps", 3, "scale-outs of each kind")
		kindsF  = flag.String("kinds", "warm-stopped,warm-running,cold", "kinds of scale-out, in order: warm-stopped (pool state Stopped), warm-running (Running), warm-hibernated (Hibernated: paused containers), cold (no pool)")
		clients = flag.Int("clients", 4, "concurrent load clients")
		pause   = flag.Duration("pause", 5*time.Millisecond, "pause of each client between requests")
		work    = flag.String("dir", "var/bench/fleet", "work directory (emptied first)")
		keep    = flag.Bool("keep", false, "keep the work directory (config, logs) for a look afterwards")
	)
	flag.Parse()
	// Ctrl-C still removes the containers and stops the daemons.
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, 15*time.Minute)
	defer cancel()
	_ = os.RemoveAll(*work)
	kinds := strings.Split(*kindsF, ",")
	for _, k := range kinds {
		if _, n := kindPool(k); n < 0 {
			fmt.Fprintf(os.Stderr, "benchfleet: unknown kind %q in -kinds (use warm-stopped, warm-running, warm-hibernated, cold)\n", k)
			os.Exit(2)
		}
	}
	err := run(ctx, kinds, *reps, *clients, *pause, *work)
	if !*keep {
		_ = os.RemoveAll(*work)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchfleet: %v (run with -keep to look at %s)\n", err, *work)
		os.Exit(1)
	}
}

type bench struct {
	s       *fleetstack.Stack
	clients int
	pause   time.Duration
}

func run(ctx context.Context, kinds []string, reps, clients int, pause time.Duration, work string) error {
	dir, err := filepath.Abs(work)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dev, err := deploystack.StartDevServer(ctx)
	if err != nil {
		return err
	}
	defer dev.Stop()
	s, err := startStack(ctx, dir, dev.FrontendHostPort())
	if err != nil {
		return err
	}
	defer s.Close()
	b := &bench{s: s, clients: clients, pause: pause}
	results, err := b.scaleOuts(ctx, kinds, reps)
	if err != nil {
		return err
	}
	if err := b.setPool(ctx, fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 4, State: fleet.PoolStopped}, 1); err != nil {
		return err
	}
	if err := b.waitPool(ctx, fleet.PoolStopped, 1); err != nil {
		return err
	}
	ref, err := b.refresh(ctx)
	if err != nil {
		return err
	}
	printScaleOuts(kinds, results)
	printMedians(kinds, results)
	fmt.Printf("\nRefresh of 3 instances (batch 1, warm pool 1) under load: %s total, %s, nginx members min %d (desired 3), %d instances launched\n",
		sec(ref.took), ref.load, ref.minMembers, ref.launched)
	return nil
}

// startStack builds the static worker and starts the fleet stack: 3
// instances and a Stopped warm pool of 1 behind nginx.
func startStack(ctx context.Context, dir, temporal string) (*fleetstack.Stack, error) {
	bin, err := fleetstack.BuildStaticWorker(ctx, dir)
	if err != nil {
		return nil, err
	}
	agentBin, err := fleetstack.BuildStaticAgent(ctx, dir)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	s, err := fleetstack.Start(ctx, fleetstack.Options{
		Dir: filepath.Join(dir, "stack"), Temporal: temporal, Queue: "bench-fleet",
		Desired: 3, WarmPool: 1, WorkerBin: bin, AgentBin: agentBin,
		Log: func(f string, a ...any) { fmt.Printf("  "+f+"\n", a...) },
	})
	if err != nil {
		return nil, err
	}
	fmt.Printf("stack up in %s: group %s, 3 instances + warm pool of 1 behind nginx %s\n\n", time.Since(t0).Round(time.Millisecond), s.GroupName, s.BalancerURL)
	return s, nil
}

// scaleOuts measures reps scale-outs of each kind. The stack starts with a
// Stopped pool of 1. Each kind gets its own pool: drain the pool, then (for
// warm kinds) put the new one and wait until its instance went through the
// warm-pool entry readiness.
func (b *bench) scaleOuts(ctx context.Context, kinds []string, reps int) (map[string][]scaleOut, error) {
	results := map[string][]scaleOut{}
	for _, kind := range kinds {
		pool, n := kindPool(kind)
		if err := b.setPool(ctx, pool, n); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		for i := 0; i < reps; i++ {
			if err := b.waitPool(ctx, pool.State, n); err != nil {
				return nil, err
			}
			r, err := b.scaleOut(ctx, kind)
			if err != nil {
				return nil, fmt.Errorf("%s scale-out %d: %w", kind, i+1, err)
			}
			results[kind] = append(results[kind], r)
			if err := b.scaleIn(ctx); err != nil {
				return nil, err
			}
		}
	}
	return results, nil
}

// printScaleOuts prints every scale-out measured, kind by kind.
func printScaleOuts(kinds []string, results map[string][]scaleOut) {
	fmt.Println("\nScale-out: SetDesired(+1) → first request served by the new instance through nginx")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\ttotal\tto launch\tinstance boot\tto readiness start\tagent polls at\tprepare starts at\tprepare\tswitch+reload\twarm+health\tnginx add\tmageflow orchestration\t")
	for _, kind := range kinds {
		for _, r := range results[kind] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.kind, sec(r.total), sec(r.toLaunch), sec(r.boot), sec(r.toWorkflow),
				sec(r.agentAt), sec(r.prepareAt), sec(r.prepare), sec(r.switchReload), sec(r.checks-r.prepare-r.switchReload), sec(r.nginx), sec(r.orchestration()))
		}
	}
	tw.Flush()
}

// printMedians prints each kind's medians and its speed-up over cold.
func printMedians(kinds []string, results map[string][]scaleOut) {
	fmt.Println("\nMedians (3 runs each unless -reps says otherwise)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\ttotal\tcold/kind\tinstance boot\tchecks\tprepare\tmageflow orchestration\t")
	cold := median(results["cold"], func(r scaleOut) time.Duration { return r.total })
	for _, kind := range kinds {
		rs := results[kind]
		tot := median(rs, func(r scaleOut) time.Duration { return r.total })
		ratio := "-"
		if cold > 0 && tot > 0 {
			ratio = fmt.Sprintf("%.2f×", float64(cold)/float64(tot))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", kind, sec(tot), ratio,
			sec(median(rs, func(r scaleOut) time.Duration { return r.boot })),
			sec(median(rs, func(r scaleOut) time.Duration { return r.checks })),
			sec(median(rs, func(r scaleOut) time.Duration { return r.prepare })),
			sec(median(rs, scaleOut.orchestration)))
	}
	tw.Flush()
}

// scaleOut is one measured scale-out.
type scaleOut struct {
	kind     string
	instance string
	total    time.Duration // SetDesired → first request served by it
	// toWorkflow: SetDesired → ScaleOutReadiness started (controller,
	// container create/start, notification).
	toWorkflow time.Duration
	// toLaunch: SetDesired → the engine's first event for the instance
	// (the controller's reaction). boot: that event → its agent polling
	// (seen by the server). checks: Prepare+Switch+ReloadPHP+Warm+Health;
	// nginx: SetMembers (render, nginx -t, reload, verify).
	toLaunch, boot, checks, nginx time.Duration
	// prepare and switchReload are parts of checks: Prepare (download,
	// extract, link — or "already prepared"), Switch + ReloadPHP.
	prepare, switchReload time.Duration
	// agentAt, prepareAt: SetDesired → the agent polling, → Prepare
	// starting on it. Prepare is scheduled once CheckAgents passed; the
	// gap says how long the host's first task waited for the agent.
	agentAt, prepareAt time.Duration
}

// kindPool is the warm pool a kind of scale-out takes its instance from
// and the number of prepared instances to wait for (-1: unknown kind).
// The cold kind has no pool (MinSize 0, prepared capacity = desired).
func kindPool(kind string) (fleet.WarmPoolConfig, int) {
	switch kind {
	case "warm-stopped":
		return fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 4, State: fleet.PoolStopped}, 1
	case "warm-running":
		return fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 4, State: fleet.PoolRunning}, 1
	case "warm-hibernated":
		return fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 4, State: fleet.PoolHibernated}, 1
	case "cold":
		return fleet.WarmPoolConfig{MinSize: 0, MaxPreparedCapacity: 3, State: fleet.PoolStopped}, 0
	}
	return fleet.WarmPoolConfig{}, -1
}

// setPool puts the warm pool a kind needs. Instances already in the pool
// keep the state they were put in with, so the pool is emptied first when
// the state changes: a Running pool must not hand out a stopped instance.
func (b *bench) setPool(ctx context.Context, cfg fleet.WarmPoolConfig, n int) error {
	s := b.s
	g, err := s.Describe(ctx)
	if err != nil {
		return err
	}
	if g.WarmPool != nil && g.WarmPool.State != cfg.State && len(g.WarmPool.Instances) > 0 {
		drain := fleet.WarmPoolConfig{MinSize: 0, MaxPreparedCapacity: g.Desired, State: g.WarmPool.State}
		if err := s.Provider.PutWarmPool(ctx, s.GroupName, drain); err != nil {
			return err
		}
		if err := b.waitPool(ctx, drain.State, 0); err != nil {
			return err
		}
	}
	if err := s.Provider.PutWarmPool(ctx, s.GroupName, cfg); err != nil {
		return err
	}
	return b.waitPool(ctx, cfg.State, n)
}

// orchestration is what is neither the instance booting nor the checks.
func (r scaleOut) orchestration() time.Duration { return r.total - r.boot - r.checks }

func (b *bench) scaleOut(ctx context.Context, kind string) (scaleOut, error) {
	s := b.s
	r := scaleOut{kind: kind}
	g, err := s.Describe(ctx)
	if err != nil {
		return r, err
	}
	old := map[string]bool{}
	for _, i := range g.Instances {
		old[i.ID] = true
	}
	events := fleetstack.WatchLaunches(s.Docker, dockerfleet.LabelGroup, s.GroupName)
	defer events.Stop()
	load := deploystack.StartLoad(s.BalancerURL, b.clients, b.pause)
	defer load.Stop()
	time.Sleep(200 * time.Millisecond)

	t0 := time.Now()
	if err := s.Provider.SetDesired(ctx, s.GroupName, g.Desired+1, false); err != nil {
		return r, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	agents := watchAgents(wctx, s, events, old, t0)
	served, err := firstServedByNew(wctx, load, old, t0)
	if err != nil {
		return r, err
	}
	load.Stop()
	r.instance, r.total = served.Host, served.End().Sub(t0)

	launched := firstLaunch(events, r.instance, t0)
	agentUp := agents()[r.instance]
	run, hist, err := readiness(ctx, s, r.instance, t0)
	if err != nil {
		return r, err
	}
	r.toWorkflow = run.Sub(t0)
	r.addSpans(activitySpans(hist), t0, launched, agentUp)
	fmt.Printf("  %s scale-out: %s served its first request %s after SetDesired\n", kind, r.instance, sec(r.total))
	return r, nil
}

// errNoNewServer is the failure of a scale-out whose new instance served
// nothing within the wait.
var errNoNewServer = errors.New("no request served by a new instance within 2 minutes (is X-Mageflow-Host the instance id?)")

// firstServedByNew waits for the first request after t0 served by an
// instance not in old.
func firstServedByNew(ctx context.Context, load *deploystack.Load, old map[string]bool, t0 time.Time) (deploystack.Sample, error) {
	for {
		for _, smp := range load.Samples() {
			if smp.OK() && smp.Host != "" && !old[smp.Host] && smp.Start.After(t0) {
				return smp, nil
			}
		}
		select {
		case <-ctx.Done():
			return deploystack.Sample{}, errNoNewServer
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// firstLaunch is the engine's first event for the instance after t0 (a
// creation, or a warm container's start); zero if none.
func firstLaunch(events *fleetstack.Launches, instance string, t0 time.Time) time.Time {
	var launched time.Time
	for _, e := range append(events.All(), events.Starts()...) {
		if e.Instance == instance && e.At.After(t0) && (launched.IsZero() || e.At.Before(launched)) {
			launched = e.At
		}
	}
	return launched
}

// addSpans splits the scale-out's time by the readiness activities' spans.
// The instance's own time runs from its launch to its agent polling, as
// the Temporal server saw it.
func (r *scaleOut) addSpans(spans map[string]span, t0, launched, agentUp time.Time) {
	if agentUp.IsZero() {
		agentUp = spans["CheckAgents"].end // missed by the 50 ms poll
	}
	// A Running pool's instance is neither created nor started (a
	// Hibernated one is unpaused): no event, no boot — its processes ran
	// before.
	if !launched.IsZero() && agentUp.After(launched) {
		r.toLaunch, r.boot = launched.Sub(t0), agentUp.Sub(launched)
	}
	for _, a := range []string{"Prepare", "Switch", "ReloadPHP", "Warm", "Health"} {
		r.checks += spans[a].ran
	}
	r.prepare = spans["Prepare"].ran
	if !agentUp.IsZero() {
		r.agentAt = agentUp.Sub(t0)
	}
	if p := spans["Prepare"]; !p.end.IsZero() {
		r.prepareAt = p.end.Add(-p.ran).Sub(t0)
	}
	r.switchReload = spans["Switch"].ran + spans["ReloadPHP"].ran
	r.nginx = spans["SetMembers"].ran
}

// scaleIn returns the group to 3 and waits until nginx serves 3 and the
// terminated instance is gone.
func (b *bench) scaleIn(ctx context.Context) error {
	s := b.s
	if err := s.Provider.SetDesired(ctx, s.GroupName, 3, false); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		g, err := s.Describe(wctx)
		if err != nil {
			return err
		}
		ids, _ := fleetstack.WaitMembers(wctx, s.VerifyURL, func([]string) bool { return true })
		if len(g.Instances) == 3 && len(ids) == 3 {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("scale-in to 3 did not finish: %d instances, nginx %v", len(g.Instances), ids)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitPool waits until the warm pool holds exactly n instances, all
// prepared (through the warm-pool entry readiness) and in state.
func (b *bench) waitPool(ctx context.Context, state fleet.PoolState, n int) error {
	want := fleet.StateWarmedStopped
	switch state {
	case fleet.PoolRunning:
		want = fleet.StateWarmedRunning
	case fleet.PoolHibernated:
		want = fleet.StateWarmedHibernated
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		g, err := b.s.Describe(wctx)
		if err != nil {
			return err
		}
		got, all := 0, 0
		if g.WarmPool != nil {
			all = len(g.WarmPool.Instances)
			for _, i := range g.WarmPool.Instances {
				if i.LifecycleState == want {
					got++
				}
			}
		}
		if got == n && all == n {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("the warm pool never held %d instances in %s (%d of %d)", n, want, got, all)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type refreshResult struct {
	took       time.Duration
	load       deploystack.Summary
	minMembers int
	launched   int
}

func (b *bench) refresh(ctx context.Context) (refreshResult, error) {
	s := b.s
	var r refreshResult
	img, err := s.DeriveImage(ctx, "mageflow/fleet-bench:v2-"+s.GroupName, map[string]string{"/etc/mageflow-image": "v2\n"})
	if err != nil {
		return r, err
	}
	events := fleetstack.WatchLaunches(s.Docker, dockerfleet.LabelGroup, s.GroupName)
	defer events.Stop()
	members := fleetstack.WatchMembers(s.VerifyURL, 20*time.Millisecond)
	defer members.Stop()
	load := deploystack.StartLoad(s.BalancerURL, b.clients, b.pause)
	defer load.Stop()
	time.Sleep(300 * time.Millisecond)
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	run, err := (&start.Fleet{Client: s.Client, Config: s.Cfg}).Refresh(rctx, workflows.RefreshInput{Group: s.Group, ImageID: img, Batch: 1, Poll: time.Second})
	if err != nil {
		return r, err
	}
	if err := run.Get(rctx, nil); err != nil {
		return r, fmt.Errorf("refresh: %w", err)
	}
	r.took = time.Since(t0)
	time.Sleep(300 * time.Millisecond)
	r.load = deploystack.Summarize(load.Stop(), nil)
	r.minMembers = fleetstack.SummarizeMembers(members.Stop()).Min
	r.launched, _ = events.Count()
	return r, nil
}

// watchAgents records, for every instance the engine creates or starts
// that is not in old, when the Temporal server first lists a poller on its
// host task queue; the returned func reads the times so far.
//
// A warm-pool instance's agent polled before it was stopped: only polls
// the server received after since count.
func watchAgents(ctx context.Context, s *fleetstack.Stack, events *fleetstack.Launches, old map[string]bool, since time.Time) func() map[string]time.Time {
	var mu sync.Mutex
	seen := map[string]time.Time{}
	go func() {
		for ctx.Err() == nil {
			for _, e := range append(events.All(), events.Starts()...) {
				mu.Lock()
				_, done := seen[e.Instance]
				mu.Unlock()
				if done || old[e.Instance] || e.Instance == "" {
					continue
				}
				d, err := s.Client.DescribeTaskQueue(ctx, agent.HostTaskQueue(e.Instance), enumspb.TASK_QUEUE_TYPE_ACTIVITY)
				if err != nil {
					continue
				}
				for _, p := range d.Pollers {
					if at := p.LastAccessTime.AsTime(); at.After(since) {
						mu.Lock()
						if cur, ok := seen[e.Instance]; !ok || at.Before(cur) {
							seen[e.Instance] = at
						}
						mu.Unlock()
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() map[string]time.Time {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]time.Time{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

// readiness finds the ScaleOutReadiness run of instance started after
// since (a warm instance had one for entering the pool before) and reads
// its history.
func readiness(ctx context.Context, s *fleetstack.Stack, instance string, since time.Time) (time.Time, []*historypb.HistoryEvent, error) {
	prefix := "readiness/" + s.GroupName + "/" + instance + "/"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: "default", PageSize: 200,
			Query: fmt.Sprintf("WorkflowType = 'ScaleOutReadiness' AND TaskQueue = %q", s.Cfg.Temporal.TaskQueue),
		})
		if err != nil {
			return time.Time{}, nil, err
		}
		for _, e := range resp.Executions {
			st := e.StartTime.AsTime()
			if strings.HasPrefix(e.Execution.WorkflowId, prefix) && st.After(since) && e.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				var hist []*historypb.HistoryEvent
				it := s.Client.GetWorkflowHistory(ctx, e.Execution.WorkflowId, e.Execution.RunId, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
				for it.HasNext() {
					ev, err := it.Next()
					if err != nil {
						return time.Time{}, nil, err
					}
					hist = append(hist, ev)
				}
				return st, hist, nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, nil, errors.New("no completed ScaleOutReadiness of " + instance + " (visibility lags? look at the Web UI)")
		}
		time.Sleep(300 * time.Millisecond)
	}
}

type span struct {
	end time.Time     // completion of the activity (last attempt)
	ran time.Duration // last attempt's start → completion
}

// activitySpans maps activity type → its (last) run in the history.
func activitySpans(hist []*historypb.HistoryEvent) map[string]span {
	types := map[int64]string{}
	started := map[int64]time.Time{}
	out := map[string]span{}
	for _, ev := range hist {
		switch {
		case ev.GetActivityTaskScheduledEventAttributes() != nil:
			types[ev.EventId] = ev.GetActivityTaskScheduledEventAttributes().ActivityType.GetName()
		case ev.GetActivityTaskStartedEventAttributes() != nil:
			started[ev.GetActivityTaskStartedEventAttributes().ScheduledEventId] = ev.EventTime.AsTime()
		case ev.GetActivityTaskCompletedEventAttributes() != nil:
			id := ev.GetActivityTaskCompletedEventAttributes().ScheduledEventId
			end := ev.EventTime.AsTime()
			out[types[id]] = span{end: end, ran: end.Sub(started[id])}
		}
	}
	return out
}

func median(rs []scaleOut, f func(scaleOut) time.Duration) time.Duration {
	if len(rs) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(rs))
	for i, r := range rs {
		ds[i] = f(r)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
