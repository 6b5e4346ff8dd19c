package dockerfleet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/fleet"
	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
)

func onlyAction(t *testing.T, got []fleet.LifecycleAction, id string) fleet.LifecycleAction {
	t.Helper()
	for _, a := range got {
		if a.InstanceID == id {
			return a
		}
	}
	t.Fatalf("no lifecycle action notified for %s in %+v", id, got)
	return fleet.LifecycleAction{}
}

func idsIn(g *fleet.Group, state fleet.LifecycleState) []string {
	var ids []string
	for _, in := range g.Instances {
		if in.LifecycleState == state {
			ids = append(ids, in.ID)
		}
	}
	return ids
}

// Cold scale-out with a launch hook: asynchronous like AWS, held in
// Pending:Wait with a notification, CONTINUE to InService, ABANDON
// terminates and is replaced, an expired hook applies its default, a
// heartbeat extends the wait; then terminate with and without decrement
// through the terminate hook.
func TestColdScaleOutHooksAndTermination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.spec()
	s.LaunchHook = &dockerfleet.Hook{Name: "launch", Timeout: 10 * time.Minute, Default: fleet.Abandon}
	s.TerminateHook = &dockerfleet.Hook{Name: "drain", Timeout: 5 * time.Minute, Default: fleet.Continue}
	s.Env = []string{"WHO={{ID}}"}
	require.NoError(t, e.p.EnsureGroup(ctx, s))
	require.NoError(t, e.p.EnsureGroup(ctx, s), "EnsureGroup is idempotent")

	require.NoError(t, e.p.SetDesired(ctx, e.group, 2, true))
	require.Empty(t, e.describe().Instances, "SetDesired returns before instances exist, as on AWS")
	e.reconcile()
	g := e.describe()
	require.Equal(t, 2, g.Desired)
	waiting := idsIn(g, fleet.StatePendingWait)
	require.Len(t, waiting, 2, "%+v", g.Instances)
	require.Equal(t, "1", g.LaunchTemplate.Version)
	got := e.box.take()
	require.Len(t, got, 2)
	for _, in := range g.Instances {
		require.Regexp(t, `^i-[0-9a-f]{10}$`, in.ID)
		require.Equal(t, e.image, in.ImageID)
		require.Equal(t, "1", in.LaunchTemplateVersion)
		require.NotEmpty(t, in.PrivateIP)
		require.Equal(t, in.ID, get(t, in.PrivateIP), "PrivateIP reaches this very container")
		a := onlyAction(t, got, in.ID)
		require.Equal(t, fleet.TransitionLaunching, a.Transition)
		require.Equal(t, fleet.PlaceEC2, a.Origin)
		require.Equal(t, fleet.PlaceGroup, a.Destination)
		require.True(t, a.EntersService())
		require.NotEmpty(t, a.Token)
		info, ok := e.container(in.ID)
		require.True(t, ok)
		require.Contains(t, info.Config.Env, "WHO="+in.ID)
	}
	e.reconcile()
	require.Empty(t, e.box.take(), "an action is notified once")

	// CONTINUE → InService; a second completion is ErrNoActiveAction.
	keep, drop := onlyAction(t, got, waiting[0]), onlyAction(t, got, waiting[1])
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, keep, fleet.Continue))
	require.Equal(t, fleet.StateInService, e.states()[keep.InstanceID])
	err := e.p.CompleteLifecycleAction(ctx, keep, fleet.Continue)
	require.ErrorIs(t, err, fleet.ErrNoActiveAction)
	require.False(t, fleet.IsRetryable(err))
	require.ErrorIs(t, e.p.RecordLifecycleHeartbeat(ctx, keep), fleet.ErrNoActiveAction)

	// ABANDON on launch terminates; desired unchanged, so a replacement
	// launches on the next pass.
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, drop, fleet.Abandon))
	e.reconcile()
	_, exists := e.container(drop.InstanceID)
	require.False(t, exists, "abandoned instance's container is removed")
	st := e.states()
	require.NotContains(t, st, drop.InstanceID)
	require.Len(t, st, 2)
	got = e.box.take()
	require.Len(t, got, 1)
	repl := got[0]
	require.NotEqual(t, drop.InstanceID, repl.InstanceID)
	require.Equal(t, fleet.StatePendingWait, st[repl.InstanceID])

	// Heartbeat: 8 min in, heartbeat, 8 more (16 > 10): still held.
	e.clk.Add(8 * time.Minute)
	require.NoError(t, e.p.RecordLifecycleHeartbeat(ctx, repl))
	e.clk.Add(8 * time.Minute)
	e.reconcile()
	require.Equal(t, fleet.StatePendingWait, e.states()[repl.InstanceID])
	// Past the extended deadline: the default (ABANDON) applies, even to a
	// completion that arrives before Reconcile noticed.
	e.clk.Add(3 * time.Minute)
	require.ErrorIs(t, e.p.CompleteLifecycleAction(ctx, repl, fleet.Continue), fleet.ErrNoActiveAction)
	e.reconcile()
	st = e.states()
	require.NotContains(t, st, repl.InstanceID, "expired launch hook abandoned the instance")
	got = e.box.take()
	require.Len(t, got, 1, "and a replacement was launched")
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, fleet.LifecycleAction{Group: e.group, Hook: "launch", InstanceID: got[0].InstanceID}, fleet.Continue),
		"an action can be completed by instance id and hook, without token")
	require.Len(t, idsIn(e.describe(), fleet.StateInService), 2)

	// Terminate with decrement: Terminating:Wait (drain), then gone; desired 1.
	require.NoError(t, e.p.Terminate(ctx, keep.InstanceID, true))
	require.Equal(t, 1, e.describe().Desired)
	e.reconcile()
	require.Equal(t, fleet.StateTerminatingWait, e.states()[keep.InstanceID])
	got = e.box.take()
	require.Len(t, got, 1)
	drain := got[0]
	require.Equal(t, fleet.TransitionTerminating, drain.Transition)
	require.True(t, drain.LeavesService())
	require.Equal(t, fleet.StateTerminatingWait, drain.WaitState())
	_, running := e.container(keep.InstanceID)
	require.True(t, running, "the container serves until the terminate hook completes")
	require.NoError(t, e.p.Terminate(ctx, keep.InstanceID, true), "terminating a terminating instance is a no-op")
	require.Equal(t, 1, e.describe().Desired)
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, drain, fleet.Continue))
	e.reconcile()
	require.NotContains(t, e.states(), keep.InstanceID)
	_, exists = e.container(keep.InstanceID)
	require.False(t, exists)
	require.Len(t, e.describe().Instances, 1)

	// Terminate without decrement: replaced. The terminate hook's default
	// (CONTINUE) applies on expiry.
	last := e.describe().Instances[0].ID
	require.NoError(t, e.p.Terminate(ctx, last, false))
	e.reconcile()
	got = e.box.take()
	require.Len(t, got, 2, "terminate hook for the old one, launch hook for its replacement: %+v", got)
	e.clk.Add(6 * time.Minute)
	e.reconcile()
	require.NotContains(t, e.states(), last)

	// Decrement below the minimum is refused, permanently.
	require.NoError(t, e.p.SetMinMax(ctx, e.group, 1, 4))
	cur := e.describe()
	require.Equal(t, 1, cur.Desired)
	err = e.p.Terminate(ctx, cur.Instances[0].ID, true)
	require.Error(t, err)
	require.False(t, fleet.IsRetryable(err))
	require.NotErrorIs(t, err, fleet.ErrNotFound)
}

