package workflows_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/workflows"
)

// injector numbers every activity call of a refresh and fails the one
// whose number is at, once: permanently (non-retryable) or transiently (a
// plain error the retry policy absorbs).
type injector struct {
	mu        sync.Mutex
	n, at     int
	transient bool
	failed    string
}

func (f *injector) inject(step string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.n != f.at {
		return nil
	}
	f.failed = step
	if f.transient {
		return fmt.Errorf("injected transient failure at call %d (%s)", f.n, step)
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("injected failure at call %d (%s)", f.n, step), activities.ErrFleet, nil)
}

// TestRefreshInvariantUnderInjectedFailures fails every activity call of a
// refresh in turn, permanently and transiently. Whatever fails, the
// invariant holds after every step (never fewer ready nginx members than
// the desired capacity; no old instance terminated while in nginx), and the
// group ends consistent: a transient failure is absorbed and the refresh
// completes; a permanent one leaves the group at its size, every live
// instance serving from nginx, and the old launch template back unless the
// refresh had finished replacing.
func TestRefreshInvariantUnderInjectedFailures(t *testing.T) {
	const size, batch = 3, 1
	// A clean run says how many calls there are to fail.
	env, m := refreshEnv(t, size)
	clean := &injector{}
	m.inject = clean.inject
	env.ExecuteWorkflow(workflows.WarmPoolImageRefresh, workflows.RefreshInput{Group: "web", ImageID: "ami-new", Batch: batch, Poll: time.Second})
	require.NoError(t, env.GetWorkflowError())
	require.Empty(t, m.violated)
	calls := clean.n
	require.Greater(t, calls, 10, "a refresh of %d instances makes more calls than that", size)

	for _, transient := range []bool{false, true} {
		for at := 1; at <= calls; at++ {
			name := fmt.Sprintf("permanent/call%02d", at)
			if transient {
				name = fmt.Sprintf("transient/call%02d", at)
			}
			t.Run(name, func(t *testing.T) {
				env, m := refreshEnv(t, size)
				inj := &injector{at: at, transient: transient}
				m.inject = inj.inject
				env.ExecuteWorkflow(workflows.WarmPoolImageRefresh, workflows.RefreshInput{Group: "web", ImageID: "ami-new", Batch: batch, Poll: time.Second, ReadyTimeout: time.Minute})
				werr := env.GetWorkflowError()
				require.Empty(t, m.violated, "failure injected into %s", inj.failed)

				m.inject = nil
				g := m.group()
				require.Equal(t, size, g.Desired, "group back at its size after a failure in %s (err %v)", inj.failed, werr)
				require.Equal(t, size, g.Min, "bounds restored")
				served := 0
				for _, i := range g.Instances {
					require.Equal(t, fleet.StateInService, i.LifecycleState, "instance %s", i.ID)
					if m.members[i.ID] {
						served++
					}
				}
				require.Equal(t, len(g.Instances), served, "every live instance serves (none left out of nginx): failure in %s", inj.failed)
				require.Len(t, g.Instances, size, "no extra instances left behind: failure in %s", inj.failed)
				if transient {
					require.NoError(t, werr, "a transient failure in %s is retried", inj.failed)
				}
				if werr == nil {
					for _, i := range g.Instances {
						require.Equal(t, "ami-new", i.ImageID)
					}
				}
			})
		}
	}
}
