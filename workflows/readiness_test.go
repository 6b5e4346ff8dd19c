package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/workflows"
)

type readinessRig struct {
	env       *testsuite.TestWorkflowEnvironment
	completed []fleet.Result
	added     []string
	removed   []string
	drained   []string
	prepared  []string
}

func newReadinessRig(t *testing.T, healthy bool) *readinessRig {
	return newReadinessRigWith(t, healthy, 0)
}

// newReadinessRigWith delays Prepare's answer by prepareAfter on the
// workflow clock (an agent that took the step and went away).
func newReadinessRigWith(t *testing.T, healthy bool, prepareAfter time.Duration) *readinessRig {
	var s testsuite.WorkflowTestSuite
	r := &readinessRig{env: s.NewTestWorkflowEnvironment()}
	var f *activities.FleetActivities
	var lb *agent.LBActivities
	var h *agent.HostActivities
	var d *activities.DeployActivities
	for _, a := range []any{f, lb, h, d} {
		r.env.RegisterActivity(a)
	}
	r.env.RegisterWorkflow(workflows.ScaleOutReadiness)
	r.env.OnActivity(f.PlanGroup, mock.Anything, mock.Anything).Return(&activities.GroupPlan{Group: "web", Name: "asg", App: "shop", Env: "production", Balancer: "lb1", Port: 80}, nil)
	r.env.OnActivity(d.CheckAgents, mock.Anything, mock.Anything).Return(nil)
	r.env.OnActivity(f.ReleaseForInstance, mock.Anything, mock.Anything).Return(&release.Meta{ID: "9-abcdef0", BuildNumber: 9}, nil)
	r.env.OnActivity(h.Prepare, mock.Anything, mock.Anything).After(prepareAfter).Return(func(_ context.Context, in agent.PrepareInput) (*agent.PrepareResult, error) {
		r.prepared = append(r.prepared, in.Host+":"+in.ReleaseID)
		return &agent.PrepareResult{}, nil
	})
	r.env.OnActivity(h.Switch, mock.Anything, mock.Anything).Return(&agent.SwitchResult{}, nil)
	r.env.OnActivity(h.ReloadPHP, mock.Anything, mock.Anything).Return(&agent.PHPResult{}, nil)
	r.env.OnActivity(h.Warm, mock.Anything, mock.Anything).Return(nil)
	hr := &agent.HealthResult{}
	if !healthy {
		hr.Failures = []string{"/ answered 500"}
	}
	r.env.OnActivity(h.Health, mock.Anything, mock.Anything).Return(hr, nil)
	r.env.OnActivity(f.DescribeGroup, mock.Anything, mock.Anything).Return(&fleet.Group{Name: "asg", Instances: []fleet.Instance{{ID: "i-1", PrivateIP: "10.0.0.7", LifecycleState: fleet.StatePendingWait}}}, nil)
	r.env.OnActivity(lb.SetMembers, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.SetMembersInput) (*agent.MembersResult, error) {
		for _, m := range in.Add {
			r.added = append(r.added, m.ID+"@"+m.Addr)
		}
		r.removed = append(r.removed, in.Remove...)
		return &agent.MembersResult{Changed: true}, nil
	})
	r.env.OnActivity(lb.Drain, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.DrainInput) error {
		r.drained = append(r.drained, in.ID)
		return nil
	})
	r.env.OnActivity(f.CompleteLifecycle, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CompleteInput) (string, error) {
		r.completed = append(r.completed, in.Result)
		return "completed", nil
	})
	r.env.OnActivity(f.LifecycleHeartbeat, mock.Anything, mock.Anything).Return(nil).Maybe()
	return r
}

func action(transition, origin, dest string) fleet.LifecycleAction {
	return fleet.LifecycleAction{Group: "asg", Hook: "launch", Token: "tok-1", InstanceID: "i-1", Transition: transition, Origin: origin, Destination: dest}
}

