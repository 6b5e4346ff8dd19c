package workflows_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/workflows"
)

// TestRecordHistories records one history per workflow type and per
// current GetVersion branch (see replayed in replay_histories_test.go),
// each from a real run on one dev server.
func TestRecordHistories(t *testing.T) {
	r := newRecorder(t, "testdata/*.history.json")
	t.Run("scheduled-build", r.recordScheduledBuild)
	t.Run("deploy-upgrade", r.recordDeployUpgrade)
	t.Run("resolve-ref", r.recordResolveRef)
	t.Run("readiness", r.recordReadiness)
	t.Run("refresh", r.recordRefresh)
	t.Run("harden", r.recordHarden)
}

const recordQueue = "record-histories"

// deployWorkflows are what a build's auto-deploy needs on the control queue.
func deployWorkflows() map[string]any {
	return map[string]any{"BuildRelease": workflows.BuildRelease, "ZeroDowntimeDeploy": workflows.ZeroDowntimeDeploy,
		"ScheduledBuild": workflows.ScheduledBuild, "ResolveRef": workflows.ResolveRef}
}

// deployActivities are the real PlanDeploy, RecordDeploy and RecordEnv
// over e's local store, and an agent check that finds every agent.
func deployActivities(e *autoEnv) map[string]any {
	return map[string]any{"PlanDeploy": e.d.PlanDeploy, "RecordDeploy": e.d.RecordDeploy, "RecordEnv": e.d.RecordEnv,
		"CheckAgents": func(context.Context, activities.CheckAgentsInput) error { return nil }}
}

// hostFakes are a healthy host's agent; upgrade says the release needs a
// database upgrade.
func hostFakes(upgrade bool) map[string]any {
	none := func(context.Context, any) error { return nil }
	return map[string]any{
		"Prepare": func(_ context.Context, in agent.PrepareInput) (*agent.PrepareResult, error) {
			return &agent.PrepareResult{ReleaseDir: "/srv/mageflow/releases/" + in.ReleaseID, FreeBytes: 8 << 30, Seconds: 4.2}, nil
		},
		"UpgradeStatus": func(context.Context, agent.ReleaseRef) (*agent.UpgradeDecision, error) {
			if upgrade {
				return &agent.UpgradeDecision{Needed: true, Reasons: []string{"setup:db:status: Declarative Schema is not up to date"}}, nil
			}
			return &agent.UpgradeDecision{}, nil
		},
		"Switch": func(_ context.Context, in agent.ReleaseRef) (*agent.SwitchResult, error) {
			return &agent.SwitchResult{Current: in.ReleaseID}, nil
		},
		"ReloadPHP": func(context.Context, agent.HostTarget) (*agent.PHPResult, error) {
			return &agent.PHPResult{Method: "reload"}, nil
		},
		"Warm": func(context.Context, agent.WarmInput) error { return nil },
		"Health": func(context.Context, agent.HealthInput) (*agent.HealthResult, error) {
			return &agent.HealthResult{}, nil
		},
		"Prune": func(context.Context, agent.PruneInput) (*agent.PruneResult, error) {
			return &agent.PruneResult{}, nil
		},
		"SetMaintenance": none, "StopJobs": none, "StartJobs": none, "FlushCache": none, "RunUpgrade": none,
	}
}

func (r *recorder) serveHosts(t *testing.T, upgrade bool, hosts ...string) {
	for _, h := range hosts {
		r.serve(t, agent.HostTaskQueue(h), nil, hostFakes(upgrade))
	}
}

