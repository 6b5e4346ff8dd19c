package workflows_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
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

// TestRecordAutoDeploySkip runs the skip against the pinned dev server and
// saves its history for TestReplayRecordedAutoDeploySkip.
func TestRecordAutoDeploySkip(t *testing.T) {
	r := newRecorder(t, autoSkipHistory)
	e := newAutoEnv(t)
	b5 := mainRelease(5, "5555555aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	b7 := mainRelease(7, "7777777bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	e.publish(b5)
	e.publish(b7)
	require.NoError(t, catalog.PutEnv(r.ctx, e.d.Store, &catalog.EnvState{App: "shop", Env: "production", Current: b7.ID, Release: b7}))

	const queue = "record-auto-skip"
	r.serve(t, queue, map[string]any{"ZeroDowntimeDeploy": workflows.ZeroDowntimeDeploy}, deployActivities(e))
	in := workflows.DeployInput{App: "shop", Env: "production", ReleaseID: b5.ID, Kind: "deploy",
		RequestedBy: activities.AutoDeployRequester + "build/shop/" + b5.Commit + ")", Reason: "build of main", Automatic: true}
	run := r.start(t, workflows.DeployWorkflowID("shop", "production"), queue, workflows.ZeroDowntimeDeploy, in)
	var rec catalog.Deploy
	require.NoError(t, run.Get(r.ctx, &rec))
	require.Equal(t, agent.DeployOutcomeSkipped, rec.Outcome)
	require.Contains(t, rec.Error, "is older than the environment's current release 7-7777777")
	r.write(t, run.GetID(), run.GetRunID(), filepath.Base(autoSkipHistory))
}