func TestReadinessAddsToNginxOnlyWhenReady(t *testing.T) {
	r := newReadinessRig(t, true)
	r.env.ExecuteWorkflow(workflows.ScaleOutReadiness, workflows.ReadinessInput{Group: "web", Action: action("autoscaling:EC2_INSTANCE_LAUNCHING", "EC2", "AutoScalingGroup")})
	require.NoError(t, r.env.GetWorkflowError())
	require.Equal(t, []string{"i-1:9-abcdef0"}, r.prepared, "the instance gets the environment's release")
	require.Equal(t, []string{"i-1@10.0.0.7:80"}, r.added)
	require.Equal(t, []fleet.Result{fleet.Continue}, r.completed)
}

func TestReadinessAbandonsUnhealthyInstance(t *testing.T) {
	r := newReadinessRig(t, false)
	r.env.ExecuteWorkflow(workflows.ScaleOutReadiness, workflows.ReadinessInput{Group: "web", Action: action("autoscaling:EC2_INSTANCE_LAUNCHING", "EC2", "AutoScalingGroup")})
	err := r.env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "abandoned")
	require.Empty(t, r.added, "an unhealthy instance never receives traffic")
	require.Equal(t, []fleet.Result{fleet.Abandon}, r.completed)
}

func TestReadinessWarmPoolEntryPreparesWithoutNginx(t *testing.T) {
	r := newReadinessRig(t, true)
	r.env.ExecuteWorkflow(workflows.ScaleOutReadiness, workflows.ReadinessInput{Group: "web", Action: action("autoscaling:EC2_INSTANCE_LAUNCHING", "EC2", "WarmPool")})
	require.NoError(t, r.env.GetWorkflowError())
	require.Equal(t, []string{"i-1:9-abcdef0"}, r.prepared)
	require.Empty(t, r.added)
	require.Equal(t, []fleet.Result{fleet.Continue}, r.completed)
}

func TestReadinessScaleInDrainsFirst(t *testing.T) {
	r := newReadinessRig(t, true)
	r.env.ExecuteWorkflow(workflows.ScaleOutReadiness, workflows.ReadinessInput{Group: "web", Action: action("autoscaling:EC2_INSTANCE_TERMINATING", "AutoScalingGroup", "EC2")})
	require.NoError(t, r.env.GetWorkflowError())
	require.Equal(t, []string{"i-1"}, r.removed)
	require.Equal(t, []string{"i-1"}, r.drained)
	require.Empty(t, r.prepared)
	require.Equal(t, []fleet.Result{fleet.Continue}, r.completed)
}

func TestReadinessAbandonsWhenAStepNeverFinishes(t *testing.T) {
	// The instance's agent took the step and went away: the step never
	// returns within the readiness limit.
	r := newReadinessRigWith(t, true, 2*time.Hour)
	r.env.ExecuteWorkflow(workflows.ScaleOutReadiness, workflows.ReadinessInput{Group: "web", ReadyTimeout: 30 * time.Minute,
		Action: action("autoscaling:EC2_INSTANCE_LAUNCHING", "EC2", "AutoScalingGroup")})
	err := r.env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "not ready within 30m0s")
	require.Empty(t, r.added, "never in nginx")
	require.Equal(t, []fleet.Result{fleet.Abandon}, r.completed)
}

func TestReadinessWarmPoolTerminationContinuesWithoutChecks(t *testing.T) {
	r := newReadinessRig(t, true)
	r.env.ExecuteWorkflow(workflows.ScaleOutReadiness, workflows.ReadinessInput{Group: "web", Action: action("autoscaling:EC2_INSTANCE_TERMINATING", "WarmPool", "EC2")})
	require.NoError(t, r.env.GetWorkflowError())
	require.Empty(t, r.prepared, "a pooled instance on its way out is not prepared")
	require.Empty(t, r.added)
	require.Empty(t, r.removed)
	require.Equal(t, []fleet.Result{fleet.Continue}, r.completed)
}

func TestReadinessWorkflowIDJoinsDuplicates(t *testing.T) {
	a := action("autoscaling:EC2_INSTANCE_LAUNCHING", "EC2", "AutoScalingGroup")
	require.Equal(t, workflows.ReadinessWorkflowID(a), workflows.ReadinessWorkflowID(a))
	b := a
	b.Token = "tok-2"
	require.NotEqual(t, workflows.ReadinessWorkflowID(a), workflows.ReadinessWorkflowID(b))
}