// The error classes callers rely on.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	require.NoError(t, e.p.EnsureGroup(ctx, e.spec()))

	_, err := e.p.Describe(ctx, "no-such-group")
	require.ErrorIs(t, err, fleet.ErrNotFound)
	var fe *fleet.Error
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "NotFound", fe.Code)
	require.ErrorIs(t, e.p.SetDesired(ctx, "no-such-group", 1, false), fleet.ErrNotFound)
	require.ErrorIs(t, e.p.Terminate(ctx, "i-0000000000", true), fleet.ErrNotFound)
	_, err = e.p.CreateImage(ctx, "i-0000000000", "x", fleet.ImageOptions{})
	require.ErrorIs(t, err, fleet.ErrNotFound)
	_, err = e.p.ImageState(ctx, "mageflow/fleet-nothing:here")
	require.ErrorIs(t, err, fleet.ErrNotFound)
	_, err = e.p.PublishLaunchTemplateVersion(ctx, e.group, "mageflow/fleet-nothing:here")
	require.ErrorIs(t, err, fleet.ErrNotFound)
	require.ErrorIs(t, e.p.SetLaunchTemplateVersion(ctx, e.group, fleet.LaunchTemplateRef{Version: "7"}), fleet.ErrNotFound)

	a := fleet.LifecycleAction{Group: e.group, Hook: "launch", Token: "11111111-2222-3333-4444-555555555555", InstanceID: "i-0000000000"}
	require.ErrorIs(t, e.p.CompleteLifecycleAction(ctx, a, fleet.Continue), fleet.ErrNoActiveAction)
	require.ErrorIs(t, e.p.RecordLifecycleHeartbeat(ctx, a), fleet.ErrNoActiveAction)

	err = e.p.SetDesired(ctx, e.group, 9, false)
	require.Error(t, err)
	require.False(t, fleet.IsRetryable(err))
	require.NotErrorIs(t, err, fleet.ErrNotFound)
	require.Error(t, e.p.SetMinMax(ctx, e.group, 3, 2))
	require.Error(t, e.p.CompleteLifecycleAction(ctx, a, "MAYBE"))

	bad := e.spec()
	bad.Mounts = []string{"relative:/x"}
	require.ErrorContains(t, e.p.EnsureGroup(ctx, bad), "mount")
}

