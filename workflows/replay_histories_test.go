package workflows_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/workflows"
)

// replayed are the histories TestRecordHistories records (make
// record-histories), each from a real run on the dev server, and what they
// cover. A history recorded today takes the newest branch of every
// GetVersion it passes, so before re-recording for a change, the current
// recordings are kept under a new name (the *_remote_steps files are the
// runs from before deployLocalChange and buildLocalChange): they replay the
// DefaultVersion branch that runs started before the change still take.
var replayed = []struct {
	file, covers string
	// localSteps is how many control steps the run executed as local
	// activities (deployLocalChange, buildLocalChange): 0 for the runs
	// from before them.
	localSteps int
}{
	{"scheduled_build.history.json", "ScheduledBuild: ResolveRef inline, BuildRelease child", 0},
	{"build_auto_deploy.history.json", `BuildRelease: GetVersion "auto-deploy" 1, "build-control-local" 1, ZeroDowntimeDeploy child started`, 2},
	{"build_auto_deploy_remote_steps.history.json", `BuildRelease: GetVersion "auto-deploy" 1, "build-control-local" default (regular activities)`, 0},
	{"deploy_succeeded.history.json", `ZeroDowntimeDeploy: automatic deploy of a newer release, no upgrade, "deploy-control-local" 1`, 6},
	{"deploy_succeeded_remote_steps.history.json", `ZeroDowntimeDeploy: the same, "deploy-control-local" default (regular activities)`, 0},
	{"deploy_upgrade.history.json", `ZeroDowntimeDeploy: database upgrade inside maintenance, "deploy-control-local" 1`, 6},
	{"deploy_upgrade_remote_steps.history.json", `ZeroDowntimeDeploy: the same, "deploy-control-local" default`, 0},
	{"deploy_auto_skip.history.json", `ZeroDowntimeDeploy: GetVersion "auto-deploy-never-backwards" 1, skipped, "deploy-control-local" 1`, 2},
	{"deploy_auto_skip_remote_steps.history.json", `ZeroDowntimeDeploy: GetVersion "auto-deploy-never-backwards" 1, skipped, "deploy-control-local" default`, 0},
	{"resolve_ref.history.json", "ResolveRef", 0},
	{"readiness_launch.history.json", `ScaleOutReadiness: GetVersion "readiness-deadline" 1, into nginx`, 0},
	{"readiness_scale_in.history.json", "ScaleOutReadiness: out of nginx, drained", 0},
	{"refresh_succeeded.history.json", "WarmPoolImageRefresh: two instances replaced", 0},
	{"refresh_undone.history.json", `WarmPoolImageRefresh: replacements never serve, undone (GetVersion "refresh-undo-readd" 1)`, 0},
	{"scheduled_harden.history.json", "ScheduledHarden: MagentoM1EOLHardening child", 0},
	{"harden_apply.history.json", "MagentoM1EOLHardening: audit, apply, audit again, verify, report, cleanup", 0},
}

// TestReplayRecordedHistories replays every recorded history against the
// workflows as they are now (no server needed): a change that would break
// running workflows fails here. Make such changes behind
// workflow.GetVersion, keep the old history and record a new one.
func TestReplayRecordedHistories(t *testing.T) {
	for _, h := range replayed {
		t.Run(h.file, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			for name, wf := range map[string]any{
				"BuildRelease": workflows.BuildRelease, "ResolveRef": workflows.ResolveRef, "ScheduledBuild": workflows.ScheduledBuild,
				"ZeroDowntimeDeploy": workflows.ZeroDowntimeDeploy, "ScaleOutReadiness": workflows.ScaleOutReadiness,
				"WarmPoolImageRefresh": workflows.WarmPoolImageRefresh, "MagentoM1EOLHardening": workflows.MagentoM1EOLHardening,
				"ScheduledHarden": workflows.ScheduledHarden,
			} {
				r.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: name})
			}
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, "testdata/"+h.file), h.covers)
			require.Equal(t, h.localSteps, localActivityMarkers(t, "testdata/"+h.file), "local activity markers in %s", h.file)
		})
	}
}

// localActivityMarkers counts the local activities a recorded run executed,
// so a history cannot claim a branch it did not take.
func localActivityMarkers(t *testing.T, file string) int {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	n := 0
	for _, ev := range h.GetEvents() {
		if ev.GetMarkerRecordedEventAttributes().GetMarkerName() == "LocalActivity" {
			n++
		}
	}
	return n
}
