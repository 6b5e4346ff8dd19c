package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/front/agentapp"
	"github.com/mageflow/mageflow/internal/front/cli"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
	"github.com/mageflow/mageflow/test/m1store"
	"github.com/mageflow/mageflow/workflows"
)

const hardenHost = "m1web"

// hardenConfig is the hosts: section for the fixture store. Its
// hardening.state_dir is below the store's temp dir, so forensic snapshots
// never land in the machine's /var/lib/mageflow/harden.
func hardenConfig(s *m1store.Store) string {
	q := func(v []string) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	return fmt.Sprintf(`artifacts: {dir: ./artifacts}
hosts:
  %s:
    root: %s
    url: %s
    hardening:
      server_name: %s
      base_url: %s
      basic_auth: {user: ops, password: "file:m1-admin-pass", realm: Shop admin}
      staging_basic_auth: true
      admin_rate_per_minute: 600
      known_admins: [%s]
      deploy_user: root
      state_dir: %s
      timeout: 20s
      nginx: {args: %s, include_dir: %s, http_conf_dir: %s}
      php_fpm: {conf: %s, args: %s}
      sshd: {config: %s, host_keys: [%s], drop_in_dir: %s}
`, hardenHost, filepath.Join(s.Base, "releases"), s.BaseURL(), m1store.ServerName, s.BaseURL(), m1store.Owner,
		filepath.Join(s.Base, "harden-state"), // forensic snapshots stay in the test's temp dir
		q(s.NginxArgs), s.IncludeDir, s.HTTPConfDir, s.FPMConf, q(s.FPMArgs), s.SSHDConfig, s.SSHDHostKey, s.SSHDDrop)
}

// startAgent runs the host's agent worker (as `mageflow-agent`
// would) with cfg; stop it before starting another on the same queue.
func startAgent(t *testing.T, h *harness, cfg *config.Config) worker.Worker {
	t.Helper()
	acts, err := agentapp.NewHostActivities(context.Background(), cfg, hardenHost, "")
	require.NoError(t, err)
	acts.HeartbeatEvery = time.Second
	w := worker.New(h.client, agent.HostTaskQueue(hardenHost), agentapp.WorkerOptions())
	agentapp.Register(w, acts, nil)
	require.NoError(t, w.Start())
	return w
}

// hardenCLI runs `mageflow harden … --wait --json` and returns the report
// and the exit code.
func hardenCLI(t *testing.T, h *harness, extra ...string) (*m1audit.Report, int) {
	t.Helper()
	var out, errb bytes.Buffer
	args := append([]string{"harden", "--config", h.cfgPath, "--host", hardenHost, "--wait", "--json"}, extra...)
	start := time.Now()
	code := cli.Main(args, &out, &errb)
	t.Logf("mageflow %s: exit %d in %s", strings.Join(extra, " "), code, time.Since(start).Round(time.Millisecond))
	var rep m1audit.Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep), "stdout must be the JSON report; stderr: %s", errb.String())
	return &rep, code
}

func results(rep *m1audit.Report) map[string]m1audit.CheckResult {
	m := map[string]m1audit.CheckResult{}
	for _, r := range rep.Results {
		m[r.ID] = r
	}
	return m
}

func dump(rep *m1audit.Report) string {
	var b strings.Builder
	for _, r := range rep.Results {
		fmt.Fprintf(&b, "%-40s %-14s %s\n", r.ID, r.Status, strings.SplitN(r.Evidence.Detail, "\n", 2)[0])
	}
	return b.String()
}

