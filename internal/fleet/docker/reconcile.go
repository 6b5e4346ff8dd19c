package dockerfleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"

	"github.com/mageflow/mageflow/internal/fleet"
)

// want is what the container of a member should be doing.
type want int

const (
	wantRunning want = iota
	wantStopped
	wantPaused
	wantGone
)

// task is the docker work for one member, planned under the state lock and
// done without it.
type task struct {
	id, group string
	planned   fleet.LifecycleState // the state the plan saw; results apply only if unchanged
	want      want
	create    bool // may create the container (launches only)
	image     string
	version   int
	spec      GroupSpec
}

// outcome is what the engine reported after a task.
type outcome struct {
	task
	reached bool   // the container is in the wanted condition
	missing bool   // no container (and not allowed to create one)
	ip      string // address on the network, when running
	err     error
}

// maxRounds bounds the plan → docker → apply rounds of one Reconcile: a
// launch without hooks goes Pending → InService in one round, a warm-pool
// launch needs a second to stop the container.
const maxRounds = 4

// Reconcile does one pass of the work Auto Scaling does in the background
// for group: it applies expired hooks' default results, starts terminate
// hooks, launches (from the warm pool first, then cold from the current
// launch template version) or scales in towards the desired capacity, keeps
// the warm pool at its size, creates/starts/stops/removes containers,
// moves launched instances into their hook's wait state (or InService) and
// notifies every new lifecycle action. Passes of one group never overlap,
// in any process; API calls are not blocked by a running pass.
func (p *Provider) Reconcile(ctx context.Context, group string) error {
	unlock, err := p.lock(group, ".reconcile")
	if err != nil {
		return err
	}
	defer unlock()
	for round := 0; round < maxRounds; round++ {
		var tasks []task
		err := p.update(group, false, func(st *groupState) error {
			tasks = st.plan(group, p.opts.Now())
			return nil
		})
		if err != nil {
			return p.wrap("Reconcile", group, err)
		}
		// An outcome that moves its instance on (a launch, a container
		// stopped into the pool, a removal) is recorded and its actions
		// notified as soon as its own docker work is done: a warm instance
		// leaving the pool (no docker work when Running, a start when
		// Stopped) must not wait for other instances' containers in the
		// same round — on AWS they are independent. The rest (addresses,
		// health of steady members) is recorded once, at the end.
		var (
			mu      sync.Mutex // changed, errs, steady; and one notify at a time
			changed bool
			errs    []error
			steady  []outcome
		)
		record := func(outs []outcome) {
			var ch bool
			err := p.update(group, false, func(st *groupState) error {
				ch = st.apply(outs, p.opts.Now())
				return nil
			})
			changed = changed || ch
			if err != nil {
				errs = append(errs, p.wrap("Reconcile", group, err))
			}
			if ch {
				_ = p.notify(ctx, group) // a failure is sent again below
			}
		}
		p.run(ctx, tasks, func(o outcome) {
			mu.Lock()
			defer mu.Unlock()
			if o.err != nil {
				errs = append(errs, fmt.Errorf("instance %s: %w", o.id, o.err))
			}
			if !advances(o.planned) {
				steady = append(steady, o)
				return
			}
			record([]outcome{o})
		})
		if len(steady) > 0 {
			record(steady)
		}
		// Also sends what an earlier pass failed to deliver.
		if nerr := p.notify(ctx, group); nerr != nil {
			return nerr
		}
		if len(errs) > 0 {
			return p.wrap("Reconcile", group, errors.Join(errs...))
		}
		if !changed {
			return nil
		}
	}
	return nil
}

