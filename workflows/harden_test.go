package workflows_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/workflows"
)

// hardenRig mocks the host's hardening activities and records the calls.
type hardenRig struct {
	env *testsuite.TestWorkflowEnvironment
	mu  sync.Mutex
	// calls in order, e.g. "discover", "audit", "apply", "verify", "report", "cleanup:/srv/shop".
	calls []string
	// verify decides the Verify mock's behaviour.
	verify func(ctx context.Context) ([]m1audit.CheckResult, error)
	report error
	// audit (nil: one failing check) gets the call number, 1-based.
	audit       func(n int) []m1audit.CheckResult
	audits      int
	discoverErr error
	// applyIn is the input HardenApply got.
	applyIn agent.HardenStepInput
}

func (r *hardenRig) called(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *hardenRig) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c == s {
			n++
		}
	}
	return n
}

func newHardenRig(t *testing.T) *hardenRig {
	var s testsuite.WorkflowTestSuite
	r := &hardenRig{env: s.NewTestWorkflowEnvironment()}
	var h *agent.HardenActivities
	r.env.RegisterActivity(h)
	r.env.RegisterWorkflow(workflows.MagentoM1EOLHardening)
	r.env.OnActivity(h.HardenDiscover, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.HardenRequest) (*m1audit.Target, error) {
		r.called("discover")
		require.Equal(t, "web1", in.Host)
		if r.discoverErr != nil {
			return nil, r.discoverErr
		}
		return &m1audit.Target{WebRoot: "/srv/shop", Version: "1.9.4.5"}, nil
	})
	r.env.OnActivity(h.HardenAudit, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.HardenStepInput) ([]m1audit.CheckResult, error) {
		r.called("audit")
		require.Equal(t, "/srv/shop", in.Target.WebRoot, "later steps get discovery's target")
		r.audits++
		if r.audit != nil {
			return r.audit(r.audits), nil
		}
		return []m1audit.CheckResult{{ID: "m1.fpm.limit_extensions", Status: m1audit.StatusFail}}, nil
	})
	r.env.OnActivity(h.HardenApply, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.HardenStepInput) ([]m1audit.CheckResult, error) {
		r.called("apply")
		require.True(t, in.Apply)
		r.mu.Lock()
		r.applyIn = in
		r.mu.Unlock()
		return []m1audit.CheckResult{{ID: "m1.fix.fpm.limit_extensions", Status: m1audit.StatusFixed}}, nil
	})
	r.env.OnActivity(h.HardenVerify, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ agent.HardenStepInput) ([]m1audit.CheckResult, error) {
		r.called("verify")
		if r.verify != nil {
			return r.verify(ctx)
		}
		return []m1audit.CheckResult{{ID: "m1.http.php_exec.media", Status: m1audit.StatusPass}}, nil
	})
	r.env.OnActivity(h.HardenReport, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.HardenReportInput) (*agent.HardenStored, error) {
		r.called("report")
		if r.report != nil {
			return nil, r.report
		}
		rep := &m1audit.Report{Host: in.Host, Apply: in.Apply, Results: agent.MergeHardenResults(in.Audit, in.After, in.Applied, in.Verified)}
		m1audit.Finalize(rep)
		return &agent.HardenStored{Report: rep, JSONKey: "reports/harden/web1/x.json"}, nil
	})
	r.env.OnActivity(h.HardenRemoveCanaries, mock.Anything, mock.Anything).Return(func(_ context.Context, in agent.HardenCleanupInput) ([]string, error) {
		r.called("cleanup:" + in.WebRoot)
		return []string{in.WebRoot + "/media/mageflow-canary-0123456789abcdef.php"}, nil
	})
	return r
}

func TestHardenAuditOnlyNeverApplies(t *testing.T) {
	r := newHardenRig(t)
	r.env.ExecuteWorkflow(workflows.MagentoM1EOLHardening, workflows.HardenInput{Host: "web1", App: "legacy"})
	require.NoError(t, r.env.GetWorkflowError())
	require.Equal(t, []string{"discover", "audit", "verify", "report", "cleanup:/srv/shop"}, r.calls, "without Apply nothing is remediated")
	var rep m1audit.Report
	require.NoError(t, r.env.GetWorkflowResult(&rep))
	require.Equal(t, "web1", rep.Host)
	require.Equal(t, 2, rep.Summary.Checks)
	require.Equal(t, 1, rep.Summary.Fail)
	require.False(t, rep.Summary.Changed)

	v, err := r.env.QueryWorkflow(workflows.QueryProgress)
	require.NoError(t, err)
	var p workflows.HardenProgress
	require.NoError(t, v.Get(&p))
	require.Equal(t, "done", p.Phase)
	require.Equal(t, 1, p.Audited)
	require.Equal(t, 1, p.Failing)
	require.Equal(t, []string{"/srv/shop/media/mageflow-canary-0123456789abcdef.php"}, p.Removed)
}

