package workflows_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/workflows"
)

// model is a modelled fleet: a group whose new instances become ready and
// join nginx a little after they launch (what ScaleOutReadiness does), and
// an nginx upstream. Every step the workflow takes is checked against the
// invariant: never fewer ready nginx members than the desired capacity the
// refresh started with, and never an old instance terminated before its
// replacement serves.
type model struct {
	t        *testing.T
	mu       sync.Mutex
	desired  int
	min, max int
	inst     map[string]*fleet.Instance
	members  map[string]bool
	next     int
	tmpl     fleet.LaunchTemplateRef
	floor    int
	failNew  bool // new instances never become ready
	violated []string
	// inject, when set, is consulted before every activity the refresh
	// calls; a non-nil error is what that activity returns.
	inject func(step string) error
}

func (m *model) fault(step string) error {
	if m.inject == nil {
		return nil
	}
	return m.inject(step)
}

func newModel(t *testing.T, n int) *model {
	m := &model{t: t, desired: n, min: n, max: n + 2, inst: map[string]*fleet.Instance{}, members: map[string]bool{}, floor: n,
		tmpl: fleet.LaunchTemplateRef{ID: "lt-1", Version: "1", ImageID: "ami-old"}}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("i-old%d", i)
		m.inst[id] = &fleet.Instance{ID: id, LifecycleState: fleet.StateInService, ImageID: "ami-old", PrivateIP: "10.0.0." + fmt.Sprint(i+1)}
		m.members[id] = true
	}
	return m
}

func (m *model) check(step string) {
	ready := 0
	for id := range m.members {
		if i := m.inst[id]; i != nil && i.LifecycleState == fleet.StateInService {
			ready++
		}
	}
	if ready < m.floor {
		m.violated = append(m.violated, fmt.Sprintf("after %s: %d ready nginx members < %d", step, ready, m.floor))
	}
}

// tick launches and readies instances up to desired (readiness = in
// service and in nginx).
func (m *model) tick() {
	count := 0
	for _, i := range m.inst {
		if i.LifecycleState != fleet.StateTerminated {
			count++
		}
	}
	for ; count < m.desired; count++ {
		m.next++
		id := fmt.Sprintf("i-new%d", m.next)
		m.inst[id] = &fleet.Instance{ID: id, LifecycleState: fleet.StatePendingWait, ImageID: m.tmpl.ImageID, PrivateIP: "10.0.1." + fmt.Sprint(m.next)}
	}
	for id, i := range m.inst {
		if i.LifecycleState == fleet.StatePendingWait && !m.failNew {
			i.LifecycleState = fleet.StateInService
			m.members[id] = true
		}
	}
}

func (m *model) group() *fleet.Group {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tick()
	g := &fleet.Group{Name: "asg", Desired: m.desired, Min: m.min, Max: m.max, LaunchTemplate: m.tmpl}
	ids := make([]string, 0, len(m.inst))
	for id := range m.inst {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if m.inst[id].LifecycleState != fleet.StateTerminated {
			g.Instances = append(g.Instances, *m.inst[id])
		}
	}
	return g
}

// activities are the model's implementations of every activity a refresh
// calls, by activity name: the workflow test environment mocks them, and
// the restart test registers them on real workers.
func (m *model) activities() map[string]any {
	acts := map[string]any{}
	add := func(name string, fn any) { acts[name] = fn }
	add("PlanGroup", func(context.Context, string) (*activities.GroupPlan, error) {
		if err := m.fault("PlanGroup"); err != nil {
			return nil, err
		}
		return &activities.GroupPlan{Group: "web", Name: "asg", App: "shop", Env: "production", Balancer: "lb1", Port: 80}, nil
	})
	add("DescribeGroup", func(context.Context, string) (*fleet.Group, error) {
		if err := m.fault("DescribeGroup"); err != nil {
			return nil, err
		}
		return m.group(), nil
	})
	add("PublishImage", func(_ context.Context, in activities.PublishImageInput) (*fleet.LaunchTemplateRef, error) {
		if err := m.fault("PublishImage"); err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.tmpl = fleet.LaunchTemplateRef{ID: "lt-1", Version: "2", ImageID: in.ImageID}
		return &m.tmpl, nil
	})
	add("SetTemplate", func(_ context.Context, in activities.SetTemplateInput) error {
		if err := m.fault("SetTemplate"); err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.tmpl = in.Ref
		return nil
	})
	add("SetMinMax", func(_ context.Context, in activities.SetMinMaxInput) error {
		if err := m.fault("SetMinMax"); err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.min, m.max = in.Min, in.Max
		return nil
	})
	add("SetDesired", func(_ context.Context, in activities.SetDesiredInput) error {
		if err := m.fault("SetDesired"); err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.desired = in.Desired
		m.check("set desired")
		return nil
	})
	add("Terminate", func(_ context.Context, in activities.TerminateInput) error {
		if err := m.fault("Terminate"); err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if i := m.inst[in.InstanceID]; i != nil {
			if m.members[in.InstanceID] {
				m.violated = append(m.violated, "terminated "+in.InstanceID+" while still in nginx")
			}
			i.LifecycleState = fleet.StateTerminated
			if in.Decrement {
				m.desired--
			}
		}
		m.check("terminate " + in.InstanceID)
		return nil
	})
	add("Members", func(context.Context, string) (*agent.MembersResult, error) {
		if err := m.fault("Members"); err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		var out agent.MembersResult
		for id := range m.members {
			out.Members = append(out.Members, agent.Member{ID: id})
		}
		return &out, nil
	})
	add("SetMembers", func(_ context.Context, in agent.SetMembersInput) (*agent.MembersResult, error) {
		if err := m.fault("SetMembers"); err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, a := range in.Add {
			m.members[a.ID] = true
		}
		for _, id := range in.Remove {
			delete(m.members, id)
		}
		m.check("nginx change")
		return &agent.MembersResult{Changed: true}, nil
	})
	add("Drain", func(context.Context, agent.DrainInput) error { return m.fault("Drain") })
	return acts
}