// Run reconciles every group in the state directory every interval until
// ctx ends. Errors are logged and retried on the next pass: they are the
// engine's or the notification target's, and both recover on their own.
func (p *Provider) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	log := slog.Default().With("component", "dockerfleet")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		groups, err := p.Groups()
		if err != nil {
			log.Warn("list groups", "error", err)
		}
		for _, g := range groups {
			if err := p.Reconcile(ctx, g); err != nil && ctx.Err() == nil && !errors.Is(err, fleet.ErrNotFound) {
				log.Warn("reconcile", "group", g, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// live reports whether m counts towards the desired capacity.
func live(m *member) bool { return !m.State.Warm() && !m.State.Leaving() }

// pooled reports whether m is (or is becoming) part of the warm pool.
func pooled(m *member) bool {
	return (m.State.Warm() && !m.State.Leaving()) || (m.ToPool && m.State.Leaving())
}

// ready reports whether a warm member can be started into the group now.
func ready(m *member) bool {
	switch m.State {
	case fleet.StateWarmedStopped, fleet.StateWarmedRunning, fleet.StateWarmedHibernated:
		return m.Action == nil
	}
	return false
}

// advances reports whether a member planned in state s moves to another
// state once its container reached what the plan wanted (see apply).
func advances(s fleet.LifecycleState) bool {
	switch s {
	case fleet.StatePending, "Warmed:Pending", stateWarmedProceed, fleet.StateTerminatingProceed, stateWarmedTerminatingProceed:
		return true
	}
	return false
}

// plan makes Auto Scaling's decisions on the recorded state and returns
// the docker work they need.
func (st *groupState) plan(group string, now time.Time) []task {
	st.expireActions(now)
	st.startTerminations(now)
	st.replaceUnhealthy(now)
	cur, _ := st.version(st.Current)
	liveN := st.liveCount()
	fromPool := 0
	if liveN < st.Desired {
		fromPool = st.scaleOut(liveN, cur, now)
		liveN = st.Desired
	}
	if liveN > st.Desired {
		st.scaleIn(liveN, now)
	}
	st.keepWarmPool(fromPool, cur, now)
	return st.tasks(group)
}

// expireActions finishes the lifecycle actions whose deadline has passed
// with their default result.
func (st *groupState) expireActions(now time.Time) {
	for _, m := range st.Members {
		if m.Action != nil && !now.Before(m.Action.Deadline) {
			st.finish(m, m.Action.Default, true, now)
		}
	}
}

// startTerminations runs the terminate hook of terminating instances if
// there is one. Warm-pool instances terminate without it (see
// docs/fleet-docker.md).
func (st *groupState) startTerminations(now time.Time) {
	for _, m := range st.Members {
		switch m.State {
		case fleet.StateTerminating:
			if h := st.Spec.TerminateHook; h != nil {
				dest := fleet.PlaceEC2
				if m.ToPool {
					dest = fleet.PlaceWarmPool
				}
				m.State, m.Action = fleet.StateTerminatingWait, newAction(h, fleet.TransitionTerminating, fleet.PlaceGroup, dest, now)
			} else {
				m.State = fleet.StateTerminatingProceed
			}
		case stateWarmedTerminating:
			m.State = stateWarmedTerminatingProceed
		}
	}
}

// replaceUnhealthy terminates unhealthy in-service instances without
// decrement, so they are replaced.
func (st *groupState) replaceUnhealthy(now time.Time) {
	for _, m := range st.Members {
		if m.State == fleet.StateInService && m.Health == fleet.HealthUnhealthy {
			m.State = fleet.StateTerminating
			if h := st.Spec.TerminateHook; h != nil {
				m.State, m.Action = fleet.StateTerminatingWait, newAction(h, fleet.TransitionTerminating, fleet.PlaceGroup, fleet.PlaceEC2, now)
			} else {
				m.State = fleet.StateTerminatingProceed
			}
		}
	}
}

// liveCount is the number of live members.
func (st *groupState) liveCount() int {
	var n int
	for _, m := range st.Members {
		if live(m) {
			n++
		}
	}
	return n
}

// scaleOut brings the liveN live members up to the desired capacity: from
// the warm pool first (current version, then oldest), then new instances
// of cur. It returns how many came from the pool.
func (st *groupState) scaleOut(liveN int, cur version, now time.Time) (fromPool int) {
	var warm []*member
	for _, m := range st.Members {
		if ready(m) {
			warm = append(warm, m)
		}
	}
	sort.SliceStable(warm, func(i, j int) bool {
		if (warm[i].Version == st.Current) != (warm[j].Version == st.Current) {
			return warm[i].Version == st.Current
		}
		return warm[i].Created.Before(warm[j].Created)
	})
	for _, m := range warm {
		if liveN >= st.Desired {
			break
		}
		m.State, m.Origin = fleet.StatePending, fleet.PlaceWarmPool
		liveN++
		fromPool++
	}
	for ; liveN < st.Desired; liveN++ {
		st.Members = append(st.Members, &member{
			ID: newInstanceID(), State: fleet.StatePending, Health: fleet.HealthHealthy,
			Version: cur.Number, Image: cur.Image, Created: now, Origin: fleet.PlaceEC2,
		})
	}
	return fromPool
}

// scaleIn terminates live members beyond the desired capacity: oldest
// launch template version first, then oldest instance. With a warm pool
// that reuses on scale-in they go back to the pool.
func (st *groupState) scaleIn(liveN int, now time.Time) {
	victims := make([]*member, 0, liveN)
	for _, m := range st.Members {
		if live(m) {
			victims = append(victims, m)
		}
	}
	sort.SliceStable(victims, func(i, j int) bool {
		if victims[i].Version != victims[j].Version {
			return victims[i].Version < victims[j].Version
		}
		return victims[i].Created.Before(victims[j].Created)
	})
	reuse := st.WarmPool != nil && st.WarmPool.ReuseOnScaleIn
	for _, m := range victims[:liveN-st.Desired] {
		m.Action, m.ToPool = nil, reuse
		m.State = fleet.StateTerminating
		if h := st.Spec.TerminateHook; h != nil {
			dest := fleet.PlaceEC2
			if reuse {
				dest = fleet.PlaceWarmPool
			}
			m.State, m.Action = fleet.StateTerminatingWait, newAction(h, fleet.TransitionTerminating, fleet.PlaceGroup, dest, now)
		} else {
			m.State = fleet.StateTerminatingProceed
		}
	}
}

// warmPoolTarget is the warm pool's size: max(MinSize, prepared capacity −
// desired), 0 without a pool.
func (st *groupState) warmPoolTarget() int {
	wp := st.WarmPool
	if wp == nil {
		return 0
	}
	prepared := wp.MaxPreparedCapacity
	if prepared == 0 {
		prepared = st.Max
	}
	return max(wp.MinSize, prepared-st.Desired)
}

// keepWarmPool refills the warm pool up to its target with instances of
// cur, or terminates the spare ready ones (oldest version first).
func (st *groupState) keepWarmPool(fromPool int, cur version, now time.Time) {
	target := st.warmPoolTarget()
	var pool []*member
	for _, m := range st.Members {
		if pooled(m) {
			pool = append(pool, m)
		}
	}
	// The refill waits for the next round when instances leave the pool
	// in this one: on one machine its create + start would compete with
	// their start for the engine (AWS refills on other hardware).
	for n := len(pool); n < target && fromPool == 0; n++ {
		st.Members = append(st.Members, &member{
			ID: newInstanceID(), State: "Warmed:Pending", Health: fleet.HealthHealthy,
			Version: cur.Number, Image: cur.Image, Created: now, Origin: fleet.PlaceEC2,
		})
	}
	if len(pool) > target {
		var spare []*member
		for _, m := range pool {
			if ready(m) {
				spare = append(spare, m)
			}
		}
		sort.SliceStable(spare, func(i, j int) bool { return spare[i].Version < spare[j].Version })
		for _, m := range spare[:min(len(spare), len(pool)-target)] {
			m.State = stateWarmedTerminatingProceed
		}
	}
}

// poolWant is what a pooled instance should be: running, paused
// (hibernated) or stopped.
func (st *groupState) poolWant() want {
	if st.WarmPool != nil {
		switch st.WarmPool.State {
		case fleet.PoolRunning:
			return wantRunning
		case fleet.PoolHibernated:
			return wantPaused
		}
	}
	return wantStopped
}

// tasks are the engine's work for the planned states: one per member the
// engine has to create, run, pause, stop or remove.
func (st *groupState) tasks(group string) []task {
	poolWant := st.poolWant()
	tasks := make([]task, 0, len(st.Members))
	for _, m := range st.Members {
		t := task{id: m.ID, group: group, planned: m.State, image: m.Image, version: m.Version, spec: st.Spec}
		switch m.State {
		case fleet.StatePending, "Warmed:Pending":
			t.want, t.create = wantRunning, true
		case fleet.StatePendingWait, fleet.StateInService, fleet.StateTerminatingWait, fleet.StateWarmedPendingWait:
			t.want = wantRunning
		case fleet.StateWarmedRunning:
			t.want = wantRunning
		case fleet.StateWarmedStopped:
			t.want = wantStopped
		case fleet.StateWarmedHibernated:
			t.want = wantPaused
		case stateWarmedProceed:
			t.want = poolWant
		case fleet.StateTerminatingProceed:
			t.want = wantGone
			if m.ToPool {
				t.want = poolWant
			}
		case stateWarmedTerminatingProceed:
			t.want = wantGone
		default:
			continue
		}
		tasks = append(tasks, t)
	}
	return tasks
}

// apply records what the engine did and advances the states it confirms.
// It reports whether anything changed that may need another round.
func (st *groupState) apply(outs []outcome, now time.Time) bool {
	changed := false
	for _, o := range outs {
		m := st.member(o.id)
		if m == nil || o.err != nil {
			continue
		}
		if o.ip != "" {
			m.IP = o.ip
		}
		if m.State != o.planned {
			changed = true // an API call moved it meanwhile: plan again
			continue
		}
		if o.missing || !o.reached {
			if m.State == fleet.StateInService && m.Health != fleet.HealthUnhealthy {
				m.Health = fleet.HealthUnhealthy
				changed = true
			}
			continue
		}
		switch m.State {
		case fleet.StatePending:
			m.State = fleet.StateInService
			if h := st.Spec.LaunchHook; h != nil {
				m.State, m.Action = fleet.StatePendingWait, newAction(h, fleet.TransitionLaunching, m.Origin, fleet.PlaceGroup, now)
			}
			changed = true
		case "Warmed:Pending":
			m.State = stateWarmedProceed
			if h := st.Spec.LaunchHook; h != nil {
				m.State, m.Action = fleet.StateWarmedPendingWait, newAction(h, fleet.TransitionLaunching, fleet.PlaceEC2, fleet.PlaceWarmPool, now)
			}
			changed = true
		case stateWarmedProceed:
			m.State = poolState(st)
			changed = true
		case fleet.StateTerminatingProceed:
			if m.ToPool {
				m.State, m.ToPool, m.Origin, m.IP = poolState(st), false, "", ""
			} else {
				st.remove(m.ID)
			}
			changed = true
		case stateWarmedTerminatingProceed:
			st.remove(m.ID)
			changed = true
		}
		if m.State.Warm() && m.State != fleet.StateWarmedRunning && m.State != fleet.StateWarmedPendingWait {
			m.IP = "" // a stopped instance has no address until it starts again
		}
	}
	return changed
}

func poolState(st *groupState) fleet.LifecycleState {
	if st.WarmPool != nil {
		switch st.WarmPool.State {
		case fleet.PoolRunning:
			return fleet.StateWarmedRunning
		case fleet.PoolHibernated:
			return fleet.StateWarmedHibernated
		}
	}
	return fleet.StateWarmedStopped
}

// run does the tasks, a few at a time, and hands each outcome to done as
// soon as it is known (done may be called concurrently).
func (p *Provider) run(ctx context.Context, tasks []task, done func(outcome)) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, t := range tasks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			done(p.ensure(ctx, t))
		}()
	}
	wg.Wait()
}

