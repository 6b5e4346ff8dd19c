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
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/internal/front/devserver"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

// recorder runs workflows on the pinned Temporal dev server and saves their
// histories under testdata/ for the replay tests (replay_histories_test.go).
// The workflows are the real ones; the activities are small fakes
// registered under the real names: a history records the workflow's
// commands and the activities' results, not how the results were made.
type recorder struct {
	ctx context.Context
	c   client.Client
}

// newRecorder skips unless MAGEFLOW_RECORD_HISTORY is set, starts the dev
// server and connects to it; everything stops when t ends.
func newRecorder(t *testing.T, what string) *recorder {
	t.Helper()
	if os.Getenv("MAGEFLOW_RECORD_HISTORY") == "" {
		t.Skip("records " + what + ": run `make record-histories`")
	}
	cli := testenv.TemporalCLIOrSkip(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	srv, err := devserver.Start(ctx, devserver.Options{CLI: cli, IP: "127.0.0.1", Port: freePort(t), UIPort: freePort(t),
		DBFile: filepath.Join(t.TempDir(), "temporal.db"), Namespace: "default", Log: os.Stderr})
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	c, err := client.Dial(client.Options{HostPort: srv.Addr, Namespace: "default"})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return &recorder{ctx: ctx, c: c}
}

// serve starts a worker on queue with the workflows and activities given by
// their registered names; it stops when t ends.
func (r *recorder) serve(t *testing.T, queue string, wfs, acts map[string]any) {
	t.Helper()
	w := worker.New(r.c, queue, worker.Options{})
	for name, fn := range wfs {
		w.RegisterWorkflowWithOptions(fn, workflow.RegisterOptions{Name: name})
	}
	for name, fn := range acts {
		w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}

// start runs a workflow and returns its run.
func (r *recorder) start(t *testing.T, id, queue string, wf, in any) client.WorkflowRun {
	t.Helper()
	run, err := r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, wf, in)
	require.NoError(t, err)
	return run
}

// save writes the history of a workflow that completed (runID "" is the
// latest run of id) to testdata/name.
func (r *recorder) save(t *testing.T, id, runID, name string) {
	t.Helper()
	require.NoError(t, r.c.GetWorkflow(r.ctx, id, runID).Get(r.ctx, nil), "%s must complete before it is saved", id)
	r.write(t, id, runID, name)
}

// saveFailed is save for a run that fails on purpose: its error is the
// recorded outcome.
func (r *recorder) saveFailed(t *testing.T, run client.WorkflowRun, contains, name string) {
	t.Helper()
	err := run.Get(r.ctx, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), contains)
	r.write(t, run.GetID(), run.GetRunID(), name)
}

func (r *recorder) write(t *testing.T, id, runID, name string) {
	t.Helper()
	hist := &historypb.History{}
	it := r.c.GetWorkflowHistory(r.ctx, id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		hist.Events = append(hist.Events, ev)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{}.Marshal(hist)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join("testdata", name), b, 0o644))
	t.Logf("recorded %d events of %s in testdata/%s", len(hist.Events), id, name)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
