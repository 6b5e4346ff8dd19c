package workflows

import (
	"fmt"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
)

// HardenWorkflowID is one hardening run per host at a time: a second
// request while one runs joins it (USE_EXISTING), so two runs never fight
// over the same nginx include or canaries.
func HardenWorkflowID(host string) string { return "harden/" + host }

// QueryProgress answers with HardenProgress.
const QueryProgress = "progress"

// HardenInput starts MagentoM1EOLHardening. It holds no secrets: the
// basic-auth and database passwords are references in the agent's config.
type HardenInput struct {
	Host string
	App  string `json:",omitempty"`
	// Environment, when the starter knows it, is set as a search attribute.
	Environment string `json:",omitempty"`
	// Apply allows remediation; without it nothing on the host changes
	// except temporary verification canaries, which are always removed.
	Apply bool `json:",omitempty"`
	// RequestedBy is recorded in the details ("cli:alice@laptop", "schedule").
	RequestedBy string `json:",omitempty"`
}

// HardenProgress is what the progress query returns.
type HardenProgress struct {
	Phase    string // discover | audit | apply | verify | report | done | failed
	Host     string
	App      string `json:",omitempty"`
	Apply    bool
	Started  time.Time
	WebRoot  string   `json:",omitempty"`
	Audited  int      // checks the audit ran
	Failing  int      // of them failing or needing a person
	Fixed    int      // remediation results with status fixed
	Verified int      // verification results
	Removed  []string `json:",omitempty"` // canaries the cleanup removed
}

var hardenActs *agent.HardenActivities

// MagentoM1EOLHardening audits a Magento 1 / OpenMage host (files,
// database, nginx, PHP-FPM, sshd), optionally remediates what a program
// may change, verifies the rules over real HTTP and returns the report,
// which it also stores beside the artifacts. Every step runs on the host's
// agent. Verification's canaries are removed by a cleanup step that runs in
// a disconnected context, so it runs even when the workflow fails or is
// cancelled (from the moment discovery found the web root).
func MagentoM1EOLHardening(ctx workflow.Context, in HardenInput) (*m1audit.Report, error) {
	if in.Host == "" {
		return nil, temporal.NewNonRetryableApplicationError("hardening needs a host", activities.ErrInvalidInput, nil)
	}
	r := &hardenRun{in: in, req: agent.HardenRequest{Host: in.Host, App: in.App, Apply: in.Apply}}
	r.prog = HardenProgress{Phase: "discover", Host: in.Host, App: in.App, Apply: in.Apply, Started: workflow.Now(ctx).UTC()}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (HardenProgress, error) { return r.prog, nil }); err != nil {
		return nil, err
	}
	var sas []temporal.SearchAttributeUpdate
	if in.App != "" {
		sas = append(sas, searchattr.App.ValueSet(in.App))
	}
	if in.Environment != "" {
		sas = append(sas, searchattr.Environment.ValueSet(in.Environment))
	}
	if len(sas) > 0 {
		if err := workflow.UpsertTypedSearchAttributes(ctx, sas...); err != nil {
			return nil, err
		}
	}
	defer r.cleanup(ctx)
	rep, err := r.run(ctx)
	if err != nil {
		r.prog.Phase = "failed"
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Hardening of %s failed** in %s: %v", in.Host, r.failedIn, err))
		return nil, err
	}
	r.prog.Phase = "done"
	s := rep.Summary
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**Done**: %d checks on %s — %d pass, %d fail, %d fixed, %d need a person%s",
		s.Checks, in.Host, s.Pass, s.Fail, s.Fixed, s.NeedsPerson, compromisedNote(s.Compromised)))
	return rep, nil
}

func compromisedNote(c bool) string {
	if c {
		return " — **signs of compromise: rotate every credential** (see the report's forensic appendix)"
	}
	return ""
}

type hardenRun struct {
	in       HardenInput
	req      agent.HardenRequest
	prog     HardenProgress
	target   m1audit.Target
	failedIn string
	// sweep: the web root is known, so the cleanup runs (canaries can only
	// exist once verification started, but sweeping costs one activity).
	sweep bool
}

func (r *hardenRun) phase(ctx workflow.Context, phase, details string) {
	r.prog.Phase, r.failedIn = phase, phase
	workflow.SetCurrentDetails(ctx, details)
}

