package workflows

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/internal/platform/units"
)

// BuildInput starts BuildRelease. Commit must be a full sha: the workflow id
// is derived from it, which is what makes one build per commit.
type BuildInput struct {
	App    string
	Commit string
	// Branch is the branch the push was to (webhook) or the ref resolved by
	// the CLI; "" lets the activity find a branch pointing at the commit.
	Branch string
	// Environment the branch feeds, if any (for search and auto-deploy).
	Environment string
	// Trigger says who asked: "webhook:github", "cli", "schedule", ...
	Trigger    string
	DeliveryID string
	// BuildTimeout bounds the build activity (from the app's build.timeout).
	BuildTimeout time.Duration
	// AutoDeploy: the environment deploys successful builds by itself.
	AutoDeploy bool
}

// BuildProgress is what the QueryProgress query returns.
type BuildProgress struct {
	Phase     string
	ReleaseID string
	Started   time.Time
}

// Activity method names come from nil struct pointers: the worker registers
// the real ones.
var buildActs *activities.BuildActivities

var shaRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

// BuildRelease turns one commit into one immutable, fully described release
// artifact: resolve and describe the commit, reuse a release already stored
// for it, else build it in a clean container, package and store it, and
// publish its meta last so `mageflow releases` never lists a half-stored
// release.
func BuildRelease(ctx workflow.Context, in BuildInput) (*release.Meta, error) {
	r := &buildRun{in: in, progress: BuildProgress{Phase: "starting", Started: workflow.Now(ctx)}}
	r.logger = log.With(workflow.GetLogger(ctx), "app", in.App, "commit", in.Commit)
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (BuildProgress, error) { return r.progress, nil }); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

type buildRun struct {
	in       BuildInput
	logger   log.Logger
	progress BuildProgress
	// control runs the short control steps (local from buildLocalChange).
	control controlStep
}

func (r *buildRun) phase(ctx workflow.Context, phase, details string) {
	r.progress.Phase = phase
	workflow.SetCurrentDetails(ctx, details)
}

func (r *buildRun) run(ctx workflow.Context) (*release.Meta, error) {
	in := r.in
	in.Commit = strings.ToLower(in.Commit)
	if err := checkBuildInput(in); err != nil {
		return nil, err
	}
	r.control = localSteps(ctx, buildLocalChange)
	if err := r.tagBuildStart(ctx, in); err != nil {
		return nil, err
	}
	// 1. Describe the commit (fetches the mirror; retried on network errors).
	cm, releaseID, err := r.resolveCommit(ctx, in)
	if err != nil {
		return nil, err
	}
	shortCtx := workflow.WithActivityOptions(ctx, shortBuildActivityOptions())

	// 2. A release stored earlier for this commit (before Temporal's
	// retention dropped its workflow) is the answer: builds are immutable.
	var existing *release.Meta
	if err := r.control.run(shortCtx, buildActs.FindRelease, activities.FindReleaseInput{App: in.App, ReleaseID: releaseID}).Get(ctx, &existing); err != nil {
		return nil, err
	}
	if existing != nil {
		r.phase(ctx, "done", fmt.Sprintf("**Release %s** was already built and stored: %s", releaseID, existing.Artifact.URI))
		return existing, nil
	}

	// 3. Build, package and upload.
	built, err := r.buildArtifact(ctx, in, cm, releaseID)
	if err != nil {
		return nil, err
	}

	// 4. Publish the meta last: from now on the release is listed.
	meta := releaseMeta(ctx, in, cm, releaseID, built)
	if err := r.publish(ctx, meta); err != nil {
		return nil, err
	}
	if in.AutoDeploy && in.Environment != "" && workflow.GetVersion(ctx, "auto-deploy", workflow.DefaultVersion, 1) == 1 {
		r.autoDeploy(ctx, meta)
	}
	return meta, nil
}

// errBuildInputFormat is the message for a build started without an app or
// a full commit sha.
const errBuildInputFormat = "BuildRelease needs an app and a full 40-character commit sha, got app=%q commit=%q; start builds with `mageflow build --app A --ref REF`, which resolves the ref first"

// checkBuildInput refuses a build without an app or a full commit sha.
func checkBuildInput(in BuildInput) error {
	if in.App == "" || !shaRe.MatchString(in.Commit) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf(errBuildInputFormat, in.App, in.Commit),
			activities.ErrInvalidInput, nil)
	}
	return nil
}

// tagBuildStart sets the search attributes known before anything runs
// (app, commit, environment, branch).
func (r *buildRun) tagBuildStart(ctx workflow.Context, in BuildInput) error {
	kws := []keyword{{searchattr.App, in.App}, {searchattr.CommitID, in.Commit}}
	if in.Environment != "" {
		kws = append(kws, keyword{searchattr.Environment, in.Environment})
	}
	if in.Branch != "" {
		kws = append(kws, keyword{searchattr.Branch, in.Branch})
	}
	return r.control.upsertKeywords(ctx, kws...)
}

