// Fleet starts the fleet workflows: ScaleOutReadiness for every
// autoscaling lifecycle event (one run per instance and token, however many
// times the event arrives) and WarmPoolImageRefresh (one per group).

package start

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/internal/front/server"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/workflows"
)

// Fleet starts fleet workflows.
type Fleet struct {
	Client client.Client
	Config *config.Config
}

var _ server.Lifecycle = (*Fleet)(nil)

// groupFor maps a provider group name to its groups: entry.
func (s *Fleet) groupFor(providerName string) (string, bool) {
	for name, g := range s.Config.Groups {
		if g != nil && g.Name == providerName {
			return name, true
		}
	}
	return "", false
}

// Handle parses a lifecycle event and starts (or joins) its readiness run.
func (s *Fleet) Handle(ctx context.Context, body []byte) (string, error) {
	a, err := fleet.ParseLifecycleEvent(body)
	if errors.Is(err, fleet.ErrNotLifecycleAction) {
		return "", fmt.Errorf("%w: %v", server.ErrIgnoredEvent, err)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", server.ErrBadEvent, err)
	}
	group, ok := s.groupFor(a.Group)
	if !ok {
		return "", fmt.Errorf("%w: group %q is not declared in the groups section", server.ErrIgnoredEvent, a.Group)
	}
	return s.startReadiness(ctx, group, *a)
}

// Notify starts (or joins) the readiness run of a lifecycle action a
// provider reports directly — the docker fleet provider's controller calls
// it for every instance it holds in a :Wait state, where AWS would send an
// EventBridge event. The workflow id is the one the event would get, so a
// controller that reports the same action again after a restart joins the
// run instead of starting a second one.
func (s *Fleet) Notify(ctx context.Context, a fleet.LifecycleAction) error {
	if err := a.Validate(); err != nil {
		return err
	}
	group, ok := s.groupFor(a.Group)
	if !ok {
		return fmt.Errorf("lifecycle action for group %q, which no groups: entry of %s names: declare it or stop the provider's group", a.Group, s.Config.File)
	}
	_, err := s.startReadiness(ctx, group, a)
	var done *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &done) {
		return nil // a run for this action already finished: it decided
	}
	return err
}

func (s *Fleet) startReadiness(ctx context.Context, group string, a fleet.LifecycleAction) (string, error) {
	opts := client.StartWorkflowOptions{
		ID:                       workflows.ReadinessWorkflowID(a),
		TaskQueue:                s.Config.Temporal.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:            fmt.Sprintf("readiness of %s (%s) in %s", a.InstanceID, a.WaitState(), group),
	}
	// One id per lifecycle action: asking again joins the first run.
	run, _, err := retryIdempotentStart(ctx, func(ctx context.Context) (client.WorkflowRun, error) {
		return s.Client.ExecuteWorkflow(ctx, opts, workflows.ScaleOutReadiness, workflows.ReadinessInput{Group: group, Action: a})
	})
	if err != nil {
		return "", err
	}
	return run.GetID(), nil
}

// Refresh starts a refresh of a group (refused while one runs).
func (s *Fleet) Refresh(ctx context.Context, in workflows.RefreshInput) (client.WorkflowRun, error) {
	if s.Config.Groups[in.Group] == nil {
		return nil, fmt.Errorf("group %q is not declared under groups: in %s", in.Group, s.Config.File)
	}
	return s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       workflows.RefreshWorkflowID(in.Group),
		TaskQueue:                                s.Config.Temporal.TaskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            fmt.Sprintf("refresh %s to %s (batch %d)", in.Group, in.ImageID, in.Batch),
	}, workflows.WarmPoolImageRefresh, in)
}
