package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/workflows"
)

// replayed are the histories TestRecordHistories records (make
// record-histories), each from a real run on the dev server, and what they
// cover. A history recorded today takes the newest branch of every
// GetVersion it passes; the DefaultVersion branches (runs started before
// the change) can no longer be recorded and are not replayed.
var replayed = []struct{ file, covers string }{
	{"scheduled_build.history.json", "ScheduledBuild: ResolveRef inline, BuildRelease child"},
	{"build_auto_deploy.history.json", `BuildRelease: GetVersion "auto-deploy" 1, ZeroDowntimeDeploy child started`},
	{"deploy_succeeded.history.json", "ZeroDowntimeDeploy: automatic deploy of a newer release, no upgrade"},
	{"deploy_upgrade.history.json", "ZeroDowntimeDeploy: database upgrade inside maintenance"},
	{"deploy_auto_skip.history.json", `ZeroDowntimeDeploy: GetVersion "auto-deploy-never-backwards" 1, skipped`},
	{"resolve_ref.history.json", "ResolveRef"},
	{"readiness_launch.history.json", `ScaleOutReadiness: GetVersion "readiness-deadline" 1, into nginx`},
	{"readiness_scale_in.history.json", "ScaleOutReadiness: out of nginx, drained"},
	{"refresh_succeeded.history.json", "WarmPoolImageRefresh: two instances replaced"},
	{"refresh_undone.history.json", `WarmPoolImageRefresh: replacements never serve, undone (GetVersion "refresh-undo-readd" 1)`},
	{"scheduled_harden.history.json", "ScheduledHarden: MagentoM1EOLHardening child"},
	{"harden_apply.history.json", "MagentoM1EOLHardening: audit, apply, audit again, verify, report, cleanup"},
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
		})
	}
}