func TestHardenApplyAuditsAgainAndReportsFixed(t *testing.T) {
	r := newHardenRig(t)
	r.audit = func(n int) []m1audit.CheckResult {
		if n == 1 {
			return []m1audit.CheckResult{{ID: "m1.fpm.limit_extensions", Status: m1audit.StatusFail, Evidence: m1audit.Evidence{Detail: "limit_extensions unset"}}}
		}
		return []m1audit.CheckResult{{ID: "m1.fpm.limit_extensions", Status: m1audit.StatusPass, Evidence: m1audit.Evidence{Detail: ".php"}}}
	}
	r.env.ExecuteWorkflow(workflows.MagentoM1EOLHardening, workflows.HardenInput{Host: "web1", Apply: true})
	require.NoError(t, r.env.GetWorkflowError())
	require.Equal(t, []string{"discover", "audit", "apply", "discover", "audit", "verify", "report", "cleanup:/srv/shop"}, r.calls)
	var rep m1audit.Report
	require.NoError(t, r.env.GetWorkflowResult(&rep))
	require.Equal(t, m1audit.StatusFixed, rep.Results[0].Status, "failed before, passes after: fixed")
	require.Equal(t, "fail: limit_extensions unset", rep.Results[0].Before)
	require.Equal(t, "fixed: .php", rep.Results[0].After)
	require.True(t, rep.Summary.Changed)
}

func TestHardenCleanupRunsWhenVerifyFails(t *testing.T) {
	r := newHardenRig(t)
	r.verify = func(context.Context) ([]m1audit.CheckResult, error) {
		return nil, temporal.NewNonRetryableApplicationError("origin does not answer", "VerifyFailed", nil)
	}
	r.env.ExecuteWorkflow(workflows.MagentoM1EOLHardening, workflows.HardenInput{Host: "web1"})
	err := r.env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "verify")
	require.Equal(t, 1, r.count("cleanup:/srv/shop"), "canaries are swept after a failed verification")
	require.Zero(t, r.count("report"))
}

func TestHardenCleanupRunsWhenReportFails(t *testing.T) {
	r := newHardenRig(t)
	r.report = temporal.NewNonRetryableApplicationError("store is read-only", activities.ErrConfig, nil)
	r.env.ExecuteWorkflow(workflows.MagentoM1EOLHardening, workflows.HardenInput{Host: "web1"})
	require.Error(t, r.env.GetWorkflowError())
	require.Equal(t, 1, r.count("cleanup:/srv/shop"))
}

func TestHardenCleanupRunsWhenCancelledMidVerify(t *testing.T) {
	r := newHardenRig(t)
	stopped := make(chan struct{})
	r.verify = func(ctx context.Context) ([]m1audit.CheckResult, error) {
		// Like the real activity: cancellation arrives with a heartbeat.
		deadline := time.After(30 * time.Second)
		for {
			activity.RecordHeartbeat(ctx, agent.VerifyProgress{Phase: "verify"})
			select {
			case <-ctx.Done():
				close(stopped)
				return nil, ctx.Err()
			case <-deadline:
				return nil, errors.New("verification was never cancelled")
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	r.env.RegisterDelayedCallback(func() { r.env.CancelWorkflow() }, time.Second)
	r.env.ExecuteWorkflow(workflows.MagentoM1EOLHardening, workflows.HardenInput{Host: "web1", Apply: true})
	err := r.env.GetWorkflowError()
	require.Error(t, err)
	var canceled *temporal.CanceledError
	require.ErrorAs(t, err, &canceled)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the verify activity must see the cancellation (its context ends)")
	}
	require.Equal(t, 1, r.count("cleanup:/srv/shop"), "the disconnected cleanup runs after cancellation")
	require.Zero(t, r.count("report"))
	idxVerify, idxClean := -1, -1
	for i, c := range r.calls {
		switch c {
		case "verify":
			idxVerify = i
		case "cleanup:/srv/shop":
			idxClean = i
		}
	}
	require.Less(t, idxVerify, idxClean)
}

func TestHardenNoSweepWhenDiscoveryFails(t *testing.T) {
	r := newHardenRig(t)
	r.discoverErr = temporal.NewNonRetryableApplicationError("no app/Mage.php", activities.ErrConfig, nil)
	r.env.ExecuteWorkflow(workflows.MagentoM1EOLHardening, workflows.HardenInput{Host: "web1"})
	require.Error(t, r.env.GetWorkflowError())
	require.Equal(t, []string{"discover"}, r.calls, "nothing else ran on the host, so there is nothing to sweep")
}

func TestHardenNeedsHost(t *testing.T) {
	r := newHardenRig(t)
	r.env.ExecuteWorkflow(workflows.MagentoM1EOLHardening, workflows.HardenInput{})
	require.ErrorContains(t, r.env.GetWorkflowError(), "needs a host")
}

func TestHardenWorkflowID(t *testing.T) {
	require.Equal(t, "harden/web1", workflows.HardenWorkflowID("web1"))
}