// recordScheduledBuild: a schedule builds main (ScheduledBuild, ResolveRef
// inline), the build auto-deploys (BuildRelease, "auto-deploy" version 1)
// and the deploy of the newer release succeeds without an upgrade
// (ZeroDowntimeDeploy's normal path).
func (r *recorder) recordScheduledBuild(t *testing.T) {
	e := newAutoEnv(t)
	b7 := mainRelease(7, "7777777bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	b8 := mainRelease(8, "8888888ccccccccccccccccccccccccccccccccc")
	e.publish(b7)
	require.NoError(t, catalog.PutEnv(r.ctx, e.d.Store, &catalog.EnvState{App: "shop", Env: "production", Current: b7.ID, Release: b7}))
	acts := deployActivities(e)
	acts["ResolveCommit"] = func(context.Context, activities.ResolveInput) (*activities.CommitMeta, error) {
		return &activities.CommitMeta{Commit: b8.Commit, ShortCommit: b8.ShortCommit, Branch: "main", BuildNumber: 8, Message: "Checkout: free shipping over 50"}, nil
	}
	acts["FindRelease"] = func(context.Context, activities.FindReleaseInput) (*release.Meta, error) { return nil, nil }
	acts["BuildArtifact"] = func(context.Context, activities.BuildArtifactInput) (*activities.BuildArtifactResult, error) {
		return &activities.BuildArtifactResult{Artifact: b8.Artifact, Recipe: "magento2", Builder: "docker", Files: 1200}, nil
	}
	acts["PublishRelease"] = func(ctx context.Context, m *release.Meta) error { return catalog.Put(ctx, e.d.Store, m) }
	r.serve(t, recordQueue, deployWorkflows(), acts)
	r.serveHosts(t, false, "web1", "web2")

	run := r.start(t, "scheduled-build/shop", recordQueue, workflows.ScheduledBuild,
		workflows.ScheduledBuildInput{App: "shop", Ref: "main", BuildTimeout: time.Hour, Environment: "production", AutoDeploy: true})
	var buildID string
	require.NoError(t, run.Get(r.ctx, &buildID))
	r.save(t, run.GetID(), run.GetRunID(), "scheduled_build.history.json")
	r.save(t, buildID, "", "build_auto_deploy.history.json")
	r.save(t, workflows.DeployWorkflowID("shop", "production"), "", "deploy_succeeded.history.json")
	require.Equal(t, b8.ID, e.current())
}

// recordDeployUpgrade: a person deploys a release that needs a database
// upgrade (maintenance on, upgrade, switch, flush, maintenance off).
func (r *recorder) recordDeployUpgrade(t *testing.T) {
	e := newAutoEnv(t)
	b7 := mainRelease(7, "7777777bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	b9 := mainRelease(9, "9999999ddddddddddddddddddddddddddddddddd")
	e.publish(b7)
	e.publish(b9)
	require.NoError(t, catalog.PutEnv(r.ctx, e.d.Store, &catalog.EnvState{App: "shop", Env: "production", Current: b7.ID, Release: b7}))
	r.serve(t, recordQueue, deployWorkflows(), deployActivities(e))
	r.serveHosts(t, true, "web1", "web2")
	id := workflows.DeployWorkflowID("shop", "production")
	run := r.start(t, id, recordQueue, workflows.ZeroDowntimeDeploy,
		workflows.DeployInput{App: "shop", Env: "production", ReleaseID: b9.ID, Kind: "deploy", RequestedBy: "cli:alice@laptop", Reason: "new checkout"})
	r.save(t, id, run.GetRunID(), "deploy_upgrade.history.json")
	require.Equal(t, b9.ID, e.current())
}

// recordResolveRef: the CLI resolves a branch before it starts a build.
func (r *recorder) recordResolveRef(t *testing.T) {
	r.serve(t, recordQueue, deployWorkflows(), map[string]any{
		"ResolveCommit": func(_ context.Context, in activities.ResolveInput) (*activities.CommitMeta, error) {
			return &activities.CommitMeta{Commit: "8888888ccccccccccccccccccccccccccccccccc", ShortCommit: "8888888", Branch: in.Ref, BuildNumber: 8}, nil
		},
	})
	run := r.start(t, "resolve/shop/main", recordQueue, workflows.ResolveRef, activities.ResolveInput{App: "shop", Ref: "main"})
	r.save(t, run.GetID(), run.GetRunID(), "resolve_ref.history.json")
}

// fleetFakes are a group "web" (instance i-1 launching at 10.0.0.7) behind
// nginx on lb1, deploying shop/production at release 9.
func fleetFakes() map[string]any {
	rel := mainRelease(9, "9999999ddddddddddddddddddddddddddddddddd")
	return map[string]any{
		"PlanGroup": func(context.Context, string) (*activities.GroupPlan, error) {
			return &activities.GroupPlan{Group: "web", Name: "asg", App: "shop", Env: "production", Balancer: "lb1", Port: 80}, nil
		},
		"CheckAgents":        func(context.Context, activities.CheckAgentsInput) error { return nil },
		"ReleaseForInstance": func(context.Context, activities.ReleaseForInstanceInput) (*release.Meta, error) { return rel, nil },
		"DescribeGroup": func(context.Context, string) (*fleet.Group, error) {
			return &fleet.Group{Name: "asg", Desired: 3, Min: 2, Max: 4, Instances: []fleet.Instance{{ID: "i-1", PrivateIP: "10.0.0.7", LifecycleState: fleet.StatePendingWait}}}, nil
		},
		"CompleteLifecycle":  func(context.Context, activities.CompleteInput) (string, error) { return "completed", nil },
		"LifecycleHeartbeat": func(context.Context, fleet.LifecycleAction) error { return nil },
	}
}

func lbFakes() map[string]any {
	return map[string]any{
		"SetMembers": func(context.Context, agent.SetMembersInput) (*agent.MembersResult, error) {
			return &agent.MembersResult{Changed: true, Serving: true}, nil
		},
		"Drain": func(context.Context, agent.DrainInput) error { return nil },
	}
}

// recordReadiness: an instance launches and joins nginx
// ("readiness-deadline" version 1), and one is scaled in.
func (r *recorder) recordReadiness(t *testing.T) {
	r.serve(t, recordQueue, map[string]any{"ScaleOutReadiness": workflows.ScaleOutReadiness}, fleetFakes())
	r.serve(t, agent.HostTaskQueue("lb1"), nil, lbFakes())
	r.serveHosts(t, false, "i-1")
	for name, a := range map[string]fleet.LifecycleAction{
		"readiness_launch.history.json":   action("autoscaling:EC2_INSTANCE_LAUNCHING", "EC2", "AutoScalingGroup"),
		"readiness_scale_in.history.json": action("autoscaling:EC2_INSTANCE_TERMINATING", "AutoScalingGroup", "EC2"),
	} {
		run := r.start(t, workflows.ReadinessWorkflowID(a), recordQueue, workflows.ScaleOutReadiness, workflows.ReadinessInput{Group: "web", Action: a})
		r.save(t, run.GetID(), run.GetRunID(), name)
	}
}

// recordRefresh: a refresh of a group of two that completes, and one
// whose replacements never serve, undone ("refresh-undo-readd" version 1).
func (r *recorder) recordRefresh(t *testing.T) {
	m := newModel(t, 2)
	r.serve(t, recordQueue, map[string]any{"WarmPoolImageRefresh": workflows.WarmPoolImageRefresh}, m.activities())
	r.serve(t, agent.HostTaskQueue("lb1"), nil, m.activities())
	id := workflows.RefreshWorkflowID("web")
	run := r.start(t, id, recordQueue, workflows.WarmPoolImageRefresh, workflows.RefreshInput{Group: "web", ImageID: "ami-new", Poll: 200 * time.Millisecond})
	r.save(t, id, run.GetRunID(), "refresh_succeeded.history.json")
	require.Empty(t, m.violated)

	m.mu.Lock()
	m.failNew = true
	m.mu.Unlock()
	run = r.start(t, id, recordQueue, workflows.WarmPoolImageRefresh,
		workflows.RefreshInput{Group: "web", ImageID: "ami-newer", Poll: 500 * time.Millisecond, ReadyTimeout: 2 * time.Second})
	r.saveFailed(t, run, "not serving", "refresh_undone.history.json")
	require.Empty(t, m.violated)
}

// hardenFakes are a Magento 1 host with one failing check that apply fixes.
func hardenFakes() map[string]any {
	target := &m1audit.Target{WebRoot: "/srv/shop", Version: "1.9.4.5", PHPVersion: "7.4", FPMPoolFile: "/etc/php/7.4/fpm/pool.d/shop.conf"}
	var audits atomic.Int32
	return map[string]any{
		"HardenDiscover": func(context.Context, agent.HardenRequest) (*m1audit.Target, error) { return target, nil },
		"HardenAudit": func(context.Context, agent.HardenStepInput) ([]m1audit.CheckResult, error) {
			st := m1audit.StatusFail
			if audits.Add(1)%2 == 0 { // the audit after apply
				st = m1audit.StatusPass
			}
			return []m1audit.CheckResult{{ID: "m1.fpm.limit_extensions", Title: "PHP-FPM runs only .php", Status: st}}, nil
		},
		"HardenApply": func(context.Context, agent.HardenStepInput) ([]m1audit.CheckResult, error) {
			return []m1audit.CheckResult{{ID: "m1.fix.fpm.limit_extensions", Status: m1audit.StatusFixed}}, nil
		},
		"HardenVerify": func(context.Context, agent.HardenStepInput) ([]m1audit.CheckResult, error) {
			return []m1audit.CheckResult{{ID: "m1.verify.php_in_media", Status: m1audit.StatusPass}}, nil
		},
		"HardenReport": func(_ context.Context, in agent.HardenReportInput) (*agent.HardenStored, error) {
			rep := &m1audit.Report{Host: in.Host, App: in.App, Apply: in.Apply, Started: in.Started, Target: in.Target,
				Summary: m1audit.Summary{Checks: 3, Pass: 2, Fixed: 1, Changed: true}}
			return &agent.HardenStored{Report: rep, JSONKey: "harden/web1/report.json", MarkdownKey: "harden/web1/report.md"}, nil
		},
		"HardenRemoveCanaries": func(context.Context, agent.HardenCleanupInput) ([]string, error) {
			return []string{"/srv/shop/media/mageflow-canary-1.php"}, nil
		},
	}
}

// recordHarden: a schedule hardens web1 with apply (ScheduledHarden and
// its child MagentoM1EOLHardening).
func (r *recorder) recordHarden(t *testing.T) {
	r.serve(t, recordQueue, map[string]any{"ScheduledHarden": workflows.ScheduledHarden, "MagentoM1EOLHardening": workflows.MagentoM1EOLHardening}, nil)
	r.serve(t, agent.HostTaskQueue("web1"), nil, hardenFakes())
	run := r.start(t, "scheduled-harden/web1", recordQueue, workflows.ScheduledHarden,
		workflows.HardenInput{Host: "web1", App: "shop", Environment: "production", Apply: true})
	r.save(t, run.GetID(), run.GetRunID(), "scheduled_harden.history.json")
	r.save(t, workflows.HardenWorkflowID("web1"), "", "harden_apply.history.json")
}