// Warm pool: filled on its own (EC2 → WarmPool through the launch hook),
// instances stopped while they wait, started (not re-created) on
// scale-out with a WarmPool → AutoScalingGroup action, and refilled.
func TestWarmPool(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.spec()
	s.Max = 3
	s.WarmPool = &fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 2}
	s.LaunchHook = &dockerfleet.Hook{Name: "launch", Timeout: time.Minute, Default: fleet.Continue}
	require.NoError(t, e.p.EnsureGroup(ctx, s))
	e.reconcile()
	g := e.describe()
	require.Empty(t, g.Instances)
	require.NotNil(t, g.WarmPool)
	require.Equal(t, fleet.PoolStopped, g.WarmPool.State)
	require.Len(t, g.WarmPool.Instances, 2, "prepared capacity 2 − desired 0")
	got := e.box.take()
	require.Len(t, got, 2)
	for _, a := range got {
		require.True(t, a.EntersWarmPool(), "%+v", a)
		require.Equal(t, fleet.StateWarmedPendingWait, e.states()[a.InstanceID])
	}
	for _, in := range g.WarmPool.Instances {
		require.True(t, in.InWarmPool)
		require.NotEmpty(t, in.PrivateIP, "being prepared, so reachable")
	}
	// One completed, the other left to its timeout's default (CONTINUE).
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, got[0], fleet.Continue))
	e.clk.Add(2 * time.Minute)
	e.reconcile()
	ids := map[string]string{}
	for id, st := range e.states() {
		require.Equal(t, fleet.StateWarmedStopped, st)
		info, ok := e.container(id)
		require.True(t, ok)
		require.False(t, info.State.Running, "warm instances wait stopped")
		ids[id] = info.ID
	}
	require.Len(t, ids, 2)

	// Scale out by one: started from the pool, same container.
	require.NoError(t, e.p.SetDesired(ctx, e.group, 1, false))
	e.reconcile()
	g = e.describe()
	require.Len(t, g.Instances, 1)
	in := g.Instances[0]
	require.Contains(t, ids, in.ID, "taken from the warm pool, not launched cold")
	require.Equal(t, fleet.StatePendingWait, in.LifecycleState)
	info, _ := e.container(in.ID)
	require.Equal(t, ids[in.ID], info.ID, "started, not re-created")
	require.True(t, info.State.Running)
	require.Equal(t, in.ID, get(t, in.PrivateIP))
	got = e.box.take()
	require.Len(t, got, 1)
	require.Equal(t, fleet.PlaceWarmPool, got[0].Origin)
	require.Equal(t, fleet.PlaceGroup, got[0].Destination)
	require.True(t, got[0].EntersService())
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, got[0], fleet.Continue))
	require.Len(t, e.describe().WarmPool.Instances, 1, "pool target max(1, 2−1) = 1: no refill yet")

	// Desired 2: the last warm instance goes in, the pool refills to its
	// minimum with a new instance.
	require.NoError(t, e.p.SetDesired(ctx, e.group, 2, false))
	e.reconcile()
	g = e.describe()
	require.Len(t, g.Instances, 2)
	require.Len(t, g.WarmPool.Instances, 1)
	fresh := g.WarmPool.Instances[0].ID
	require.NotContains(t, ids, fresh, "refilled with a new instance")
	for _, a := range e.box.take() {
		require.NoError(t, e.p.CompleteLifecycleAction(ctx, a, fleet.Continue))
	}
	e.reconcile()
	require.Equal(t, fleet.StateWarmedStopped, e.states()[fresh])

	// Terminating a warm instance refills the pool.
	require.NoError(t, e.p.Terminate(ctx, fresh, false))
	e.reconcile()
	g = e.describe()
	require.Len(t, g.WarmPool.Instances, 1)
	require.NotEqual(t, fresh, g.WarmPool.Instances[0].ID)
	_, exists := e.container(fresh)
	require.False(t, exists)

	// Hibernated pools keep instances paused (memory kept).
	for _, a := range e.box.take() {
		require.NoError(t, e.p.CompleteLifecycleAction(ctx, a, fleet.Continue))
	}
	require.NoError(t, e.p.PutWarmPool(ctx, e.group, fleet.WarmPoolConfig{MinSize: 1, State: fleet.PoolHibernated}))
	require.NoError(t, e.p.Terminate(ctx, g.WarmPool.Instances[0].ID, false))
	e.reconcile()
	for _, a := range e.box.take() {
		require.NoError(t, e.p.CompleteLifecycleAction(ctx, a, fleet.Continue))
	}
	e.reconcile()
	g = e.describe()
	require.Len(t, g.WarmPool.Instances, 1, "max(1, 3−2)")
	h := g.WarmPool.Instances[0]
	require.Equal(t, fleet.StateWarmedHibernated, h.LifecycleState)
	info, _ = e.container(h.ID)
	require.True(t, info.State.Paused)
}

