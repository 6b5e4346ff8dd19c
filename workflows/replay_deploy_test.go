package workflows_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/catalog"
	"github.com/mageflow/mageflow/internal/devserver"
	"github.com/mageflow/mageflow/internal/testenv"
	"github.com/mageflow/mageflow/workflows"
)

const autoSkipHistory = "testdata/deploy_auto_skip.history.json"

// TestReplayRecordedAutoDeploySkip replays a real ZeroDowntimeDeploy that
// skipped an automatic deploy of an older release (the
// "auto-deploy-never-backwards" version). Record it again with
// MAGEFLOW_RECORD_HISTORY=1 go test ./workflows/ -run TestRecordAutoDeploySkip
// after changing that path on purpose.
func TestReplayRecordedAutoDeploySkip(t *testing.T) {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.ZeroDowntimeDeploy, workflow.RegisterOptions{Name: "ZeroDowntimeDeploy"})
	require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, autoSkipHistory))
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRecordAutoDeploySkip runs the skip against the pinned dev server and
// saves its history for TestReplayRecordedAutoDeploySkip.
func TestRecordAutoDeploySkip(t *testing.T) {
	if os.Getenv("MAGEFLOW_RECORD_HISTORY") == "" {
		t.Skip("records testdata/deploy_auto_skip.history.json: run `make record-histories`")
	}
	cli := testenv.TemporalCLIOrSkip(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{CLI: cli, IP: "127.0.0.1", Port: freePort(t), UIPort: freePort(t),
		DBFile: filepath.Join(t.TempDir(), "temporal.db"), Namespace: "default", Log: os.Stderr})
	require.NoError(t, err)
	defer srv.Stop()
	c, err := client.Dial(client.Options{HostPort: srv.Addr, Namespace: "default"})
	require.NoError(t, err)
	defer c.Close()

	e := newAutoEnv(t)
	b5 := mainRelease(5, "5555555aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	b7 := mainRelease(7, "7777777bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	e.publish(b5)
	e.publish(b7)
	require.NoError(t, catalog.PutEnv(ctx, e.d.Store, &catalog.EnvState{App: "shop", Env: "production", Current: b7.ID, Release: b7}))

	const queue = "record-auto-skip"
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(workflows.ZeroDowntimeDeploy, workflow.RegisterOptions{Name: "ZeroDowntimeDeploy"})
	w.RegisterActivity(e.d)
	require.NoError(t, w.Start())
	defer w.Stop()

	in := workflows.DeployInput{App: "shop", Env: "production", ReleaseID: b5.ID, Kind: "deploy",
		RequestedBy: activities.AutoDeployRequester + "build/shop/" + b5.Commit + ")", Reason: "build of main", Automatic: true}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.DeployWorkflowID("shop", "production"), TaskQueue: queue}, workflows.ZeroDowntimeDeploy, in)
	require.NoError(t, err)
	var rec catalog.Deploy
	require.NoError(t, run.Get(ctx, &rec))
	require.Equal(t, activities.DeployOutcomeSkipped, rec.Outcome)
	require.Contains(t, rec.Error, "is older than the environment's current release 7-7777777")

	hist := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		hist.Events = append(hist.Events, ev)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(autoSkipHistory, b, 0o644))
	t.Logf("recorded %d events of %s", len(hist.Events), run.GetID())
}
