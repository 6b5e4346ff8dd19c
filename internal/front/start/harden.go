package start

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/workflows"
)

// Harden starts MagentoM1EOLHardening under the host's id, or joins
// the run in progress (a second request never starts a second run on the
// same host). A finished run may be started again.
func Harden(ctx context.Context, c client.Client, cfg *config.Config, in workflows.HardenInput) (client.WorkflowRun, error) {
	var sas []temporal.SearchAttributeUpdate
	if in.App != "" {
		sas = append(sas, searchattr.App.ValueSet(in.App))
	}
	if in.Environment != "" {
		sas = append(sas, searchattr.Environment.ValueSet(in.Environment))
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.HardenWorkflowID(in.Host), TaskQueue: cfg.Temporal.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes:    temporal.NewSearchAttributes(sas...),
	}, workflows.MagentoM1EOLHardening, in)
	if err != nil {
		return nil, fmt.Errorf("start hardening of %s: %w", in.Host, err)
	}
	return run, nil
}