// Images and launch template versions: CreateImage is idempotent by name,
// publishing appends a version (idempotent for the current image), new
// instances launch from the current version, rollback points back.
func TestImagesAndVersions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.spec()
	s.Desired = 1
	require.NoError(t, e.p.EnsureGroup(ctx, s))
	e.reconcile()
	g := e.describe()
	require.Len(t, idsIn(g, fleet.StateInService), 1, "no hook: straight to InService")
	src := g.Instances[0].ID
	v1 := g.LaunchTemplate

	img, err := e.p.CreateImage(ctx, src, "refresh-1", fleet.ImageOptions{Description: "test"})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = e.cli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true}) })
	require.Equal(t, dockerfleet.ImageRepo(e.group)+":refresh-1", img)
	again, err := e.p.CreateImage(ctx, src, "refresh-1", fleet.ImageOptions{})
	require.NoError(t, err)
	require.Equal(t, img, again)
	state, err := e.p.ImageState(ctx, img)
	require.NoError(t, err)
	require.Equal(t, fleet.ImageAvailable, state)
	_, err = e.p.CreateImage(ctx, src, "bad name", fleet.ImageOptions{})
	require.Error(t, err)

	v2, err := e.p.PublishLaunchTemplateVersion(ctx, e.group, img)
	require.NoError(t, err)
	require.Equal(t, "2", v2.Version)
	require.Equal(t, img, v2.ImageID)
	require.Equal(t, v1.ID, v2.ID)
	same, err := e.p.PublishLaunchTemplateVersion(ctx, e.group, img)
	require.NoError(t, err)
	require.Equal(t, v2, same, "publishing the current image again returns the current version")
	require.Equal(t, v2, e.describe().LaunchTemplate)

	// A replacement launches from version 2; the old instance still reports 1.
	require.NoError(t, e.p.Terminate(ctx, src, false))
	e.reconcile()
	g = e.describe()
	require.Len(t, g.Instances, 1)
	require.Equal(t, img, g.Instances[0].ImageID)
	require.Equal(t, "2", g.Instances[0].LaunchTemplateVersion)

	// Rollback.
	require.NoError(t, e.p.SetLaunchTemplateVersion(ctx, e.group, v1))
	require.Equal(t, v1, e.describe().LaunchTemplate)
	require.Equal(t, "2", e.describe().Instances[0].LaunchTemplateVersion, "running instances are not replaced")
	require.ErrorIs(t, e.p.SetLaunchTemplateVersion(ctx, e.group, fleet.LaunchTemplateRef{ID: "lt-other", Version: "1"}), fleet.ErrNotFound)
	v3, err := e.p.PublishLaunchTemplateVersion(ctx, e.group, img)
	require.NoError(t, err)
	require.Equal(t, "3", v3.Version, "publishing after a rollback appends; old versions are kept")
}

