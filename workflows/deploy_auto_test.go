package workflows_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/workflows"
)

// autoEnv is shop/production on two hosts, with the real PlanDeploy,
// RecordDeploy and RecordEnv over a local store, and host agents that only
// log what they were asked to do.
type autoEnv struct {
	t     *testing.T
	d     *activities.DeployActivities
	mu    sync.Mutex
	calls []string
}

func newAutoEnv(t *testing.T) *autoEnv {
	t.Helper()
	dir := t.TempDir()
	yml := `artifacts: {dir: ` + filepath.Join(dir, "artifacts") + `}
hosts:
  web1: {root: /srv/mageflow, url: http://web1}
  web2: {root: /srv/mageflow, url: http://web2}
apps:
  shop:
    repo: /r
    type: magento2
    environments:
      production: {branch: main, hosts: [web1, web2], auto_deploy: true}
`
	p := filepath.Join(dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yml), 0o644))
	cfg, err := config.Load(p, false)
	require.NoError(t, err)
	st, err := store.NewLocal(cfg.Artifacts.Dir)
	require.NoError(t, err)
	return &autoEnv{t: t, d: &activities.DeployActivities{Config: cfg, Store: st}}
}

func mainRelease(n int, commit string) *release.Meta {
	return &release.Meta{ID: release.NewID(n, commit[:7]), App: "shop", Commit: commit, ShortCommit: commit[:7], Branch: "main", BuildNumber: n,
		Artifact: release.Artifact{URI: "file:///a/" + commit[:7], SHA256: "aa", Size: 10}}
}

func (e *autoEnv) publish(m *release.Meta) {
	require.NoError(e.t, catalog.Put(context.Background(), e.d.Store, m))
}

func (e *autoEnv) log(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, s)
}

// deploy runs one ZeroDowntimeDeploy to the end and returns its result and
// what the hosts were asked to do.
func (e *autoEnv) deploy(in workflows.DeployInput) (*catalog.Deploy, []string) {
	e.t.Helper()
	e.calls = nil
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	var h *agent.HostActivities
	env.RegisterActivity(h)
	env.RegisterActivity(e.d)
	env.RegisterWorkflow(workflows.ZeroDowntimeDeploy)
	env.OnActivity(e.d.CheckAgents, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(h.Prepare, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.PrepareInput) (*agent.PrepareResult, error) {
		e.log(in.Host + ":prepare:" + in.ReleaseID)
		return &agent.PrepareResult{}, nil
	})
	env.OnActivity(h.UpgradeStatus, mock.Anything, mock.Anything).Return(&agent.UpgradeDecision{}, nil)
	env.OnActivity(h.Switch, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.ReleaseRef) (*agent.SwitchResult, error) {
		e.log(in.Host + ":switch:" + in.ReleaseID)
		return &agent.SwitchResult{Current: in.ReleaseID}, nil
	})
	env.OnActivity(h.ReloadPHP, mock.Anything, mock.Anything).Return(&agent.PHPResult{Method: "reload"}, nil)
	env.OnActivity(h.Health, mock.Anything, mock.Anything).Return(&agent.HealthResult{}, nil)
	env.OnActivity(h.Prune, mock.Anything, mock.Anything).Return(&agent.PruneResult{}, nil)
	env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, in)
	require.True(e.t, env.IsWorkflowCompleted())
	require.NoError(e.t, env.GetWorkflowError())
	var rec catalog.Deploy
	require.NoError(e.t, env.GetWorkflowResult(&rec))
	return &rec, e.calls
}

func (e *autoEnv) current() string {
	st, err := catalog.Env(context.Background(), e.d.Store, "shop", "production")
	require.NoError(e.t, err)
	require.NotNil(e.t, st)
	return st.Current
}

