package workflows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/workflows"
)

type deploySuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
	h   *agent.HostActivities
	d   *activities.DeployActivities

	mu      sync.Mutex
	events  []string // host:action, in order
	records []catalog.Deploy
	envs    []catalog.EnvState
}

func TestZeroDowntimeDeploy(t *testing.T) { suite.Run(t, new(deploySuite)) }

func (s *deploySuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(s.h)
	s.env.RegisterActivity(s.d)
	s.env.RegisterWorkflow(workflows.ZeroDowntimeDeploy)
	s.events, s.records, s.envs = nil, nil, nil
	s.env.OnActivity(s.d.CheckAgents, mock.Anything, mock.Anything).Return(nil)
	s.env.OnActivity(s.d.RecordDeploy, mock.Anything, mock.Anything).Return(func(_ context.Context, r catalog.Deploy) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.records = append(s.records, r)
		return nil
	})
	s.env.OnActivity(s.d.RecordEnv, mock.Anything, mock.Anything).Return(func(_ context.Context, st catalog.EnvState) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.envs = append(s.envs, st)
		return nil
	})
}

func (s *deploySuite) log(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *deploySuite) has(e string) bool {
	for _, x := range s.events {
		if x == e {
			return true
		}
	}
	return false
}

func (s *deploySuite) index(e string) int {
	for i, x := range s.events {
		if x == e {
			return i
		}
	}
	return -1
}

func plan(approval bool) *activities.DeployPlan {
	return &activities.DeployPlan{
		Release:  release.Meta{ID: "7-abcdef1", App: "shop", BuildNumber: 7, Branch: "main", Commit: "abcdef1abcdef1abcdef1abcdef1abcdef1abcd", Artifact: release.Artifact{URI: "file:///a", SHA256: "aa", Size: 10}},
		Previous: "6-1234567", Hosts: []string{"web1", "web2"}, ApprovalRequired: approval, ApprovalTimeout: time.Hour,
		KeepReleases: 5, HealthPaths: []string{"/"}, WarmPaths: []string{"/"},
	}
}

// mockHosts wires every host activity to record what happened; health
// answers healthy unless unhealthy names the release that fails.
func (s *deploySuite) mockHosts(upgrade bool, unhealthy string) {
	s.env.OnActivity(s.h.Prepare, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.PrepareInput) (*agent.PrepareResult, error) {
		s.log(in.Host + ":prepare:" + in.ReleaseID)
		return &agent.PrepareResult{}, nil
	})
	s.env.OnActivity(s.h.UpgradeStatus, mock.Anything, mock.Anything).Return(&agent.UpgradeDecision{Needed: upgrade, Reasons: []string{"setup:db:status: schema"}}, nil)
	s.env.OnActivity(s.h.SetMaintenance, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.MaintenanceInput) error {
		if in.On {
			s.log(in.Host + ":maintenance-on")
		} else {
			s.log(in.Host + ":maintenance-off")
		}
		return nil
	})
	s.env.OnActivity(s.h.StopJobs, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.HostTarget) error { s.log(in.Host + ":stop-jobs"); return nil })
	s.env.OnActivity(s.h.StartJobs, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.HostTarget) error { s.log(in.Host + ":start-jobs"); return nil })
	s.env.OnActivity(s.h.RunUpgrade, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.ReleaseRef) error { s.log(in.Host + ":upgrade"); return nil })
	s.env.OnActivity(s.h.Switch, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.ReleaseRef) (*agent.SwitchResult, error) {
		s.log(in.Host + ":switch:" + in.ReleaseID)
		return &agent.SwitchResult{Current: in.ReleaseID}, nil
	})
	s.env.OnActivity(s.h.FlushCache, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.ReleaseRef) error { s.log(in.Host + ":flush"); return nil })
	s.env.OnActivity(s.h.ReloadPHP, mock.Anything, mock.Anything).Return(&agent.PHPResult{Method: "reload"}, nil)
	s.env.OnActivity(s.h.Warm, mock.Anything, mock.Anything).Return(nil)
	s.env.OnActivity(s.h.Health, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.HealthInput) (*agent.HealthResult, error) {
		s.log(in.Host + ":health:" + in.ExpectRelease)
		if in.ExpectRelease == unhealthy {
			return &agent.HealthResult{Failures: []string{"/ answered 500"}}, nil
		}
		return &agent.HealthResult{}, nil
	})
	s.env.OnActivity(s.h.Prune, mock.Anything, mock.Anything).Return(&agent.PruneResult{}, nil)
	s.env.OnActivity(s.h.Discard, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.ReleaseRef) error { s.log(in.Host + ":discard"); return nil })
}