// Two Provider values on one StateDir behave like two processes: one
// changes the group, the other's Run loop does the work and notifies, the
// first completes the actions; concurrent writers never lose an update.
func TestTwoProvidersShareState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.spec()
	s.LaunchHook = &dockerfleet.Hook{Name: "launch", Timeout: 10 * time.Minute}
	require.NoError(t, e.p.EnsureGroup(ctx, s))
	worker := e.provider()
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, 100*time.Millisecond) }()

	require.NoError(t, e.p.SetDesired(ctx, e.group, 4, false))
	deadline := time.Now().Add(30 * time.Second)
	var got []fleet.LifecycleAction
	for len(got) < 4 && time.Now().Before(deadline) {
		got = append(got, e.box.take()...)
		time.Sleep(50 * time.Millisecond)
	}
	require.Len(t, got, 4, "the other provider's Run launched and notified")

	// Completions through both providers at once, while Run keeps writing:
	// each is a read-modify-write of the same file, and none is lost.
	var wg sync.WaitGroup
	for i, a := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := e.p
			if i%2 == 1 {
				p = worker
			}
			require.NoError(t, p.CompleteLifecycleAction(ctx, a, fleet.Continue))
		}()
	}
	wg.Wait()
	require.Len(t, idsIn(e.describe(), fleet.StateInService), 4)
	b, err := os.ReadFile(filepath.Join(e.dir, e.group+".json"))
	require.NoError(t, err)
	require.Contains(t, string(b), `"spec"`, "state file is whole")
	require.NoError(t, e.p.SetDesired(ctx, e.group, 0, false))
	deadline = time.Now().Add(30 * time.Second)
	for len(e.describe().Instances) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	require.Empty(t, e.describe().Instances, "scale-in to 0 done by the other provider")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// A failed notification is sent again on the next pass, with the same
// token, so the receiver can dedupe (ScaleOutReadiness's workflow id).
func TestNotifyRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.spec()
	s.Desired = 1
	s.LaunchHook = &dockerfleet.Hook{Name: "launch"}
	require.NoError(t, e.p.EnsureGroup(ctx, s))
	e.box.fail = true
	err := e.p.Reconcile(ctx, e.group)
	require.Error(t, err)
	require.True(t, fleet.IsRetryable(err), "%v", err)
	require.Equal(t, fleet.StatePendingWait, e.describe().Instances[0].LifecycleState)
	e.box.fail = false
	e.reconcile()
	got := e.box.take()
	require.Len(t, got, 1)
	e.reconcile()
	require.Empty(t, e.box.take())
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, got[0], fleet.Continue))
}

