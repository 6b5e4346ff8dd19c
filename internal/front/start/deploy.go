// Deploys starts and steers ZeroDowntimeDeploy for the CLI and the
// dashboard: one deploy at a time per app and environment (the workflow id
// is the lock), approvals through the workflow's update, and the views the
// dashboard shows.

package start

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/workflows"
)

// Deploys starts deploys and answers questions about environments.
type Deploys struct {
	Temporal client.Client
	Config   *config.Config
	Store    store.Store
}

// ErrDeployBusy is returned (wrapped) when a deploy of the environment runs.
var ErrDeployBusy = errors.New("a deploy is already running")

// Start starts a deploy or rollback. When another one runs for the same
// environment it fails with ErrDeployBusy naming it, or, with queue, waits for it
// to finish and then starts.
func (c *Deploys) Start(ctx context.Context, req activities.DeployRequest, queue bool) (client.WorkflowRun, error) {
	app, err := c.Config.App(req.App)
	if err != nil {
		return nil, err
	}
	if app.Environments[req.Env] == nil {
		return nil, fmt.Errorf("app %s has no environment %q", req.App, req.Env)
	}
	if req.Kind == "" {
		req.Kind = "deploy"
	}
	id := workflows.DeployWorkflowID(req.App, req.Env)
	for {
		run, err := c.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID:                                       id,
			TaskQueue:                                c.Config.Temporal.TaskQueue,
			WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
			WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			WorkflowExecutionErrorWhenAlreadyStarted: true,
			TypedSearchAttributes:                    temporal.NewSearchAttributes(searchattr.App.ValueSet(req.App), searchattr.Environment.ValueSet(req.Env)),
			StaticSummary:                            fmt.Sprintf("%s %s to %s (%s) by %s", req.Kind, req.App, req.Env, orLatest(req.ReleaseID), req.RequestedBy),
		}, workflows.ZeroDowntimeDeploy, req)
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			if !queue {
				return nil, fmt.Errorf("%w for %s/%s: %s (run %s); wait for it, or pass --queue to start after it", ErrDeployBusy, req.App, req.Env, id, started.RunId)
			}
			// Wait for the running one, whatever its outcome, then try again.
			_ = c.Temporal.GetWorkflow(ctx, id, started.RunId).Get(ctx, nil)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("start deploy %s: %w", id, err)
		}
		return run, nil
	}
}

func orLatest(id string) string {
	if id == "" {
		return "latest"
	}
	return id
}

// Decide approves or rejects the deploy waiting for approval.
func (c *Deploys) Decide(ctx context.Context, app, env string, approve bool, by, reason string) error {
	name := workflows.UpdateReject
	if approve {
		name = workflows.UpdateApprove
	}
	h, err := c.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.DeployWorkflowID(app, env), UpdateName: name,
		Args: []any{workflows.Approval{By: by, Reason: reason}}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return fmt.Errorf("no deploy of %s/%s is running", app, env)
		}
		return fmt.Errorf("%s %s/%s: %w", name, app, env, err)
	}
	if err := h.Get(ctx, nil); err != nil {
		return fmt.Errorf("%s %s/%s refused: %w", name, app, env, err)
	}
	return nil
}

// Status returns the running deploy's status, or nil when none runs.
func (c *Deploys) Status(ctx context.Context, app, env string) (*workflows.DeployStatus, string, string, error) {
	id := workflows.DeployWorkflowID(app, env)
	desc, err := c.Temporal.DescribeWorkflow(ctx, id, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil, "", "", nil
	}
	if err != nil {
		return nil, "", "", err
	}
	info := desc.RawResponse.GetWorkflowExecutionInfo()
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, "", "", nil
	}
	runID := info.GetExecution().GetRunId()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := c.Temporal.QueryWorkflow(qctx, id, runID, workflows.QueryStatus)
	if err != nil {
		return &workflows.DeployStatus{Phase: "starting"}, id, runID, nil
	}
	var st workflows.DeployStatus
	if err := v.Get(&st); err != nil {
		return nil, "", "", err
	}
	return &st, id, runID, nil
}

// History lists an environment's deploys, newest first.
func (c *Deploys) History(ctx context.Context, app, env string, limit int) ([]catalog.Deploy, error) {
	return catalog.Deploys(ctx, c.Store, app, env, limit)
}

func sortedEnvs[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
