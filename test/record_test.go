package test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
)

// recordHistory saves a real run's history (encrypted payloads and all) and
// the test key that decrypts it, for the replay test in package workflows.
// Run with MAGEFLOW_RECORD_HISTORY=1 after changing BuildRelease on purpose.
func recordHistory(t *testing.T, h *harness, id string) {
	t.Helper()
	hist := &historypb.History{}
	it := h.client.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		hist.Events = append(hist.Events, ev)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	require.NoError(t, err)
	dir := filepath.Join("..", "workflows", "testdata")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "build_release.history.json"), b, 0o644))
	key, err := os.ReadFile(h.cfg.Codec.KeyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test-only-codec.key"), key, 0o600))
	t.Logf("recorded %d events of %s", len(hist.Events), id)
}