// TestHardenWeakM1Store runs MagentoM1EOLHardening end to end against the
// deliberately weak store: audit only, apply, apply again, and a run
// cancelled while verification waits on a slow page.
func TestHardenWeakM1Store(t *testing.T) {
	s := m1store.Start(t)
	h := newHarnessWith(t, hardenConfig(s), "")
	require.NoError(t, secrets.Area{Dir: h.cfg.Secrets.Dir}.Write("m1-admin-pass", []byte("correct horse battery")))
	agent := startAgent(t, h, h.cfg)
	defer func() { agent.Stop() }()
	vhostBefore, err := os.ReadFile(s.VhostFile)
	require.NoError(t, err)

	// 1. Audit only: every planted problem is found, nothing changes.
	rep, code := hardenCLI(t, h)
	require.Equal(t, 1, code, "failing checks make the CLI exit non-zero")
	t.Logf("audit-only run: %d checks, %d fail, %d need a person, %d requests, %s\n%s", rep.Summary.Checks, rep.Summary.Fail, rep.Summary.NeedsPerson,
		rep.Summary.Requests, rep.Finished.Sub(rep.Started).Round(time.Millisecond), dump(rep))
	t.Logf("audit-only step durations: %v", activityDurations(t, h.client, workflows.HardenWorkflowID(hardenHost)))
	got := results(rep)
	for _, id := range m1store.Planted {
		r, ok := got[id]
		require.True(t, ok, "check %s missing from the report", id)
		require.Contains(t, []m1audit.Status{m1audit.StatusFail, m1audit.StatusNeedsPerson}, r.Status, "planted problem %s must be found: %s", id, r.Evidence.Detail)
	}
	for _, id := range []string{"m1.http.php_exec.skin", "m1.http.path.local_xml", "m1.http.path.git_config", "m1.http.path.downloader", "m1.http.staging_auth", "m1.http.pages.signatures"} {
		require.Equal(t, m1audit.StatusFail, got[id].Status, "verification over HTTP must show %s open: %s", id, got[id].Evidence.Detail)
	}
	require.True(t, rep.Summary.Compromised, "malware, skimmer and rogue admin are signs of compromise")
	require.NotNil(t, rep.Forensics)
	require.NotEmpty(t, rep.Forensics.Files)
	require.False(t, rep.Summary.Changed)
	require.Empty(t, s.Canaries(t), "canaries are always removed")
	vhostNow, _ := os.ReadFile(s.VhostFile)
	require.Equal(t, string(vhostBefore), string(vhostNow), "without --apply the vhost is untouched")
	_, err = os.Stat(s.IncludeDir)
	require.True(t, os.IsNotExist(err), "without --apply no include is written")
	js, err := catalog.LatestHardenReport(context.Background(), h.acts.Store, hardenHost, "json")
	require.NoError(t, err, "the report is stored beside the artifacts")
	require.Contains(t, string(js), `"m1.db.admin_users"`)
	md, err := catalog.LatestHardenReport(context.Background(), h.acts.Store, hardenHost, "md")
	require.NoError(t, err)
	require.Contains(t, strings.ToLower(string(md)), "rotate")
	require.NotContains(t, string(md), s.DBPassword, "no secret in the report")
	require.NotContains(t, string(js), "correct horse battery")

	// 2. Apply: what may be fixed is fixed and verified over HTTP.
	rep, _ = hardenCLI(t, h, "--apply")
	t.Logf("apply run: %d checks, %d fail, %d fixed, %d need a person\n%s", rep.Summary.Checks, rep.Summary.Fail, rep.Summary.Fixed, rep.Summary.NeedsPerson, dump(rep))
	t.Logf("apply step durations: %v", activityDurations(t, h.client, workflows.HardenWorkflowID(hardenHost)))
	got = results(rep)
	require.True(t, rep.Summary.Changed)
	for _, id := range m1store.Fixable {
		require.Equal(t, m1audit.StatusFixed, got[id].Status, "%s must be fixed by --apply: %s", id, got[id].Evidence.Detail)
		require.NotEmpty(t, got[id].Before)
	}
	for _, id := range []string{"m1.http.php_exec.media", "m1.http.php_exec.skin", "m1.http.php_exec.js", "m1.http.php_exec.media_image",
		"m1.http.path.local_xml", "m1.http.path.git_config", "m1.http.path.downloader", "m1.http.path.var_export", "m1.http.path.errors_local_xml",
		"m1.http.staging_auth", "m1.http.admin.front", "m1.http.admin.shoplift", "m1.http.misc_scripts_post"} {
		require.Equal(t, m1audit.StatusPass, got[id].Status, "verification must pass for %s after --apply: %s", id, got[id].Evidence.Detail)
	}
	for _, id := range []string{"m1.db.config_scripts", "m1.db.admin_users", "m1.files.signature"} {
		require.NotEqual(t, m1audit.StatusPass, got[id].Status, "%s is for a person: --apply never deletes evidence", id)
	}
	require.Empty(t, s.Canaries(t))
	code2, _ := s.Get(t, m1store.ServerName, "/skin/error.php")
	require.Contains(t, []int{403, 404}, code2, "the dropped backdoor no longer runs")

	// 3. Apply again: nothing changes.
	rep, _ = hardenCLI(t, h, "--apply")
	require.False(t, rep.Summary.Changed, "a second --apply changes nothing:\n%s", dump(rep))
	for _, r := range rep.Results {
		require.NotEqual(t, m1audit.StatusFixed, r.Status, "%s changed on the second run", r.ID)
	}

	// 3b. The daily schedule: `schedule apply` creates it, a trigger runs
	// the same hardening (under harden/<host>) and stores a new report.
	before, err := catalog.LatestHardenReport(context.Background(), h.acts.Store, hardenHost, "json")
	require.NoError(t, err)
	cfgYAML, err := os.ReadFile(h.cfgPath)
	require.NoError(t, err)
	sched := "harden-" + strings.ToLower(t.Name())
	cfgYAML = append(cfgYAML, fmt.Sprintf("schedules:\n  %s: {cron: \"30 4 * * *\", action: harden, host: %s, apply: true}\n", sched, hardenHost)...)
	require.NoError(t, os.WriteFile(h.cfgPath, cfgYAML, 0o644))
	var out, errb bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"schedule", "apply", "--config", h.cfgPath}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "created mageflow-"+sched)
	handle := h.client.ScheduleClient().GetHandle(context.Background(), "mageflow-"+sched)
	t.Cleanup(func() { _ = handle.Delete(context.Background()) })
	require.NoError(t, handle.Trigger(context.Background(), client.ScheduleTriggerOptions{}))
	require.Eventually(t, func() bool {
		now, err := catalog.LatestHardenReport(context.Background(), h.acts.Store, hardenHost, "json")
		return err == nil && !bytes.Equal(now, before)
	}, 30*time.Second, 100*time.Millisecond, "the scheduled run stores a new report")
	require.Eventually(t, func() bool {
		d, err := h.client.DescribeWorkflow(context.Background(), workflows.HardenWorkflowID(hardenHost), "")
		return err == nil && d.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}, 30*time.Second, 100*time.Millisecond)

	// 4. Cancelled mid-verify: the canaries still go.
	agent.Stop()
	slow := *h.cfg
	slow.Hosts = map[string]*config.Host{}
	hc := *h.cfg.Hosts[hardenHost]
	hd := *hc.Hardening
	hd.Pages = []string{"/", m1store.SlowPath}
	hc.Hardening = &hd
	slow.Hosts[hardenHost] = &hc
	agent = startAgent(t, h, &slow)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := start.Harden(ctx, h.client, h.cfg, workflows.HardenInput{Host: hardenHost})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(s.Canaries(t)) > 0 }, 30*time.Second, 20*time.Millisecond, "verification writes canaries")
	canaries := s.Canaries(t)
	require.NoError(t, h.client.CancelWorkflow(ctx, run.GetID(), run.GetRunID()))
	err = run.Get(ctx, nil)
	var canceled *temporal.CanceledError
	require.ErrorAs(t, err, &canceled, "the run ends cancelled")
	require.Empty(t, s.Canaries(t), "no canary survives a cancelled run (had %v)", canaries)
	require.True(t, removedByCleanup(t, h.client, run), "the disconnected cleanup activity ran after the cancellation")
}