// resolveCommitActivityOptions are for ResolveCommit: it fetches the mirror, so it
// heartbeats and retries network errors, not a missing ref.
func resolveCommitActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 6,
			NonRetryableErrorTypes: []string{activities.ErrRefNotFound, activities.ErrConfig, activities.ErrInvalidInput},
		},
	}
}

// shortBuildActivityOptions are the options for the store look-ups and the publish.
func shortBuildActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
			NonRetryableErrorTypes: []string{activities.ErrInvalidInput, activities.ErrConfig},
		},
	}
}

// resolveCommit describes the commit, names its release and records both
// in the search attributes.
func (r *buildRun) resolveCommit(ctx workflow.Context, in BuildInput) (activities.CommitMeta, string, error) {
	r.phase(ctx, "resolve", fmt.Sprintf("**Resolving** `%s` of **%s** in the git mirror", short(in.Commit), in.App))
	resolveCtx := workflow.WithActivityOptions(ctx, resolveCommitActivityOptions())
	var cm activities.CommitMeta
	if err := workflow.ExecuteActivity(resolveCtx, buildActs.ResolveCommit, activities.ResolveInput{App: in.App, Ref: in.Commit, Branch: in.Branch}).Get(ctx, &cm); err != nil {
		r.phase(ctx, "failed", "**Failed** resolving the commit: "+err.Error())
		return cm, "", err
	}
	releaseID := release.NewID(cm.BuildNumber, cm.ShortCommit)
	r.progress.ReleaseID = releaseID
	sas := []temporal.SearchAttributeUpdate{searchattr.BuildNumber.ValueSet(int64(cm.BuildNumber)), searchattr.ReleaseID.ValueSet(releaseID)}
	if in.Branch == "" && cm.Branch != "" {
		sas = append(sas, searchattr.Branch.ValueSet(cm.Branch))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, sas...); err != nil {
		return cm, "", err
	}
	r.logger.Info("commit resolved", "release", releaseID, "buildNumber", cm.BuildNumber)
	return cm, releaseID, nil
}

// buildArtifact builds, packages and uploads in one activity, because the
// checkout and the packaged file live on the worker that ran it. It
// heartbeats its step and resumes from its last finished phase on retry.
func (r *buildRun) buildArtifact(ctx workflow.Context, in BuildInput, cm activities.CommitMeta, releaseID string) (activities.BuildArtifactResult, error) {
	r.phase(ctx, "build", fmt.Sprintf("**Building** release `%s` (build #%d, %s): step progress is on the pending BuildArtifact activity", releaseID, cm.BuildNumber, units.FirstLine(cm.Message, 72)))
	timeout := in.BuildTimeout
	if timeout <= 0 {
		timeout = 2 * time.Hour
	}
	buildCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 10 * time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute, MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{activities.ErrBuildStepFailed, activities.ErrConfig, activities.ErrInvalidInput, activities.ErrRefNotFound},
		},
	})
	var built activities.BuildArtifactResult
	if err := workflow.ExecuteActivity(buildCtx, buildActs.BuildArtifact, activities.BuildArtifactInput{
		App: in.App, ReleaseID: releaseID, Commit: cm, WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
	}).Get(ctx, &built); err != nil {
		r.phase(ctx, "failed", "**Build failed**: "+err.Error())
		return built, err
	}
	return built, nil
}

// releaseMeta describes the built release for the store.
func releaseMeta(ctx workflow.Context, in BuildInput, cm activities.CommitMeta, releaseID string, built activities.BuildArtifactResult) *release.Meta {
	return &release.Meta{
		ID: releaseID, App: in.App, Commit: cm.Commit, ShortCommit: cm.ShortCommit, Branch: firstNonEmpty(in.Branch, cm.Branch),
		BuildNumber: cm.BuildNumber, Message: cm.Message, Author: cm.Author, AuthorEmail: cm.AuthorEmail, CommittedAt: cm.CommittedAt,
		Artifact: built.Artifact, WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, Recipe: built.Recipe, Builder: built.Builder,
		BuilderImage: built.BuilderImage, ComposerLockHash: cm.ComposerLockHash, PackageLockHash: cm.PackageLockHash,
		Steps: built.Steps, BuiltAt: workflow.Now(ctx).UTC(),
	}
}

// publish stores the meta last: from then on the release is listed.
func (r *buildRun) publish(ctx workflow.Context, meta *release.Meta) error {
	r.phase(ctx, "publish", fmt.Sprintf("**Publishing** release `%s`", meta.ID))
	shortCtx := workflow.WithActivityOptions(ctx, shortBuildActivityOptions())
	if err := r.control.run(shortCtx, buildActs.PublishRelease, meta).Get(ctx, nil); err != nil {
		return err
	}
	r.phase(ctx, "done", fmt.Sprintf("**Release %s** built: %s (%s, sha256 %s)", meta.ID, meta.Artifact.URI, units.Bytes(meta.Artifact.Size), short(meta.Artifact.SHA256)))
	r.logger.Info("release published", "release", meta.ID, "artifact", meta.Artifact.URI)
	return nil
}

