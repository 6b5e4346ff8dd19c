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
	// Each recording has its own test key: the build with local control
	// steps (buildLocalChange 1) and the one from before.
	for history, key := range map[string]string{
		"testdata/build_release.history.json":              "testdata/test-only-codec.key",
		"testdata/build_release_remote_steps.history.json": "testdata/test-only-codec-remote-steps.key",
	} {
		t.Run(history, func(t *testing.T) { replayEncrypted(t, history, key) })
	}
}

func replayEncrypted(t *testing.T, history, key string) {
	// git does not keep modes beyond 0644 and the codec insists on 0600:
	// read a private copy instead of changing the tracked file.
	b, err := os.ReadFile(key)
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
