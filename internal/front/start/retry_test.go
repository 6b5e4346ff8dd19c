package start

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mageflow/mageflow/internal/platform/config"
)

// flakyStarts is a Temporal client whose first fails starts fail with err,
// the way a loaded frontend answers a burst of starts.
type flakyStarts struct {
	client.Client
	mu    sync.Mutex
	fails int
	err   error
	ids   []string
}

func (f *flakyStarts) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, o.ID)
	if len(f.ids) <= f.fails {
		return nil, f.err
	}
	return fakeRun{id: o.ID}, nil
}

func buildConfig() *config.Config {
	c := testConfig()
	c.Apps = map[string]*config.App{"shop": {Name: "shop"}}
	return c
}

const someSHA = "0123456789abcdef0123456789abcdef01234567"

// A build start that timed out on the server is asked again under the same
// workflow id (which only joins what the first call may have started) and
// succeeds; the caller sees one run.
func TestBuildStartRetriesATimedOutStart(t *testing.T) {
	for _, err := range []error{
		context.DeadlineExceeded,
		serviceerror.NewDeadlineExceeded("context deadline exceeded"),
		serviceerror.NewUnavailable("frontend restarting"),
		serviceerror.NewResourceExhausted(0, "namespace rps"),
		status.Error(codes.DeadlineExceeded, "deadline"),
		fmt.Errorf("wrapped: %w", context.DeadlineExceeded),
	} {
		t.Run(err.Error(), func(t *testing.T) {
			f := &flakyStarts{fails: 2, err: err}
			s := &Builds{Client: f, Config: buildConfig()}
			run, e := s.Start(context.Background(), BuildRequest{App: "shop", Commit: someSHA})
			require.NoError(t, e)
			require.Len(t, f.ids, 3)
			require.Equal(t, f.ids[0], f.ids[2], "a retry must ask for the same workflow id")
			require.Equal(t, f.ids[0], run.GetID())
		})
	}
}

// An error that asking again cannot fix is returned at once.
func TestBuildStartDoesNotRetryPermanentErrors(t *testing.T) {
	for _, err := range []error{
		serviceerror.NewNamespaceNotFound("mageflow"),
		serviceerror.NewPermissionDenied("no", ""),
		serviceerror.NewInvalidArgument("bad search attribute"),
		errors.New("something else"),
	} {
		f := &flakyStarts{fails: 1, err: err}
		s := &Builds{Client: f, Config: buildConfig()}
		_, e := s.Start(context.Background(), BuildRequest{App: "shop", Commit: someSHA})
		require.ErrorIs(t, e, err)
		require.Len(t, f.ids, 1, "%v must not be retried", err)
	}
}

// Retries stop when the caller's context ends, and the last error says why.
func TestBuildStartRetriesStopWithTheCaller(t *testing.T) {
	f := &flakyStarts{fails: 1 << 30, err: serviceerror.NewUnavailable("down")}
	s := &Builds{Client: f, Config: buildConfig()}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err := s.Start(ctx, BuildRequest{App: "shop", Commit: someSHA})
	require.Error(t, err)
	require.Contains(t, err.Error(), "down")
	require.Less(t, len(f.ids), 6, "backoff between retries")
	require.Greater(t, len(f.ids), 1)
}