// Running pools: instances wait running (agent polling, php-fpm and its
// OPcache warm) with their address, and scale-out moves one into service
// without stopping or restarting its container — the whole point of the
// Running state — with a WarmPool → AutoScalingGroup action.
func TestRunningWarmPool(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.spec()
	s.Max = 3
	s.WarmPool = &fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 1, State: fleet.PoolRunning}
	s.LaunchHook = &dockerfleet.Hook{Name: "launch", Timeout: time.Minute, Default: fleet.Continue}
	require.NoError(t, e.p.EnsureGroup(ctx, s))
	e.reconcile()
	got := e.box.take()
	require.Len(t, got, 1)
	require.True(t, got[0].EntersWarmPool(), "%+v", got[0])
	id := got[0].InstanceID
	before, ok := e.container(id)
	require.True(t, ok)
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, got[0], fleet.Continue))
	e.reconcile()

	g := e.describe()
	require.Empty(t, g.Instances)
	require.Len(t, g.WarmPool.Instances, 1)
	w := g.WarmPool.Instances[0]
	require.Equal(t, fleet.StateWarmedRunning, w.LifecycleState)
	require.NotEmpty(t, w.PrivateIP, "a running warm instance keeps its address")
	require.Equal(t, id, get(t, w.PrivateIP), "it keeps running in the pool")
	info, _ := e.container(id)
	require.True(t, info.State.Running)
	require.False(t, info.State.Paused)
	require.Equal(t, before.State.StartedAt, info.State.StartedAt, "not restarted on entering the pool")

	// Scale out: the running instance goes in as it is.
	require.NoError(t, e.p.SetDesired(ctx, e.group, 1, false))
	e.reconcile()
	g = e.describe()
	require.Len(t, g.Instances, 1)
	in := g.Instances[0]
	require.Equal(t, id, in.ID, "taken from the warm pool, not launched cold")
	require.Equal(t, fleet.StatePendingWait, in.LifecycleState)
	require.Equal(t, w.PrivateIP, in.PrivateIP)
	info, _ = e.container(id)
	require.Equal(t, before.ID, info.ID, "not re-created")
	require.True(t, info.State.Running)
	require.Equal(t, before.State.StartedAt, info.State.StartedAt, "moved into service without a restart")
	got = e.box.take()
	var out fleet.LifecycleAction
	for _, a := range got {
		if a.InstanceID == id {
			out = a
		} else {
			require.True(t, a.EntersWarmPool(), "only the refill may be notified besides: %+v", a)
		}
	}
	require.Equal(t, fleet.PlaceWarmPool, out.Origin)
	require.True(t, out.EntersService())
	require.NoError(t, e.p.CompleteLifecycleAction(ctx, out, fleet.Continue))
	e.reconcile()
	require.Equal(t, fleet.StateInService, e.states()[id])
	info, _ = e.container(id)
	require.Equal(t, before.State.StartedAt, info.State.StartedAt)
}

// slowEngine delays the engine calls match selects: an engine busy with
// other containers (a docker stop can take its whole stop timeout).
type slowEngine struct {
	next  http.RoundTripper
	match func(*http.Request) bool
	delay time.Duration
}

func (s slowEngine) RoundTrip(r *http.Request) (*http.Response, error) {
	if s.match(r) {
		time.Sleep(s.delay)
	}
	return s.next.RoundTrip(r)
}

// slowClient is a docker client on the engine's unix socket whose calls
// selected by match take delay longer.
func slowClient(t *testing.T, match func(*http.Request) bool, delay time.Duration) *client.Client {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = client.DefaultDockerHost
	}
	sock := strings.TrimPrefix(host, "unix://")
	require.True(t, strings.HasPrefix(sock, "/"), "this test talks to the engine over its unix socket; DOCKER_HOST is %q", host)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithHTTPClient(&http.Client{Transport: slowEngine{next: tr, match: match, delay: delay}}), client.WithAPIVersionNegotiation())
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// A warm instance leaving a Running pool is notified (its readiness can
// start) as soon as its own container is confirmed, not after the docker
// work for other instances in the same pass — here the removal of the
// instance it replaces; the two are independent, as on AWS. Before, a
// round recorded all outcomes together, so the launch waited for the
// slowest container of the round.
func TestWarmLaunchNotWaitingForOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.spec()
	s.Max, s.Desired = 3, 1
	s.WarmPool = &fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 1, State: fleet.PoolRunning}
	require.NoError(t, e.p.EnsureGroup(ctx, s)) // no hooks: straight to InService / Warmed:Running
	e.reconcile()
	g := e.describe()
	require.Len(t, g.Instances, 1)
	require.Len(t, g.WarmPool.Instances, 1)
	old, warm := g.Instances[0].ID, g.WarmPool.Instances[0].ID
	require.Equal(t, fleet.StateWarmedRunning, g.WarmPool.Instances[0].LifecycleState)

	const delay = 3 * time.Second
	slow := slowClient(t, func(r *http.Request) bool {
		return r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/containers/")
	}, delay)
	var (
		mu       sync.Mutex
		notified = map[string]time.Duration{}
		t0       time.Time
	)
	p, err := dockerfleet.New(dockerfleet.Options{StateDir: e.dir, Network: e.network, Docker: slow, Now: e.clk.Now,
		Notify: func(_ context.Context, a fleet.LifecycleAction) error {
			mu.Lock()
			if _, ok := notified[a.InstanceID]; !ok {
				notified[a.InstanceID] = time.Since(t0)
			}
			mu.Unlock()
			return nil
		}})
	require.NoError(t, err)
	s.LaunchHook = &dockerfleet.Hook{Name: "launch", Timeout: time.Minute, Default: fleet.Continue}
	require.NoError(t, p.EnsureGroup(ctx, s))
	require.NoError(t, p.Terminate(ctx, old, false)) // replaced: the warm instance goes in
	t0 = time.Now()
	require.NoError(t, p.Reconcile(ctx, e.group))
	took := time.Since(t0)
	require.GreaterOrEqual(t, took, delay, "the pass removed the old instance through the slow engine")

	g = e.describe()
	require.Len(t, g.Instances, 1)
	require.Equal(t, warm, g.Instances[0].ID)
	require.Equal(t, fleet.StatePendingWait, g.Instances[0].LifecycleState)
	_, exists := e.container(old)
	require.False(t, exists)
	mu.Lock()
	defer mu.Unlock()
	require.Contains(t, notified, warm)
	require.Less(t, notified[warm], delay/2, "the warm launch was notified only after the old instance's removal (%s, pass %s)", notified[warm], took)
}

