package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

// temporalClient returns a client of the cluster make test-cluster names
// (MAGEFLOW_TEST_TEMPORAL, MAGEFLOW_TEST_NAMESPACE), or of a dev server of
// the pinned CLI started for this test (skipping on a fresh checkout). It
// closes with the test.
func temporalClient(t *testing.T) client.Client {
	t.Helper()
	addr, ns, ok, err := testenv.ExternalTemporal()
	require.NoError(t, err)
	if ok {
		c, err := client.Dial(client.Options{HostPort: addr, Namespace: ns})
		require.NoError(t, err, "dial the cluster at %s", addr)
		t.Cleanup(c.Close)
		return c
	}
	cli := testenv.TemporalCLIOrSkip(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:     cli,
		LogLevel:         "error",
		SearchAttributes: searchattr.DevServerAttributes(),
		ClientOptions:    &client.Options{Namespace: "default"},
	})
	require.NoError(t, err, "start the Temporal dev server with %s", cli)
	t.Cleanup(func() { _ = dev.Stop() })
	return dev.Client()
}
