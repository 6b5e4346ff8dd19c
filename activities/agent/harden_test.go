package agent_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
)

type hardenFixture struct {
	root string // the Magento root
	acts *agent.HardenActivities
	env  *testsuite.TestActivityEnvironment
}

// newHardenFixture is an agent for host "m1" whose store root holds just
// media/, skin/ and js/ (enough for canaries) and app/Mage.php.
func newHardenFixture(t *testing.T, hardening string) *hardenFixture {
	t.Helper()
	dir := t.TempDir()
	f := &hardenFixture{root: filepath.Join(dir, "www")}
	for _, d := range []string{"media", "skin", "js", "app"} {
		require.NoError(t, os.MkdirAll(filepath.Join(f.root, d), 0o755))
	}
	yml := fmt.Sprintf("artifacts: {dir: %s/artifacts}\nsecrets: {dir: %s/secrets}\nhosts:\n  m1:\n    root: %s/srv\n    url: http://127.0.0.1:1\n%s", dir, dir, dir, hardening)
	p := filepath.Join(dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yml), 0o644))
	cfg, err := config.Load(p, false)
	require.NoError(t, err)
	st, err := store.NewLocal(cfg.Artifacts.Dir)
	require.NoError(t, err)
	f.acts = &agent.HardenActivities{Host: "m1", Config: cfg, Store: st, Secrets: secrets.Area{Dir: cfg.Secrets.Dir}, HeartbeatEvery: 100 * time.Millisecond}
	var s testsuite.WorkflowTestSuite
	f.env = s.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.acts)
	return f
}

