// Builds starts BuildRelease the one way mageflow allows: under the
// commit's workflow id, joining a running build of that commit or returning
// the finished one. The webhook server and the CLI go through here; a
// schedule's ScheduledBuild starts its child under the same
// workflows.BuildWorkflowID, so "one build per commit" holds whoever asks.

package start

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/workflows"
)

// Builds starts builds with a Temporal client.
type Builds struct {
	Client client.Client
	Config *config.Config
}

// BuildRequest asks for a build of a ref (branch, tag, sha) or a known commit.
type BuildRequest struct {
	App string
	// Ref is what a person typed; Commit is a full sha when already known
	// (webhooks), which skips resolution.
	Ref, Commit, Branch string
	Trigger, DeliveryID string
}

var fullSHA = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)

// Start resolves the ref if needed and starts (or joins) the build. The
// returned run is the build of that commit, whichever request created it.
func (s *Builds) Start(ctx context.Context, req BuildRequest) (client.WorkflowRun, error) {
	app, err := s.Config.App(req.App)
	if err != nil {
		return nil, err
	}
	commit, branch := strings.ToLower(req.Commit), req.Branch
	if commit == "" && fullSHA.MatchString(req.Ref) {
		commit = strings.ToLower(req.Ref)
	}
	if commit == "" {
		cm, err := s.Resolve(ctx, req.App, req.Ref)
		if err != nil {
			return nil, err
		}
		commit = cm.Commit
		if branch == "" {
			branch = cm.Branch
		}
	}
	env, _ := app.EnvironmentForBranch(branch)
	sas := []temporal.SearchAttributeUpdate{
		searchattr.App.ValueSet(req.App), searchattr.CommitID.ValueSet(commit),
	}
	if branch != "" {
		sas = append(sas, searchattr.Branch.ValueSet(branch))
	}
	if env != "" {
		sas = append(sas, searchattr.Environment.ValueSet(env))
	}
	trigger := req.Trigger
	if trigger == "" {
		trigger = "cli"
	}
	in := workflows.BuildInput{
		App: req.App, Commit: commit, Branch: branch, Environment: env, Trigger: trigger, DeliveryID: req.DeliveryID,
		BuildTimeout: app.Build.Timeout.Duration,
	}
	if e := app.Environments[env]; e != nil && e.AutoDeploy && len(e.Hosts) > 0 {
		in.AutoDeploy = true
	}
	opts := client.StartWorkflowOptions{
		ID:        workflows.BuildWorkflowID(req.App, commit),
		TaskQueue: s.Config.Temporal.TaskQueue,
		// One build per commit: join a running build, return a finished
		// one, and allow a new attempt only after a failure.
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowExecutionErrorWhenAlreadyStarted: false,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(sas...),
		StaticSummary:                            fmt.Sprintf("Build %s @ %s (%s) via %s", req.App, commit[:7], orDash(branch), trigger),
	}
	run, retries, err := retryIdempotentStart(ctx, func(ctx context.Context) (client.WorkflowRun, error) {
		return s.Client.ExecuteWorkflow(ctx, opts, workflows.BuildRelease, in)
	})
	if err != nil {
		return nil, fmt.Errorf("start build %s (%d retries): %w", opts.ID, retries, err)
	}
	return run, nil
}

// Resolve asks a worker to resolve a ref (the CLI has no git access of its
// own) and waits for the answer.
func (s *Builds) Resolve(ctx context.Context, app, ref string) (*activities.CommitMeta, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, fmt.Errorf("no ref given: pass --ref with a branch, tag or commit sha")
	}
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    workflows.ResolveWorkflowID(app, uuid.NewString()),
		TaskQueue:             s.Config.Temporal.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(searchattr.App.ValueSet(app)),
		StaticSummary:         fmt.Sprintf("Resolve %s in %s", ref, app),
	}, workflows.ResolveRef, activities.ResolveInput{App: app, Ref: ref})
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	var cm activities.CommitMeta
	if err := run.Get(ctx, &cm); err != nil {
		return nil, fmt.Errorf("resolve %q in %s: %w", ref, app, err)
	}
	return &cm, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
