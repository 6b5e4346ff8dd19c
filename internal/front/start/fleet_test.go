package start

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/workflows"
)

// startRecorder is a Temporal client that records workflow starts.
type startRecorder struct {
	client.Client
	starts []client.StartWorkflowOptions
	inputs []any
	err    error
}

func (r *startRecorder) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
	r.starts = append(r.starts, o)
	r.inputs = append(r.inputs, args...)
	if r.err != nil {
		return nil, r.err
	}
	return fakeRun{id: o.ID}, nil
}

type fakeRun struct {
	client.WorkflowRun
	id string
}

func (f fakeRun) GetID() string { return f.id }

func testConfig() *config.Config {
	return &config.Config{
		File:     "mageflow.yaml",
		Temporal: config.Temporal{TaskQueue: "mageflow"},
		Groups:   map[string]*config.Group{"web": {Provider: "docker", Name: "shop-web"}},
	}
}

// A provider's direct notification and the EventBridge event of the same
// action must land on the same workflow id: whichever arrives second joins
// the first one's run instead of preparing the instance twice.
func TestNotifyUsesTheEventsWorkflowID(t *testing.T) {
	rec := &startRecorder{}
	s := &Fleet{Client: rec, Config: testConfig()}
	event := []byte(`{"detail-type":"EC2 Instance-launch Lifecycle Action","source":"aws.autoscaling","detail":{
		"LifecycleActionToken":"tok-1","AutoScalingGroupName":"shop-web","LifecycleHookName":"launch",
		"EC2InstanceId":"i-0abc","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING",
		"Origin":"WarmPool","Destination":"AutoScalingGroup"}}`)
	id, err := s.Handle(context.Background(), event)
	require.NoError(t, err)

	a := fleet.LifecycleAction{Group: "shop-web", Hook: "launch", Token: "tok-1", InstanceID: "i-0abc",
		Transition: fleet.TransitionLaunching, Origin: fleet.PlaceWarmPool, Destination: fleet.PlaceGroup}
	require.NoError(t, s.Notify(context.Background(), a))
	require.Len(t, rec.starts, 2)
	require.Equal(t, id, rec.starts[1].ID)
	require.Equal(t, "readiness/shop-web/i-0abc/tok-1", rec.starts[1].ID)
	require.Equal(t, rec.starts[0].WorkflowIDConflictPolicy, rec.starts[1].WorkflowIDConflictPolicy)
	require.Equal(t, "mageflow", rec.starts[1].TaskQueue)
	in, ok := rec.inputs[1].(workflows.ReadinessInput)
	require.True(t, ok, "input %T", rec.inputs[1])
	require.Equal(t, "web", in.Group, "the workflow gets the groups: entry, not the provider's name")
	require.Equal(t, a, in.Action)
}

func TestNotifyRefusesUnknownGroupsAndBadActions(t *testing.T) {
	rec := &startRecorder{}
	s := &Fleet{Client: rec, Config: testConfig()}
	err := s.Notify(context.Background(), fleet.LifecycleAction{Group: "other", Hook: "h", Token: "t", InstanceID: "i", Transition: fleet.TransitionLaunching})
	require.ErrorContains(t, err, `group "other"`)
	err = s.Notify(context.Background(), fleet.LifecycleAction{Group: "shop-web", Transition: fleet.TransitionLaunching})
	require.ErrorContains(t, err, "missing")
	require.Empty(t, rec.starts)
}

// A run that already finished decided the action: a controller re-reporting
// it after a restart is not an error (it must not retry forever).
func TestNotifyFinishedRunIsDone(t *testing.T) {
	rec := &startRecorder{err: serviceerror.NewWorkflowExecutionAlreadyStarted("done", "", "")}
	s := &Fleet{Client: rec, Config: testConfig()}
	a := fleet.LifecycleAction{Group: "shop-web", Hook: "launch", Token: "t", InstanceID: "i-1", Transition: fleet.TransitionLaunching}
	require.NoError(t, s.Notify(context.Background(), a))
	rec.err = errors.New("connection refused")
	require.ErrorContains(t, s.Notify(context.Background(), a), "connection refused")
}