func deployInput() workflows.DeployInput {
	return workflows.DeployInput{App: "shop", Env: "production", Kind: "deploy", RequestedBy: "ada"}
}

func (s *deploySuite) lastRecord() catalog.Deploy { return s.records[len(s.records)-1] }

func (s *deploySuite) TestNoUpgradeSwitchesWithoutMaintenance() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(false), nil)
	s.mockHosts(false, "")
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	s.Require().NoError(s.env.GetWorkflowError())
	for _, h := range []string{"web1", "web2"} {
		s.True(s.has(h + ":prepare:7-abcdef1"))
		s.True(s.has(h + ":switch:7-abcdef1"))
		s.Less(s.index(h+":prepare:7-abcdef1"), s.index("web1:switch:7-abcdef1"), "prepare everywhere before any switch")
		s.Less(s.index(h+":prepare:7-abcdef1"), s.index("web2:switch:7-abcdef1"))
	}
	s.False(s.has("web1:maintenance-on"))
	s.False(s.has("web1:upgrade"))
	rec := s.lastRecord()
	s.Equal(catalog.OutcomeSucceeded, rec.Outcome)
	s.False(rec.UpgradeNeeded)
	s.Require().Len(s.envs, 1)
	s.Equal("7-abcdef1", s.envs[0].Current)
	s.Equal("6-1234567", s.envs[0].Previous)
	s.Equal(0, s.envs[0].UpgradedAtBuild)
}

func (s *deploySuite) TestUpgradeHoldsMaintenanceAcrossTheSwitch() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(false), nil)
	s.mockHosts(true, "")
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	s.Require().NoError(s.env.GetWorkflowError())
	on1, on2 := s.index("web1:maintenance-on"), s.index("web2:maintenance-on")
	up := s.index("web1:upgrade")
	sw1, sw2 := s.index("web1:switch:7-abcdef1"), s.index("web2:switch:7-abcdef1")
	flush := s.index("web1:flush")
	off1, off2 := s.index("web1:maintenance-off"), s.index("web2:maintenance-off")
	s.True(on1 >= 0 && on2 >= 0 && up > on1 && up > on2, "%v", s.events)
	s.True(sw1 > up && sw2 > up && flush > sw1 && flush > sw2, "%v", s.events)
	s.True(off1 > flush && off2 > flush, "maintenance ends only after switch and flush: %v", s.events)
	s.Less(s.index("web1:start-jobs"), off1)
	s.Equal(-1, s.index("web2:upgrade"), "the upgrade runs once")
	rec := s.lastRecord()
	s.True(rec.UpgradeNeeded)
	s.NotNil(rec.MaintenanceFrom)
	s.NotNil(rec.MaintenanceTo)
	s.Equal(7, s.envs[0].UpgradedAtBuild)
}

func (s *deploySuite) TestUnhealthyReleaseIsRolledBack() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(false), nil)
	s.mockHosts(false, "7-abcdef1")
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.Contains(err.Error(), "rolled back to 6-1234567")
	s.True(s.has("web1:switch:6-1234567"))
	s.True(s.has("web2:switch:6-1234567"))
	s.True(s.has("web1:health:6-1234567"))
	s.Equal(catalog.OutcomeRolledBack, s.lastRecord().Outcome)
	s.Empty(s.envs, "the environment still runs the previous release")
}

func (s *deploySuite) TestUnhealthyAfterUpgradeKeepsMaintenance() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(false), nil)
	s.mockHosts(true, "7-abcdef1")
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.Contains(err.Error(), "MAINTENANCE IS STILL ON")
	s.False(s.has("web1:switch:6-1234567"), "never roll back onto old code after an upgrade")
	s.False(s.has("web1:maintenance-off"))
	s.Equal(catalog.OutcomeFailed, s.lastRecord().Outcome)
}