// ensure brings the member's container to t.want.
func (p *Provider) ensure(ctx context.Context, t task) outcome {
	o := outcome{task: t}
	name := ContainerName(t.group, t.id)
	info, err := p.docker.ContainerInspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		switch {
		case t.want == wantGone:
			o.reached = true
			return o
		case !t.create:
			o.missing = true
			return o
		}
		if err := p.create(ctx, t, name); err != nil {
			o.err = err
			return o
		}
		info, err = p.docker.ContainerInspect(ctx, name)
	}
	if err != nil {
		o.err = fmt.Errorf("inspect %s: %w", name, err)
		return o
	}
	s := info.State
	switch t.want {
	case wantGone:
		err = p.docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
		if cerrdefs.IsNotFound(err) {
			err = nil
		}
	case wantRunning:
		switch {
		case s.Paused:
			err = p.docker.ContainerUnpause(ctx, name)
		case !s.Running && (t.create || isWarm(t.planned) || t.planned == stateWarmedProceed):
			err = p.docker.ContainerStart(ctx, name, container.StartOptions{})
		case !s.Running:
			// An instance that stopped on its own is unhealthy, not
			// restarted: Auto Scaling replaces it.
			return o
		}
	case wantStopped:
		if s.Paused {
			if err = p.docker.ContainerUnpause(ctx, name); err != nil {
				break
			}
		}
		if s.Running {
			err = p.docker.ContainerStop(ctx, name, container.StopOptions{})
		}
	case wantPaused:
		if !s.Running {
			if err = p.docker.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
				break
			}
		}
		if !s.Paused {
			err = p.docker.ContainerPause(ctx, name)
		}
	}
	if err != nil {
		o.err = fmt.Errorf("%s: %w", name, err)
		return o
	}
	o.reached = true
	if t.want == wantRunning || t.want == wantPaused {
		if info, err = p.docker.ContainerInspect(ctx, name); err == nil && info.NetworkSettings != nil {
			if ep := info.NetworkSettings.Networks[p.opts.Network]; ep != nil {
				o.ip = ep.IPAddress
			}
		}
		if err == nil && info.State != nil && !info.State.Running {
			o.reached = false // exited at once: its command failed
		}
	}
	return o
}