func (f *hardenFixture) canary(t *testing.T, dir, name string) string {
	p := filepath.Join(f.root, dir, name)
	require.NoError(t, os.WriteFile(p, []byte("<?php echo 'nonce';"), 0o644))
	return p
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func TestHardenRemoveCanariesSweepsOnlyCanaries(t *testing.T) {
	f := newHardenFixture(t, "")
	c1 := f.canary(t, "media", "mageflow-canary-0123456789abcdef.php")
	c2 := f.canary(t, "js", "mageflow-canary-fedcba9876543210.jpg")
	keep := f.canary(t, "skin", "error.php")
	v, err := f.env.ExecuteActivity(f.acts.HardenRemoveCanaries, agent.HardenCleanupInput{HardenRequest: agent.HardenRequest{Host: "m1"}, WebRoot: f.root})
	require.NoError(t, err)
	var removed []string
	require.NoError(t, v.Get(&removed))
	require.ElementsMatch(t, []string{c1, c2}, removed)
	require.False(t, exists(c1) || exists(c2))
	require.True(t, exists(keep), "evidence is never deleted: only files named as canaries")

	// Without a known root (discovery failed) there is nothing to sweep.
	v, err = f.env.ExecuteActivity(f.acts.HardenRemoveCanaries, agent.HardenCleanupInput{HardenRequest: agent.HardenRequest{Host: "m1"}})
	require.NoError(t, err)
	require.NoError(t, v.Get(&removed))
	require.Empty(t, removed)
}

func TestHardenStepsRefuseAnotherHost(t *testing.T) {
	f := newHardenFixture(t, "")
	_, err := f.env.ExecuteActivity(f.acts.HardenRemoveCanaries, agent.HardenCleanupInput{HardenRequest: agent.HardenRequest{Host: "web9"}, WebRoot: f.root})
	require.ErrorContains(t, err, `this agent serves host "m1"`)
}

func TestHardenApplyRefusesWithoutApply(t *testing.T) {
	f := newHardenFixture(t, "")
	_, err := f.env.ExecuteActivity(f.acts.HardenApply, agent.HardenStepInput{HardenRequest: agent.HardenRequest{Host: "m1"}, Target: m1audit.Target{WebRoot: f.root}})
	require.ErrorContains(t, err, "without Apply")
}

// A retried verification first deletes the canaries the killed attempt
// recorded in its heartbeat — even when the retry then fails.
func TestHardenVerifyRetryRemovesEarlierCanaries(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	l.Close() // nothing answers: verification fails after the sweep
	f := newHardenFixture(t, fmt.Sprintf("    hardening: {base_url: \"http://%s\", server_name: shop.test}\n", closed))
	left := f.canary(t, "skin", "mageflow-canary-00000000000000aa.php")
	outside := filepath.Join(t.TempDir(), "victim.txt")
	require.NoError(t, os.WriteFile(outside, []byte("x"), 0o644))
	f.env.SetHeartbeatDetails(agent.VerifyProgress{Phase: "verify", Canaries: []string{left, outside}})
	_, err = f.env.ExecuteActivity(f.acts.HardenVerify, agent.HardenStepInput{HardenRequest: agent.HardenRequest{Host: "m1"}, Target: m1audit.Target{WebRoot: f.root}})
	require.Error(t, err, "the origin does not answer")
	require.False(t, exists(left), "the earlier attempt's canary is gone")
	require.True(t, exists(outside), "heartbeat details never name files outside the web root")
}

func TestHardenReportStoresJSONAndMarkdownWithoutSecrets(t *testing.T) {
	f := newHardenFixture(t, "    hardening:\n      db: {host: 127.0.0.1, name: shop, user: audit, password: \"file:dbpass\"}\n")
	require.NoError(t, f.acts.Secrets.Write("dbpass", []byte("s3cr3t-db")))
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v, err := f.env.ExecuteActivity(f.acts.HardenReport, agent.HardenReportInput{
		HardenRequest: agent.HardenRequest{Host: "m1", Apply: true}, Target: m1audit.Target{WebRoot: f.root}, Started: started,
		Audit: []m1audit.CheckResult{
			{ID: "m1.fpm.limit_extensions", Status: m1audit.StatusFail, Evidence: m1audit.Evidence{Detail: "unset"}},
			{ID: "m1.db.admin_users", Status: m1audit.StatusFail, Compromise: true},
		},
		After:    []m1audit.CheckResult{{ID: "m1.fpm.limit_extensions", Status: m1audit.StatusPass, Evidence: m1audit.Evidence{Detail: ".php"}}, {ID: "m1.db.admin_users", Status: m1audit.StatusFail}},
		Applied:  []m1audit.CheckResult{{ID: "m1.fix.fpm.limit_extensions", Status: m1audit.StatusFixed}},
		Verified: []m1audit.CheckResult{{ID: "m1.http.php_exec.media", Status: m1audit.StatusPass}},
	})
	require.NoError(t, err)
	var stored agent.HardenStored
	require.NoError(t, v.Get(&stored))
	require.Equal(t, "reports/harden/m1/20260102T030405.000Z.json", stored.JSONKey)
	rep := stored.Report
	require.Equal(t, 4, rep.Summary.Checks)
	require.Equal(t, 2, rep.Summary.Fixed)
	require.True(t, rep.Summary.Changed)
	require.True(t, rep.Summary.Compromised, "a compromise found before remediation stays in the report")
	require.NotNil(t, rep.Forensics)
	for _, ext := range []string{"json", "md"} {
		b, err := catalog.LatestHardenReport(context.Background(), f.acts.Store, "m1", ext)
		require.NoError(t, err)
		require.NotContains(t, string(b), "s3cr3t-db")
		require.Contains(t, string(b), "m1.fpm.limit_extensions")
	}
}

func TestMergeHardenResults(t *testing.T) {
	fail := func(id string) m1audit.CheckResult {
		return m1audit.CheckResult{ID: id, Status: m1audit.StatusFail, Evidence: m1audit.Evidence{Detail: "open"}}
	}
	pass := func(id string) m1audit.CheckResult {
		return m1audit.CheckResult{ID: id, Status: m1audit.StatusPass, Evidence: m1audit.Evidence{Detail: "closed"}}
	}
	out := agent.MergeHardenResults(
		[]m1audit.CheckResult{fail("a"), fail("b"), pass("c")},
		[]m1audit.CheckResult{pass("a"), fail("b"), pass("c")},
		[]m1audit.CheckResult{{ID: "m1.fix.x", Status: m1audit.StatusFixed}},
		[]m1audit.CheckResult{fail("c"), pass("a"), pass("v")},
	)
	got := map[string]m1audit.CheckResult{}
	var order []string
	for _, r := range out {
		got[r.ID] = r
		order = append(order, r.ID)
	}
	require.Equal(t, []string{"a", "b", "c", "m1.fix.x", "v"}, order)
	require.Equal(t, m1audit.StatusFixed, got["a"].Status, "failed, then passes after apply and over HTTP: fixed")
	require.Equal(t, "fail: open", got["a"].Before)
	require.Equal(t, "fixed: closed", got["a"].After)
	require.Equal(t, m1audit.StatusFail, got["b"].Status)
	require.Empty(t, got["b"].Before, "no change, no before/after")
	require.Equal(t, m1audit.StatusFail, got["c"].Status, "verification overrules a passing audit")
	require.Equal(t, "open", got["c"].Evidence.Detail[len(got["c"].Evidence.Detail)-4:])

	// Audit only: no after, verification still overrules.
	out = agent.MergeHardenResults([]m1audit.CheckResult{pass("x")}, nil, nil, []m1audit.CheckResult{fail("x")})
	require.Equal(t, m1audit.StatusFail, out[0].Status)
}