// removedByCleanup says whether the run's history holds a completed
// HardenRemoveCanaries activity.
func removedByCleanup(t *testing.T, c client.Client, run client.WorkflowRun) bool {
	t.Helper()
	it := c.GetWorkflowHistory(context.Background(), run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]string{}
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[e.EventId] = a.ActivityType.GetName()
		}
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.ScheduledEventId] == "HardenRemoveCanaries" {
			return true
		}
	}
	return false
}

// activityDurations sums each activity type's start-to-close time in the
// latest run of id (for the figures the test logs).
func activityDurations(t *testing.T, c client.Client, id string) map[string]time.Duration {
	t.Helper()
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	typ := map[int64]string{}
	started := map[int64]time.Time{}
	out := map[string]time.Duration{}
	for it.HasNext() {
		e, err := it.Next()
		require.NoError(t, err)
		switch {
		case e.GetActivityTaskScheduledEventAttributes() != nil:
			typ[e.EventId] = e.GetActivityTaskScheduledEventAttributes().ActivityType.GetName()
		case e.GetActivityTaskStartedEventAttributes() != nil:
			started[e.GetActivityTaskStartedEventAttributes().ScheduledEventId] = e.EventTime.AsTime()
		case e.GetActivityTaskCompletedEventAttributes() != nil:
			sid := e.GetActivityTaskCompletedEventAttributes().ScheduledEventId
			out[typ[sid]] += e.EventTime.AsTime().Sub(started[sid]).Round(time.Millisecond)
		}
	}
	return out
}