func isWarm(s fleet.LifecycleState) bool { return s.Warm() }

// create makes the member's container from its launch template version's
// image: on the group's network, named and labelled for the instance, with
// "{{ID}}" in Env and Cmd replaced by the instance id.
func (p *Provider) create(ctx context.Context, t task, name string) error {
	s := t.spec
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	labels[LabelGroup], labels[LabelInstance], labels[LabelVersion] = t.group, t.id, fmt.Sprint(t.version)
	env := append(expand(s.Env, t.id), "MAGEFLOW_GROUP="+t.group, "MAGEFLOW_INSTANCE_ID="+t.id)
	stop := s.StopTimeoutSeconds
	if stop <= 0 {
		stop = 10
	}
	var mounts []mount.Mount
	for _, spec := range s.Mounts {
		m, err := parseMount(spec)
		if err != nil {
			return err
		}
		mounts = append(mounts, m)
	}
	init := true
	cfg := &container.Config{
		Image: t.image, Hostname: t.id, Env: env, Labels: labels, StopTimeout: &stop,
	}
	if len(s.Cmd) > 0 {
		cfg.Cmd = expand(s.Cmd, t.id)
	}
	_, err := p.docker.ContainerCreate(ctx, cfg,
		&container.HostConfig{NetworkMode: container.NetworkMode(p.opts.Network), Mounts: mounts, Init: &init},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{p.opts.Network: {}}},
		nil, name)
	if err != nil && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("create %s from %s: %w", name, t.image, err)
	}
	return nil
}