func (s *deploySuite) TestFailedPrepareSwitchesNothing() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(false), nil)
	// Specific mocks first: the first matching one answers.
	s.env.OnActivity(s.h.Prepare, mock.Anything, mock.MatchedBy(func(in agent.PrepareInput) bool { return in.Host == "web2" })).
		Return(nil, temporal.NewNonRetryableApplicationError("only 10 MiB free", agent.ErrDiskFull, nil))
	s.mockHosts(false, "")
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.Contains(err.Error(), "nothing was switched")
	s.False(s.has("web1:switch:7-abcdef1"))
}

func (s *deploySuite) TestApproval() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(true), nil)
	s.mockHosts(false, "")
	s.env.RegisterDelayedCallback(func() {
		// A validator refuses an anonymous approval.
		s.env.UpdateWorkflow(workflows.UpdateApprove, "1", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { s.Contains(err.Error(), "who decides") },
			OnAccept:   func() { s.Fail("anonymous approval accepted") },
			OnComplete: func(any, error) {},
		}, workflows.Approval{})
		s.False(s.has("web1:prepare:7-abcdef1"), "nothing happens before approval")
		s.env.UpdateWorkflow(workflows.UpdateApprove, "2", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { s.Fail("rejected", err.Error()) }, OnAccept: func() {}, OnComplete: func(any, error) {},
		}, workflows.Approval{By: "grace", Reason: "release window"})
	}, time.Minute)
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal("grace", s.lastRecord().ApprovedBy)
	s.True(s.has("web1:switch:7-abcdef1"))
}

func (s *deploySuite) TestRejection() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(true), nil)
	s.mockHosts(false, "")
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(workflows.UpdateReject, "1", &testsuite.TestUpdateCallback{OnReject: func(error) {}, OnAccept: func() {}, OnComplete: func(any, error) {}},
			workflows.Approval{By: "grace", Reason: "not on a Friday"})
	}, time.Minute)
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.Contains(err.Error(), "not on a Friday")
	s.Equal(catalog.OutcomeRejected, s.lastRecord().Outcome)
	s.False(s.has("web1:prepare:7-abcdef1"))
}

func (s *deploySuite) TestApprovalTimeout() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(true), nil)
	s.mockHosts(false, "")
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.Contains(err.Error(), "nobody approved")
	s.Equal(catalog.OutcomeTimedOut, s.lastRecord().Outcome)
}

func (s *deploySuite) TestCancelBeforeSwitchDiscardsPreparedRelease() {
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(plan(false), nil)
	// The upgrade check is slow; the deploy is cancelled while it runs,
	// after both hosts prepared the release.
	s.env.OnActivity(s.h.UpgradeStatus, mock.Anything, mock.Anything).After(time.Minute).Return(&agent.UpgradeDecision{}, nil)
	s.mockHosts(false, "")
	s.env.RegisterDelayedCallback(func() { s.env.CancelWorkflow() }, 30*time.Second)
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	s.Require().Error(s.env.GetWorkflowError())
	s.True(s.has("web1:prepare:7-abcdef1") && s.has("web2:prepare:7-abcdef1"), "%v", s.events)
	s.False(s.has("web1:switch:7-abcdef1"))
	s.True(s.has("web1:discard") && s.has("web2:discard"), "%v", s.events)
	s.Equal(catalog.OutcomeCanceled, s.lastRecord().Outcome)
}

func TestDeployWorkflowID(t *testing.T) {
	require.Equal(t, "deploy/shop/production", workflows.DeployWorkflowID("shop", "production"))
}

func (s *deploySuite) TestSharedStoragePreparesAndSwitchesOnce() {
	p := plan(false)
	p.SharedStorage = true
	s.env.OnActivity(s.d.PlanDeploy, mock.Anything, mock.Anything).Return(p, nil)
	s.mockHosts(false, "")
	s.env.ExecuteWorkflow(workflows.ZeroDowntimeDeploy, deployInput())
	s.Require().NoError(s.env.GetWorkflowError())
	s.True(s.has("web1:prepare:7-abcdef1") && s.has("web1:switch:7-abcdef1"))
	s.False(s.has("web2:prepare:7-abcdef1") || s.has("web2:switch:7-abcdef1"), "one prepare and one switch on shared storage: %v", s.events)
	s.True(s.has("web2:health:7-abcdef1"), "every host is still checked")
}