// autoDeployInput is the deploy BuildRelease starts after building m with
// auto-deploy on: whatever started the build (a webhook delivery replayed
// after a restart, a schedule), this is what reaches the deploy.
func autoDeployInput(t *testing.T, m *release.Meta) workflows.DeployInput {
	t.Helper()
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	var a *activities.BuildActivities
	env.RegisterActivity(a)
	env.RegisterWorkflow(workflows.BuildRelease)
	env.RegisterWorkflow(workflows.ZeroDowntimeDeploy)
	env.OnActivity(a.ResolveCommit, mock.Anything, mock.Anything).Return(&activities.CommitMeta{
		Commit: m.Commit, ShortCommit: m.ShortCommit, Branch: m.Branch, BuildNumber: m.BuildNumber, Message: "old push"}, nil)
	// Its earlier build failed: nothing is stored, so it is rebuilt.
	env.OnActivity(a.FindRelease, mock.Anything, mock.Anything).Return(nil, nil)
	env.OnActivity(a.BuildArtifact, mock.Anything, mock.Anything).Return(&activities.BuildArtifactResult{Artifact: m.Artifact}, nil)
	env.OnActivity(a.PublishRelease, mock.Anything, mock.Anything).Return(nil)
	var got workflows.DeployInput
	env.OnWorkflow(workflows.ZeroDowntimeDeploy, mock.Anything, mock.Anything).Return(func(_ workflow.Context, in workflows.DeployInput) (*catalog.Deploy, error) {
		got = in
		return &catalog.Deploy{}, nil
	})
	env.ExecuteWorkflow(workflows.BuildRelease, workflows.BuildInput{App: "shop", Commit: m.Commit, Branch: m.Branch, Environment: "production",
		Trigger: "webhook:github", DeliveryID: "replayed-delivery", AutoDeploy: true, BuildTimeout: time.Hour})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, m.ID, got.ReleaseID)
	require.True(t, got.Automatic, "BuildRelease marks its deploy automatic")
	return got
}

// The webhook-replay attack (issue 9) and out-of-order builds: production
// runs build 7 of main; an older push (build 5) is rebuilt and auto-deployed.
// Nothing switches, the deploy completes with the reason recorded and the
// environment still runs 7. Build 8 auto-deploys. A person can still deploy
// build 5 by hand (a rollback on purpose).
func TestAutoDeployNeverMovesTheEnvironmentBack(t *testing.T) {
	e := newAutoEnv(t)
	b5 := mainRelease(5, "5555555aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	b7 := mainRelease(7, "7777777bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	b8 := mainRelease(8, "8888888ccccccccccccccccccccccccccccccccc")
	e.publish(b7)
	rec, calls := e.deploy(workflows.DeployInput{App: "shop", Env: "production", ReleaseID: b7.ID, Kind: "deploy", RequestedBy: "ada"})
	require.Equal(t, catalog.OutcomeSucceeded, rec.Outcome)
	require.Contains(t, calls, "web1:switch:"+b7.ID)
	require.Equal(t, b7.ID, e.current())

	// The replayed older push: rebuilt, published, auto-deployed.
	e.publish(b5)
	rec, calls = e.deploy(autoDeployInput(t, b5))
	require.Empty(t, calls, "no host may be touched by an auto-deploy of an older release")
	require.Equal(t, agent.DeployOutcomeSkipped, rec.Outcome)
	want := "release 5-5555555 (build 5, commit 5555555) is older than the environment's current release 7-7777777 (build 7) on branch main; " +
		"auto-deploys never go backwards — deploy it by hand with `mageflow deploy --app shop --env production --release 5-5555555` if you mean to roll back"
	require.Equal(t, want, rec.Error)
	require.Equal(t, b5.ID, rec.ReleaseID)
	require.NotNil(t, rec.FinishedAt)
	stored, err := catalog.Deploys(context.Background(), e.d.Store, "shop", "production", 1)
	require.NoError(t, err)
	require.Equal(t, agent.DeployOutcomeSkipped, stored[0].Outcome, "the skip is in the durable deploy history")
	require.Equal(t, want, stored[0].Error)
	require.Equal(t, b7.ID, e.current(), "the environment still runs build 7")

	// A newer build goes out.
	e.publish(b8)
	rec, calls = e.deploy(autoDeployInput(t, b8))
	require.Equal(t, catalog.OutcomeSucceeded, rec.Outcome)
	require.Contains(t, calls, "web1:switch:"+b8.ID)
	require.Contains(t, calls, "web2:switch:"+b8.ID)
	require.Equal(t, b8.ID, e.current())

	// Build 7 finishing after build 8 (out of order) stays out too.
	rec, calls = e.deploy(autoDeployInput(t, b7))
	require.Empty(t, calls)
	require.Equal(t, agent.DeployOutcomeSkipped, rec.Outcome)
	require.Equal(t, b8.ID, e.current())

	// A person rolls back to build 5 on purpose: allowed.
	rec, calls = e.deploy(workflows.DeployInput{App: "shop", Env: "production", ReleaseID: b5.ID, Kind: "deploy", RequestedBy: "ada", Reason: "roll back by hand"})
	require.Equal(t, catalog.OutcomeSucceeded, rec.Outcome)
	require.Contains(t, calls, "web1:switch:"+b5.ID)
	require.Equal(t, b5.ID, e.current())
}
