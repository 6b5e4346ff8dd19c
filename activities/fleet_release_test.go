package activities_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// A new instance gets the release a running deploy of its environment is
// deploying, and otherwise what the environment runs — never the release
// of a deploy that already ended (it still answers the status query).
func TestReleaseForInstanceAsksOnlyRunningDeploys(t *testing.T) {
	ctx := context.Background()
	st, err := store.NewLocal(t.TempDir())
	require.NoError(t, err)
	current := &release.Meta{App: "shop", ID: "7-aaaaaaa", BuildNumber: 7}
	deploying := &release.Meta{App: "shop", ID: "8-bbbbbbb", BuildNumber: 8}
	for _, m := range []*release.Meta{current, deploying} {
		require.NoError(t, catalog.Put(ctx, st, m))
	}
	require.NoError(t, catalog.PutEnv(ctx, st, &catalog.EnvState{App: "shop", Env: "production", Current: current.ID, Release: current}))

	for _, tc := range []struct {
		status enums.WorkflowExecutionStatus
		want   string
	}{
		{enums.WORKFLOW_EXECUTION_STATUS_RUNNING, deploying.ID},
		{enums.WORKFLOW_EXECUTION_STATUS_FAILED, current.ID},
		{enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, current.ID},
	} {
		t.Run(tc.status.String(), func(t *testing.T) {
			c := &mocks.Client{}
			c.On("DescribeWorkflow", mock.Anything, "deploy/shop/production", "").Return(&client.WorkflowExecutionDescription{
				WorkflowExecutionMetadata: client.WorkflowExecutionMetadata{Status: tc.status},
			}, nil)
			v := &mocks.Value{}
			v.On("Get", mock.Anything).Run(func(args mock.Arguments) {
				p := args.Get(0).(*struct {
					Phase     string
					ReleaseID string
				})
				p.Phase, p.ReleaseID = "prepare", deploying.ID
			}).Return(nil)
			c.On("QueryWorkflow", mock.Anything, "deploy/shop/production", "", "status").Return(v, nil).Maybe()
			f := &activities.FleetActivities{Config: &config.Config{}, Store: st, Client: c}
			var s testsuite.WorkflowTestSuite
			env := s.NewTestActivityEnvironment()
			env.RegisterActivity(f)
			v2, err := env.ExecuteActivity(f.ReleaseForInstance, activities.ReleaseForInstanceInput{App: "shop", Env: "production"})
			require.NoError(t, err)
			var m release.Meta
			require.NoError(t, v2.Get(&m))
			require.Equal(t, tc.want, m.ID)
			if tc.status != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
				c.AssertNotCalled(t, "QueryWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything)
			}
		})
	}
}