// parseMount reads "src:dst[:ro]" (absolute paths) into a bind mount.
func parseMount(s string) (mount.Mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || !strings.HasPrefix(parts[0], "/") || !strings.HasPrefix(parts[1], "/") ||
		(len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw") {
		return mount.Mount{}, fmt.Errorf("mount %q must be /host/path:/container/path[:ro]", s)
	}
	return mount.Mount{Type: mount.TypeBind, Source: parts[0], Target: parts[1], ReadOnly: len(parts) == 3 && parts[2] == "ro"}, nil
}

// notify sends every action not yet delivered. A failure leaves it
// undelivered, to be sent again on the next pass (EventBridge retries too).
func (p *Provider) notify(ctx context.Context, group string) error {
	if p.opts.Notify == nil {
		return nil
	}
	st, err := p.view(group)
	if err != nil {
		return p.wrap("Reconcile", group, err)
	}
	var pending []fleet.LifecycleAction
	for _, m := range st.Members {
		if a := m.Action; a != nil && !a.Notified {
			pending = append(pending, fleet.LifecycleAction{
				Group: group, Hook: a.Hook, Token: a.Token, InstanceID: m.ID, Transition: a.Transition,
				Origin: a.Origin, Destination: a.Destination,
			})
		}
	}
	var errs []error
	for _, a := range pending {
		if err := p.opts.Notify(ctx, a); err != nil {
			errs = append(errs, fmt.Errorf("notify %s: %w", a.Key(), err))
			continue
		}
		err := p.update(group, false, func(st *groupState) error {
			if m := st.member(a.InstanceID); m != nil && m.Action != nil && m.Action.Token == a.Token {
				m.Action.Notified = true
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &fleet.Error{Op: "Notify", Subject: group, Code: "NotifyFailed", Class: fleet.ErrRetryable, Err: errors.Join(errs...)}
	}
	return nil
}
