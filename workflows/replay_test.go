package workflows_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/workflows"
)

// TestReplayRecordedBuild replays a history recorded from a real run against
// the dev server (test/build_test.go, MAGEFLOW_RECORD_HISTORY=1). A change to
// BuildRelease that would break running builds fails here; make such changes
// behind workflow.GetVersion. The history's payloads are encrypted, so this
// also proves the codec decrypts what it wrote.
func TestReplayRecordedBuild(t *testing.T) {
	const history = "testdata/build_release.history.json"
	// git does not keep modes beyond 0644 and the codec insists on 0600:
	// read a private copy instead of changing the tracked file.
	b, err := os.ReadFile("testdata/test-only-codec.key")
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "codec.key")
	require.NoError(t, os.WriteFile(keyFile, b, 0o600))
	c, err := codec.Load("MAGEFLOW_TEST_NO_SUCH_ENV", keyFile)
	require.NoError(t, err)
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: codec.DataConverter(c)})
	require.NoError(t, err)
	r.RegisterWorkflowWithOptions(workflows.BuildRelease, workflow.RegisterOptions{Name: "BuildRelease"})
	require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, history))
}