func (m *model) wire(env *testsuite.TestWorkflowEnvironment) {
	for name, fn := range m.activities() {
		env.OnActivity(name, mock.Anything, mock.Anything).Return(fn)
	}
}

func refreshEnv(t *testing.T, n int) (*testsuite.TestWorkflowEnvironment, *model) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var f *activities.FleetActivities
	var lb *agent.LBActivities
	env.RegisterActivity(f)
	env.RegisterActivity(lb)
	env.RegisterWorkflow(workflows.WarmPoolImageRefresh)
	m := newModel(t, n)
	m.wire(env)
	return env, m
}

func TestRefreshKeepsCapacity(t *testing.T) {
	for _, batch := range []int{1, 2} {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			env, m := refreshEnv(t, 3)
			env.ExecuteWorkflow(workflows.WarmPoolImageRefresh, workflows.RefreshInput{Group: "web", ImageID: "ami-new", Batch: batch, Poll: time.Second})
			require.NoError(t, env.GetWorkflowError())
			var res workflows.RefreshResult
			require.NoError(t, env.GetWorkflowResult(&res))
			require.ElementsMatch(t, []string{"i-old0", "i-old1", "i-old2"}, res.Replaced)
			require.Empty(t, m.violated)
			g := m.group()
			require.Equal(t, 3, g.Desired)
			require.Equal(t, 3, g.Min, "bounds restored")
			for _, i := range g.Instances {
				require.Equal(t, "ami-new", i.ImageID)
			}
		})
	}
}

func TestRefreshUndoesWhenReplacementsNeverServe(t *testing.T) {
	env, m := refreshEnv(t, 2)
	m.failNew = true
	env.ExecuteWorkflow(workflows.WarmPoolImageRefresh, workflows.RefreshInput{Group: "web", ImageID: "ami-new", Poll: 10 * time.Second, ReadyTimeout: time.Minute})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "not serving")
	require.Empty(t, m.violated)
	g := m.group()
	require.Equal(t, "ami-old", g.LaunchTemplate.ImageID, "launch template restored")
	require.Equal(t, 2, g.Desired, "group back to its size")
	for _, i := range g.Instances {
		require.Equal(t, fleet.StateInService, i.LifecycleState, "only the old instances remain: %v", i.ID)
	}
}

func TestRefreshTakesAnImageWhenNoneGiven(t *testing.T) {
	env, m := refreshEnv(t, 2)
	var f *activities.FleetActivities
	polls := 0
	env.OnActivity(f.CreateImage, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CreateImageInput) (string, error) {
		require.Equal(t, "i-old0", in.InstanceID)
		return "ami-taken", nil
	})
	env.OnActivity(f.ImageState, mock.Anything, mock.Anything).Return(func(context.Context, activities.ImageStateInput) (fleet.ImageState, error) {
		polls++
		if polls < 3 {
			return fleet.ImagePending, nil
		}
		return fleet.ImageAvailable, nil
	})
	env.ExecuteWorkflow(workflows.WarmPoolImageRefresh, workflows.RefreshInput{Group: "web", Poll: time.Second})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 3, polls, "waits until the image is available")
	require.Empty(t, m.violated)
	for _, i := range m.group().Instances {
		require.Equal(t, "ami-taken", i.ImageID)
	}
}