func (r *hardenRun) run(ctx workflow.Context) (*m1audit.Report, error) {
	step, audit, err := r.discoverAndAudit(ctx)
	if err != nil {
		return nil, err
	}
	var applied, after []m1audit.CheckResult
	if r.in.Apply {
		if applied, after, err = r.applyAndAuditAgain(ctx, &step, audit); err != nil {
			return nil, err
		}
	}
	verified, err := r.verify(ctx, step)
	if err != nil {
		return nil, err
	}
	r.phase(ctx, "report", fmt.Sprintf("**Writing the report** for %s", r.in.Host))
	var stored agent.HardenStored
	if err := workflow.ExecuteActivity(hostCtx(ctx, r.in.Host, 2*time.Minute, 0), hardenActs.HardenReport, agent.HardenReportInput{
		HardenRequest: r.req, Target: step.Target, Started: r.prog.Started, Audit: audit, Applied: applied, After: after, Verified: verified,
	}).Get(ctx, &stored); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if stored.Report == nil {
		return nil, temporal.NewNonRetryableApplicationError(errNoReport, activities.ErrInvalidInput, nil)
	}
	return stored.Report, nil
}

// errNoReport is the failure of a report step that returned no report.
const errNoReport = "the report step returned no report"

// discoverAndAudit finds the Magento 1 store on the host and audits it,
// counting the failing checks. The step it returns carries the target.
func (r *hardenRun) discoverAndAudit(ctx workflow.Context) (agent.HardenStepInput, []m1audit.CheckResult, error) {
	host := r.in.Host
	mode := "audit only: nothing on the host changes"
	if r.in.Apply {
		mode = "audit and **apply** fixes"
	}
	r.phase(ctx, "discover", fmt.Sprintf("**Discovering** the Magento 1 store on %s (%s)", host, mode))
	var t m1audit.Target
	if err := workflow.ExecuteActivity(hostCtx(ctx, host, 2*time.Minute, 0), hardenActs.HardenDiscover, r.req).Get(ctx, &t); err != nil {
		return agent.HardenStepInput{}, nil, fmt.Errorf("discover: %w", err)
	}
	r.target, r.prog.WebRoot, r.sweep = t, t.WebRoot, true
	step := agent.HardenStepInput{HardenRequest: r.req, Target: t}

	r.phase(ctx, "audit", fmt.Sprintf("**Auditing** %s (Magento %s, root `%s`): files, database, nginx, PHP-FPM, sshd", host, t.Version, t.WebRoot))
	var audit []m1audit.CheckResult
	if err := workflow.ExecuteActivity(hostCtx(ctx, host, 30*time.Minute, 0), hardenActs.HardenAudit, step).Get(ctx, &audit); err != nil {
		return step, nil, fmt.Errorf("audit: %w", err)
	}
	r.prog.Audited = len(audit)
	for _, c := range audit {
		if c.Status == m1audit.StatusFail || c.Status == m1audit.StatusNeedsPerson {
			r.prog.Failing++
		}
	}
	return step, audit, nil
}

// applyAndAuditAgain applies the fixes, then runs discovery and the audit
// again: which failures the changes closed (and proof that they broke no
// check that passed). The target is read anew because remediation changed
// what it describes (the pool's limit_extensions, the vhosts' auth); step
// gets the new target. The apply step also gets the files the audit
// flagged, so their times are recorded before anything changes.
func (r *hardenRun) applyAndAuditAgain(ctx workflow.Context, step *agent.HardenStepInput, audit []m1audit.CheckResult) (applied, after []m1audit.CheckResult, err error) {
	host := r.in.Host
	r.phase(ctx, "apply", fmt.Sprintf("**Applying** fixes on %s: %d of %d checks fail", host, r.prog.Failing, r.prog.Audited))
	applyIn := *step
	applyIn.Flagged = FlaggedFiles(audit)
	if err := workflow.ExecuteActivity(hostCtx(ctx, host, 10*time.Minute, 0), hardenActs.HardenApply, applyIn).Get(ctx, &applied); err != nil {
		return nil, nil, fmt.Errorf("apply: %w", err)
	}
	for _, c := range applied {
		if c.Status == m1audit.StatusFixed {
			r.prog.Fixed++
		}
	}
	r.phase(ctx, "audit", fmt.Sprintf("**Auditing again** after %d fixes on %s", r.prog.Fixed, host))
	// A fresh value: decoding into the old target would keep fields the
	// new JSON omits (false, empty) from it.
	var t m1audit.Target
	if err := workflow.ExecuteActivity(hostCtx(ctx, host, 2*time.Minute, 0), hardenActs.HardenDiscover, r.req).Get(ctx, &t); err != nil {
		return nil, nil, fmt.Errorf("discover after apply: %w", err)
	}
	r.target, r.prog.WebRoot = t, t.WebRoot
	step.Target = t
	if err := workflow.ExecuteActivity(hostCtx(ctx, host, 30*time.Minute, 0), hardenActs.HardenAudit, *step).Get(ctx, &after); err != nil {
		return nil, nil, fmt.Errorf("audit after apply: %w", err)
	}
	return applied, after, nil
}

