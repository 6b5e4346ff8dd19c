package workflows_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/workflows"
)

// TestRefreshResumesAfterWorkerRestart runs a refresh on a real Temporal
// server (a dev server, or the cluster under make test-cluster) against
// the modelled fleet, stops every worker in the middle of it (right
// after the first replacement joined nginx, before the old instance is
// removed), and starts fresh workers: they replay the history,
// continue where the refresh was, and finish it without launching an
// instance more than a refresh needs (one replacement per old instance).
func TestRefreshResumesAfterWorkerRestart(t *testing.T) {
	c := temporalClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const size = 3
	m := newModel(t, size)
	// The restart point: the first time an old instance is taken out of
	// nginx, the call fails as a dying worker's would, and the test stops
	// the workers before anything else can run.
	restart := make(chan struct{})
	var once sync.Once
	m.inject = func(step string) error {
		m.mu.Lock()
		n := len(m.members)
		m.mu.Unlock()
		if step != "SetMembers" || n <= size {
			return nil
		}
		crashed := false
		once.Do(func() { close(restart); crashed = true })
		if crashed {
			return errors.New("worker killed mid-step")
		}
		return nil
	}
	const queue = "refresh-restart-test"
	start := func() []worker.Worker {
		var ws []worker.Worker
		for _, q := range []string{queue, agent.HostTaskQueue("lb1")} {
			w := worker.New(c, q, worker.Options{})
			if q == queue {
				w.RegisterWorkflow(workflows.WarmPoolImageRefresh)
			}
			for name, fn := range m.activities() {
				w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
			}
			require.NoError(t, w.Start())
			ws = append(ws, w)
		}
		return ws
	}
	ws := start()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.RefreshWorkflowID("web"), TaskQueue: queue},
		workflows.WarmPoolImageRefresh, workflows.RefreshInput{Group: "web", ImageID: "ami-new", Batch: 1, Poll: 200 * time.Millisecond})
	require.NoError(t, err)

	select {
	case <-restart:
	case <-ctx.Done():
		t.Fatal("the refresh never reached the restart point")
	}
	for _, w := range ws {
		w.Stop()
	}
	m.mu.Lock()
	launchedBefore := m.next
	m.mu.Unlock()
	require.Equal(t, 1, launchedBefore, "one replacement launched before the restart")

	ws = start()
	defer func() {
		for _, w := range ws {
			w.Stop()
		}
	}()
	var res workflows.RefreshResult
	require.NoError(t, run.Get(ctx, &res), "the refresh completes after the restart")
	require.ElementsMatch(t, []string{"i-old0", "i-old1", "i-old2"}, res.Replaced)
	require.Len(t, res.Added, size)

	m.mu.Lock()
	defer m.mu.Unlock()
	require.Empty(t, m.violated)
	require.Equal(t, size, m.next, "exactly one replacement per old instance was ever launched")
	live := 0
	for _, i := range m.inst {
		if i.LifecycleState != fleet.StateTerminated {
			live++
			require.Equal(t, "ami-new", i.ImageID)
		}
	}
	require.Equal(t, size, live)
}