// autoDeploy starts the environment's deploy of this release as an
// abandoned child (it outlives the build). When a deploy of the environment
// is running it waits its turn, checking every 30 s for up to an hour.
func (r *buildRun) autoDeploy(ctx workflow.Context, meta *release.Meta) {
	in := r.in
	info := workflow.GetInfo(ctx)
	for attempt := 0; attempt < 120; attempt++ {
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            DeployWorkflowID(in.App, in.Environment),
			TaskQueue:             info.TaskQueueName,
			ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			TypedSearchAttributes: temporal.NewSearchAttributes(searchattr.App.ValueSet(in.App), searchattr.Environment.ValueSet(in.Environment)),
			StaticSummary:         fmt.Sprintf("auto-deploy %s of %s to %s", meta.ID, in.App, in.Environment),
		})
		f := workflow.ExecuteChildWorkflow(cctx, ZeroDowntimeDeploy, DeployInput{
			App: in.App, Env: in.Environment, ReleaseID: meta.ID, Kind: "deploy",
			RequestedBy: activities.AutoDeployRequester + info.WorkflowExecution.ID + ")", Reason: "build of " + in.Branch,
			// Input only (no new command): PlanDeploy skips a release
			// older than the environment's, whatever started the build.
			Automatic: true,
		})
		var exec workflow.Execution
		err := f.GetChildWorkflowExecution().Get(ctx, &exec)
		if err == nil {
			r.phase(ctx, "done", fmt.Sprintf("**Release %s** built; auto-deploy to %s started: `%s`", meta.ID, in.Environment, exec.ID))
			return
		}
		if !temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			r.logger.Error("auto-deploy could not start", "error", err)
			r.phase(ctx, "done", fmt.Sprintf("**Release %s** built; auto-deploy to %s could not start: %v", meta.ID, in.Environment, err))
			return
		}
		r.phase(ctx, "auto-deploy", fmt.Sprintf("**Release %s** built; waiting for the running deploy of %s to finish before deploying it", meta.ID, in.Environment))
		if err := workflow.Sleep(ctx, 30*time.Second); err != nil {
			return
		}
	}
	r.phase(ctx, "done", fmt.Sprintf("**Release %s** built; auto-deploy gave up after an hour of %s being busy: deploy it with mageflow deploy", meta.ID, in.Environment))
}

// ResolveRef resolves a branch, tag or short sha to a commit for the CLI,
// which then starts BuildRelease under the commit's workflow id. It runs as
// a workflow so the CLI needs no git access of its own.
func ResolveRef(ctx workflow.Context, in activities.ResolveInput) (*activities.CommitMeta, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumAttempts: 4,
			NonRetryableErrorTypes: []string{activities.ErrRefNotFound, activities.ErrConfig, activities.ErrInvalidInput},
		},
	})
	if err := workflow.UpsertTypedSearchAttributes(ctx, searchattr.App.ValueSet(in.App)); err != nil {
		return nil, err
	}
	var cm activities.CommitMeta
	if err := workflow.ExecuteActivity(ctx, buildActs.ResolveCommit, in).Get(ctx, &cm); err != nil {
		return nil, err
	}
	return &cm, nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ScheduledBuildInput is a build a Temporal Schedule asks for by ref.
type ScheduledBuildInput struct {
	App, Ref string
	// BuildTimeout and AutoDeploy as in BuildInput (from config at apply).
	BuildTimeout time.Duration
	Environment  string
	AutoDeploy   bool
}

// ScheduledBuild resolves a ref and runs BuildRelease for its commit as a
// child under the commit's workflow id — a schedule cannot know the commit
// in advance, and "one build per commit" must hold for scheduled builds too:
// when that commit was built already, the existing build stands.
func ScheduledBuild(ctx workflow.Context, in ScheduledBuildInput) (string, error) {
	cm, err := ResolveRef(ctx, activities.ResolveInput{App: in.App, Ref: in.Ref})
	if err != nil {
		return "", err
	}
	id := BuildWorkflowID(in.App, cm.Commit)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		TypedSearchAttributes: temporal.NewSearchAttributes(searchattr.App.ValueSet(in.App), searchattr.CommitID.ValueSet(cm.Commit)),
	})
	f := workflow.ExecuteChildWorkflow(cctx, BuildRelease, BuildInput{
		App: in.App, Commit: cm.Commit, Branch: cm.Branch, Environment: in.Environment, Trigger: "schedule",
		BuildTimeout: in.BuildTimeout, AutoDeploy: in.AutoDeploy,
	})
	if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("commit `%s` of %s is built (or building) already: %s", cm.ShortCommit, in.Ref, id))
			return id, nil
		}
		return "", err
	}
	if err := f.Get(ctx, nil); err != nil {
		return id, err
	}
	return id, nil
}