// verify checks the store over HTTP with temporary canaries, always
// removed. WaitForCancellation: a cancelled run waits until the activity
// has stopped (and deleted its canaries) before the cleanup sweeps, so no
// canary is written after the sweep. A 5 s heartbeat timeout: the
// cancellation reaches the activity with its next heartbeat, within about
// 4 s.
func (r *hardenRun) verify(ctx workflow.Context, step agent.HardenStepInput) ([]m1audit.CheckResult, error) {
	host := r.in.Host
	r.phase(ctx, "verify", fmt.Sprintf("**Verifying** %s over HTTP (temporary canaries, always removed)", host))
	vctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue: agent.HostTaskQueue(host), StartToCloseTimeout: 15 * time.Minute, HeartbeatTimeout: 5 * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 20 * time.Second, MaximumAttempts: 4,
			NonRetryableErrorTypes: []string{activities.ErrConfig, activities.ErrInvalidInput}},
	})
	var verified []m1audit.CheckResult
	if err := workflow.ExecuteActivity(vctx, hardenActs.HardenVerify, step).Get(ctx, &verified); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	r.prog.Verified = len(verified)
	return verified, nil
}

// cleanup removes every canary under the web root, in a context that
// survives the workflow's cancellation. It runs whenever discovery found
// the web root; its failure is logged, not raised, so it never hides the
// run's own outcome.
func (r *hardenRun) cleanup(ctx workflow.Context) {
	if !r.sweep {
		return
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	cctx := workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		TaskQueue: agent.HostTaskQueue(r.in.Host), StartToCloseTimeout: time.Minute, HeartbeatTimeout: 15 * time.Second,
		// An agent that is down now comes back: keep trying for a while.
		ScheduleToCloseTimeout: 30 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrConfig, activities.ErrInvalidInput}},
	})
	var removed []string
	err := workflow.ExecuteActivity(cctx, hardenActs.HardenRemoveCanaries, agent.HardenCleanupInput{HardenRequest: r.req, WebRoot: r.target.WebRoot}).Get(dctx, &removed)
	if err != nil {
		workflow.GetLogger(ctx).Error("canary cleanup failed: delete the files named mageflow-canary-* under the web root by hand", "host", r.in.Host, "root", r.target.WebRoot, "error", err)
		return
	}
	r.prog.Removed = removed
}

// ScheduledHarden is what a `harden` schedule starts: it runs
// MagentoM1EOLHardening as a child under the host's workflow id, so a
// scheduled run and a person's `mageflow harden` never run at once on the
// same host (a schedule's own workflow ids carry a timestamp). When a run
// is in progress already, the scheduled one stands down.
func ScheduledHarden(ctx workflow.Context, in HardenInput) (string, error) {
	if in.RequestedBy == "" {
		in.RequestedBy = "schedule"
	}
	id := HardenWorkflowID(in.Host)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	f := workflow.ExecuteChildWorkflow(cctx, MagentoM1EOLHardening, in)
	if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			workflow.SetCurrentDetails(ctx, fmt.Sprintf("a hardening run of %s is in progress already: %s", in.Host, id))
			return id, nil
		}
		return "", err
	}
	var rep m1audit.Report
	if err := f.Get(ctx, &rep); err != nil {
		return id, err
	}
	s := rep.Summary
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s: %d checks, %d fail, %d fixed, %d need a person%s", in.Host, s.Checks, s.Fail, s.Fixed, s.NeedsPerson, compromisedNote(s.Compromised)))
	return id, nil
}