// The pool's refill is created only once the instances leaving the pool
// in the same pass are started: on one machine its create + start would
// compete with theirs for the engine. It still happens in that pass.
func TestRefillAfterWarmStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.spec()
	s.Max = 3
	s.WarmPool = &fleet.WarmPoolConfig{MinSize: 1, MaxPreparedCapacity: 1}
	require.NoError(t, e.p.EnsureGroup(ctx, s))
	e.reconcile()
	g := e.describe()
	require.Len(t, g.WarmPool.Instances, 1)
	warm := g.WarmPool.Instances[0].ID
	require.Equal(t, fleet.StateWarmedStopped, g.WarmPool.Instances[0].LifecycleState)

	// Starts take a second longer: without the ordering the refill would
	// be created while the warm instance is still starting.
	slow := slowClient(t, func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/start")
	}, time.Second)
	p, err := dockerfleet.New(dockerfleet.Options{StateDir: e.dir, Network: e.network, Docker: slow, Now: e.clk.Now})
	require.NoError(t, err)
	since := time.Now().Add(-time.Second)
	require.NoError(t, p.SetDesired(ctx, e.group, 1, false))
	require.NoError(t, p.Reconcile(ctx, e.group))
	until := time.Now().Add(time.Second)
	g = e.describe()
	require.Len(t, g.Instances, 1)
	require.Equal(t, warm, g.Instances[0].ID)
	require.Len(t, g.WarmPool.Instances, 1, "refilled in the same pass")
	refill := g.WarmPool.Instances[0].ID
	require.Equal(t, fleet.StateWarmedStopped, g.WarmPool.Instances[0].LifecycleState)

	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msgs, errs := e.cli.Events(ectx, events.ListOptions{
		Since: fmt.Sprint(since.Unix()), Until: fmt.Sprint(until.Unix() + 1),
		Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)), filters.Arg("label", dockerfleet.LabelGroup+"="+e.group)),
	})
	var order []string // "<action> <instance>" in engine order
	for done := false; !done; {
		select {
		case m := <-msgs:
			if m.Action == events.ActionCreate || m.Action == events.ActionStart {
				order = append(order, string(m.Action)+" "+m.Actor.Attributes[dockerfleet.LabelInstance])
			}
		case err := <-errs:
			if err != nil && !errors.Is(err, io.EOF) {
				require.NoError(t, err)
			}
			done = true
		}
	}
	// The warm instance's last start is the scale-out's (the first was its
	// preparation on entering the pool).
	iStart, iCreate := -1, slices.Index(order, "create "+refill)
	for i, ev := range order {
		if ev == "start "+warm {
			iStart = i
		}
	}
	require.GreaterOrEqual(t, iStart, 0, "events: %v", order)
	require.GreaterOrEqual(t, iCreate, 0, "events: %v", order)
	require.Less(t, iStart, iCreate, "the refill was created before the warm instance had started: %v", order)
}
