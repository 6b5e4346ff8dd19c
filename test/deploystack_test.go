package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
	"github.com/mageflow/mageflow/test/fixtures"
	"github.com/mageflow/mageflow/workflows"
)

// deployTimeout bounds one deploy of the fixture (seconds when healthy).
const deployTimeout = 90 * time.Second

// deployEnv is one environment on the two-host stack (web1, web2 behind a
// balancer), with mageflow's control worker and both agents, against the
// package's dev server.
type deployEnv struct {
	t      *testing.T
	app    string
	repo   string
	stack  *deploystack.Stack
	cfg    *config.Config
	client client.Client
	store  store.Store
	dep    *deploystack.Deployer
}

type deployEnvOptions struct {
	roots     map[string]string       // host root overrides (tmpfs)
	hostExtra map[string]string       // extra host config lines
	envs      []deploystack.Env       // default: production only
	agents    func(*deployEnv) func() // nil: in-process agents for every host
}

// newDeployEnv starts the stack, a harness (config + control worker) whose
// config declares the stack's hosts and the app, and the agents.
func newDeployEnv(t *testing.T, app string, o deployEnvOptions) *deployEnv {
	t.Helper()
	if err := deploystack.RequireBinaries(); err != nil {
		t.Fatal(err)
	}
	repo := fixtures.Magento2App(t)
	s := startStack(t, app, o.roots)
	h := newHarnessWith(t, "artifacts: {dir: ./artifacts}\n"+s.HostsYAML(o.hostExtra), s.AppYAML(repo, o.envs...))
	require.NoError(t, s.WriteSecrets(h.cfg.Secrets.Dir))
	e := &deployEnv{t: t, app: app, repo: repo, stack: s, cfg: h.cfg, client: h.client, store: h.acts.Store}
	e.dep = &deploystack.Deployer{Deploys: &start.Deploys{Temporal: h.client, Config: h.cfg, Store: h.acts.Store}}
	if o.agents == nil {
		stop, err := deploystack.StartAgents(context.Background(), h.client, h.cfg, s.HostNames())
		require.NoError(t, err)
		t.Cleanup(stop)
	} else {
		t.Cleanup(o.agents(e))
	}
	t.Cleanup(e.terminateRunning)
	return e
}

// startStack starts the web tier and stops it at the end of the test,
// printing the daemons' logs when the test failed.
func startStack(t *testing.T, app string, roots map[string]string) *deploystack.Stack {
	t.Helper()
	s, err := deploystack.Start(deploystack.Options{Dir: t.TempDir(), App: app, Roots: roots})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("web tier logs:\n%s", s.Logs())
		}
		if err := s.Close(); err != nil {
			t.Logf("stopping the web tier: %v", err)
		}
	})
	return s
}

// terminateRunning ends every deploy of the app still running, so a failed
// test leaves nothing retrying against the shared host task queues.
func (e *deployEnv) terminateRunning() {
	for env := range e.cfg.Apps[e.app].Environments {
		id := workflows.DeployWorkflowID(e.app, env)
		desc, err := e.client.DescribeWorkflow(context.Background(), id, "")
		if err == nil && desc.RawResponse.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
			_ = e.client.TerminateWorkflow(context.Background(), id, "", "test ended")
		}
	}
}

// pending describes what a running deploy waits for (its pending
// activities, attempts and last failures), for the message of a deploy
// that timed out.
func (e *deployEnv) pending(env string) string {
	d, err := e.client.DescribeWorkflow(context.Background(), workflows.DeployWorkflowID(e.app, env), "")
	if err != nil {
		return fmt.Sprintf("(describe: %v)", err)
	}
	desc := d.RawResponse
	var b strings.Builder
	for _, a := range desc.GetPendingActivities() {
		fmt.Fprintf(&b, "\n  pending %s: state %s, attempt %d, last started %s, last heartbeat %s, last failure %q",
			a.GetActivityType().GetName(), a.GetState(), a.GetAttempt(), a.GetLastStartedTime().AsTime().Format("15:04:05.000"),
			a.GetLastHeartbeatTime().AsTime().Format("15:04:05.000"), a.GetLastFailure().GetMessage())
	}
	if wt := desc.GetPendingWorkflowTask(); wt != nil {
		fmt.Fprintf(&b, "\n  pending workflow task: state %s, attempt %d", wt.GetState(), wt.GetAttempt())
	}
	return b.String()
}

// build builds main as it is now.
func (e *deployEnv) build() *release.Meta {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := deploystack.Build(ctx, e.client, e.cfg, e.app, "main")
	require.NoError(e.t, err)
	return m
}

// release commits a new greeting marker and builds it.
func (e *deployEnv) release(marker string) *release.Meta {
	e.t.Helper()
	require.NoError(e.t, deploystack.CommitMarker(e.repo, marker))
	return e.build()
}

// deploy deploys id to env and waits, bounded by deployTimeout.
func (e *deployEnv) deploy(env, id string) (*catalog.Deploy, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	return e.dep.Run(ctx, activities.DeployRequest{App: e.app, Env: env, ReleaseID: id, RequestedBy: "e2e"})
}

// mustDeploy deploys and requires success.
func (e *deployEnv) mustDeploy(id string) *catalog.Deploy {
	e.t.Helper()
	rec, err := e.deploy("production", id)
	require.NoError(e.t, err, "deploy %s", id)
	require.Equal(e.t, catalog.OutcomeSucceeded, rec.Outcome)
	require.Equal(e.t, id, rec.ReleaseID)
	return rec
}

// requireCurrent checks every host's current and what the balancer serves.
func (e *deployEnv) requireCurrent(id string) {
	e.t.Helper()
	for _, h := range e.stack.HostNames() {
		cur, err := e.stack.Current(h)
		require.NoError(e.t, err)
		require.Equal(e.t, id, cur, "current on %s", h)
		served, err := e.stack.Served(e.stack.Host(h).URL)
		require.NoError(e.t, err)
		require.Equal(e.t, id, served, "release served by %s", h)
	}
	served, err := e.stack.Served(e.stack.BalancerURL)
	require.NoError(e.t, err)
	require.Equal(e.t, id, served, "release served by the balancer")
}

// requireRoot fails tests that mount file systems when not run as root.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("%s: run the suite as root (make test does in the dev container)", why)
	}
}

func stepSeconds(rec *catalog.Deploy) string {
	s := ""
	for _, st := range rec.Steps {
		s += fmt.Sprintf(" %s=%.2fs", st.Name, st.Seconds)
	}
	return s
}
