package test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
	"github.com/mageflow/mageflow/workflows"
)

// TestDeployTwentyUnderLoad deploys 20 releases (no database upgrade) to two
// hosts while 8 clients hammer the balancer: not one request may fail, and
// every request that starts once both hosts switched is answered by the new
// release.
func TestDeployTwentyUnderLoad(t *testing.T) {
	e := newDeployEnv(t, "loadshop", deployEnvOptions{})
	hosts := e.stack.HostNames()

	// The first deploy upgrades the empty database: before the load.
	first := e.build()
	rec := e.mustDeploy(first.ID)
	require.True(t, rec.UpgradeNeeded, "the first deploy onto an empty database must upgrade it")
	e.requireCurrent(first.ID)
	requireTransfers(t, rec, hosts, catalog.TransferFull, "")

	w := e.stack.Watch(5 * time.Millisecond)
	defer w.Stop()
	load := deploystack.StartLoad(e.stack.BalancerURL, loadClients, loadPause)
	defer load.Stop()

	var intervals []served
	var durations []time.Duration
	for i := 1; i <= 20; i++ {
		m := e.release(fmt.Sprintf("load-%02d", i))
		prev, err := e.stack.Current(hosts[0])
		require.NoError(t, err)
		tampered := i == 10
		if tampered {
			// A hot fix on one host's live release: that host must not
			// link it into the next release, and falls back to the
			// full download; the other hosts still take the delta.
			editInPlace(t, hostops.ReleaseDir(e.stack.Host(hosts[0]).Root, e.app, prev))
		}
		start := time.Now()
		if n := len(intervals); n > 0 {
			intervals[n-1].to = start
		}
		rec := e.mustDeploy(m.ID)
		durations = append(durations, time.Since(start))
		require.False(t, rec.UpgradeNeeded, "deploy %d: a marker change must not need an upgrade (reasons %v)", i, rec.UpgradeReasons)
		require.Nil(t, rec.MaintenanceFrom, "deploy %d went into maintenance", i)
		if tampered {
			requireTransfers(t, rec, hosts[:1], catalog.TransferFull, "")
			requireTransfers(t, rec, hosts[1:], catalog.TransferDelta, prev)
		} else {
			requireTransfers(t, rec, hosts, catalog.TransferDelta, prev)
		}
		at, err := w.AllSwitchedAt(hosts, m.ID, start)
		require.NoError(t, err)
		intervals = append(intervals, served{release: m.ID, from: at})
		t.Logf("deploy %2d: %s in %s;%s", i, m.ID, durations[i-1].Round(time.Millisecond), stepSeconds(rec))
	}
	intervals[len(intervals)-1].to = time.Now()
	samples := load.Stop()
	w.Stop()
	require.Empty(t, w.Problems(), "current pointed at an incomplete release")
	loadReport(t, samples, intervals, nil, 0)
	sum := deploystack.Summarize(samples, nil)
	require.Zero(t, sum.Failed)
	require.Greater(t, sum.N, 200, "the load must have run")
	e.requireCurrent(intervals[len(intervals)-1].release)
}

// TestDeployUpgradeMaintenanceWindow deploys two releases that need
// setup:upgrade under load: requests may fail only inside the recorded
// maintenance window, and only with 503 + Retry-After.
func TestDeployUpgradeMaintenanceWindow(t *testing.T) {
	e := newDeployEnv(t, "upshop", deployEnvOptions{})
	hosts := e.stack.HostNames()
	first := e.build()
	e.mustDeploy(first.ID)

	w := e.stack.Watch(5 * time.Millisecond)
	defer w.Stop()
	load := deploystack.StartLoad(e.stack.BalancerURL, loadClients, loadPause)
	defer load.Stop()
	servedAtLeast(t, load, 20) // some load before the first window

	var windows []maintenance
	var intervals []served
	for i := 1; i <= 2; i++ {
		require.NoError(t, deploystack.CommitUpgrade(e.repo))
		m := e.build()
		start := time.Now()
		if n := len(intervals); n > 0 {
			intervals[n-1].to = start
		}
		rec := e.mustDeploy(m.ID)
		require.True(t, rec.UpgradeNeeded, "deploy %d: a setup_version bump must need an upgrade", i)
		require.NotEmpty(t, rec.UpgradeReasons)
		require.NotNil(t, rec.MaintenanceFrom, "deploy %d recorded no maintenance start", i)
		require.NotNil(t, rec.MaintenanceTo, "deploy %d recorded no maintenance end", i)
		require.True(t, rec.MaintenanceTo.After(*rec.MaintenanceFrom))
		windows = append(windows, maintenance{release: m.ID, from: *rec.MaintenanceFrom, to: *rec.MaintenanceTo})
		at, err := w.AllSwitchedAt(hosts, m.ID, start)
		require.NoError(t, err)
		// With maintenance, the new release serves everyone only once
		// maintenance is lifted.
		from := at
		if rec.MaintenanceTo.After(from) {
			from = *rec.MaintenanceTo
		}
		intervals = append(intervals, served{release: m.ID, from: from.Add(time.Second)})
		t.Logf("upgrade deploy %d: %s, maintenance %s (%s → %s), reasons %v;%s", i, m.ID,
			rec.MaintenanceTo.Sub(*rec.MaintenanceFrom).Round(time.Millisecond), rec.MaintenanceFrom.Format("15:04:05.000"),
			rec.MaintenanceTo.Format("15:04:05.000"), rec.UpgradeReasons, stepSeconds(rec))
		servedAtLeast(t, load, load.Count()+20) // the new release serves a while before the next deploy
	}
	intervals[len(intervals)-1].to = time.Now()
	samples := load.Stop()
	w.Stop()
	require.Empty(t, w.Problems())
	n503 := loadReport(t, samples, intervals, windows, time.Second)
	require.Positive(t, n503, "the load never saw the maintenance page: the window was not observed")
	e.requireCurrent(intervals[len(intervals)-1].release)
}

// TestDeployAutoRollback deploys a release whose storefront answers 500:
// the deploy switches, finds it unhealthy, switches back and says so.
func TestDeployAutoRollback(t *testing.T) {
	e := newDeployEnv(t, "rbshop", deployEnvOptions{})
	good := e.build()
	e.mustDeploy(good.ID)

	require.NoError(t, deploystack.CommitEdit(e.repo, "pub/index.php", "Break the storefront", func(s string) (string, error) {
		const anchor = "require $root . '/vendor/autoload.php';"
		if !strings.Contains(s, anchor) {
			return "", errors.New("pub/index.php no longer loads the autoloader the way this test expects")
		}
		return strings.Replace(s, anchor, "http_response_code(500);\necho \"broken release\\n\";\nexit(1);\n"+anchor, 1), nil
	}))
	bad := e.build()
	rec, err := e.deploy("production", bad.ID)
	require.Error(t, err)
	require.Contains(t, err.Error(), "rolled back")
	require.Contains(t, err.Error(), "HTTP 500")
	require.NotNil(t, rec)
	require.Equal(t, catalog.OutcomeRolledBack, rec.Outcome)
	require.Equal(t, good.ID, rec.ReleaseID, "the record names what runs now")
	e.requireCurrent(good.ID)
	resp, err := http.Get(e.stack.BalancerURL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, good.ID, resp.Header.Get(webstack.ReleaseHeader))
	t.Logf("rolled back: %s;%s", rec.Error, stepSeconds(rec))
}

// TestDeployDiskFull puts web2's root on a 2 MiB tmpfs. A delta needs
// room only for the files it writes: a 1 MiB change fits although a full
// prepare (artifact plus unpacked tree) would not. A change bigger than the
// disk fails in prepare, before any host switched, naming the disk.
func TestDeployDiskFull(t *testing.T) {
	requireRoot(t, "this test mounts a tmpfs")
	small := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Fatalf("mount a 2 MiB tmpfs on %s (needs CAP_SYS_ADMIN): %v: %s", small, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", small).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", small, err, out)
		}
	})
	e := newDeployEnv(t, "diskshop", deployEnvOptions{roots: map[string]string{"web2": small}})
	first := e.build()
	e.mustDeploy(first.ID)

	// 1 MiB that zstd cannot shrink: the artifact plus its unpacked tree
	// would not fit beside the first release, the delta's new bytes do.
	fits := e.commitBlob(1<<20, "fits.bin")
	rec := e.mustDeploy(fits.ID)
	requireTransfers(t, rec, []string{"web2"}, catalog.TransferDelta, first.ID)

	big := e.commitBlob(3<<20, "big.bin")
	rec, err := e.deploy("production", big.ID)
	require.Error(t, err)
	require.Contains(t, err.Error(), "prepare failed, nothing was switched")
	require.Contains(t, err.Error(), agent.ErrDiskFull)
	require.Contains(t, err.Error(), "web2")
	require.Equal(t, catalog.OutcomeFailed, rec.Outcome)
	for _, st := range rec.Steps {
		require.NotEqual(t, "switch", st.Name, "no switch may have started")
	}
	e.requireCurrent(fits.ID)
	t.Logf("%s", rec.Error)
}

// commitBlob commits n random bytes (zstd cannot shrink them) as name and
// builds the commit.
func (e *deployEnv) commitBlob(n int, name string) *release.Meta {
	e.t.Helper()
	blob := make([]byte, n)
	_, _ = rand.Read(blob)
	require.NoError(e.t, os.WriteFile(filepath.Join(e.repo, "app/code/Vendor/Module", name), blob, 0o644))
	require.NoError(e.t, deploystack.Commit(e.repo, "Add "+name))
	m := e.build()
	require.Greater(e.t, m.Artifact.Size, int64(n*9/10))
	return m
}

// TestDeploySerialised holds a deploy at its approval: a second request is
// refused naming the running deploy; with queue it starts once the first
// finished.
func TestDeploySerialised(t *testing.T) {
	e := newDeployEnv(t, "sershop", deployEnvOptions{envs: []deploystack.Env{
		{Name: "production"},
		{Name: "gated", Branch: "release", Extra: "        approval: required"},
	}})
	r1 := e.build()
	r2 := e.release("serial-2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req := func(id string) activities.DeployRequest {
		return activities.DeployRequest{App: e.app, Env: "gated", ReleaseID: id, RequestedBy: "e2e"}
	}
	waitApproval := func(notRun string) string {
		t.Helper()
		var runID string
		var last *workflows.DeployStatus
		require.Eventually(t, func() bool {
			st, _, id, err := e.dep.Status(ctx, e.app, "gated")
			if err != nil {
				t.Logf("status of gated: %v", err)
				return false
			}
			last, runID = st, id
			return st != nil && st.WaitingApproval && id != notRun
		}, 30*time.Second, 100*time.Millisecond, "no deploy of gated reached its approval")
		t.Logf("gated waits for approval: %+v", last)
		return runID
	}

	run1, err := e.dep.Start(ctx, req(r1.ID), false)
	require.NoError(t, err)
	require.Equal(t, run1.GetRunID(), waitApproval(""))

	_, err = e.dep.Start(ctx, req(r2.ID), false)
	require.ErrorIs(t, err, start.ErrDeployBusy)
	require.Contains(t, err.Error(), "deploy/sershop/gated")
	require.Contains(t, err.Error(), run1.GetRunID())

	type started struct {
		runID string
		err   error
	}
	queued := make(chan started, 1)
	go func() {
		run, err := e.dep.Start(ctx, req(r2.ID), true)
		if err != nil {
			queued <- started{err: err}
			return
		}
		queued <- started{runID: run.GetRunID()}
	}()
	select {
	case q := <-queued:
		t.Fatalf("the queued deploy started while the first waits for approval: %+v", q)
	case <-time.After(2 * time.Second):
	}

	require.NoError(t, e.dep.Decide(ctx, e.app, "gated", true, "e2e", "first"))
	rec1, err := e.dep.Wait(ctx, e.app, "gated", run1)
	require.NoError(t, err)
	require.Equal(t, r1.ID, rec1.ReleaseID)
	require.Equal(t, "e2e", rec1.ApprovedBy)

	var q started
	select {
	case q = <-queued:
	case <-time.After(30 * time.Second):
		t.Fatal("the queued deploy did not start after the first finished")
	}
	require.NoError(t, q.err)
	require.NotEqual(t, run1.GetRunID(), q.runID)
	require.Equal(t, q.runID, waitApproval(run1.GetRunID()))
	require.NoError(t, e.dep.Decide(ctx, e.app, "gated", true, "e2e", "second"))
	rec2, err := e.dep.Wait(ctx, e.app, "gated", e.client.GetWorkflow(ctx, "deploy/sershop/gated", q.runID))
	require.NoError(t, err)
	require.Equal(t, r2.ID, rec2.ReleaseID)
	require.Equal(t, catalog.OutcomeSucceeded, rec2.Outcome)
	e.requireCurrent(r2.ID)
}

// servedAtLeast waits until load has recorded n answers: load is flowing
// (through whatever release is live) before the test goes on.
func servedAtLeast(t *testing.T, load *deploystack.Load, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return load.Count() >= n }, 30*time.Second, 5*time.Millisecond,
		"the load generator got fewer than %d answers", n)
}

// requireTransfers checks how each of hosts got the release: mode, and the
// base release of a delta; a full download says why.
func requireTransfers(t *testing.T, rec *catalog.Deploy, hosts []string, mode, base string) {
	t.Helper()
	for _, h := range hosts {
		i := slices.IndexFunc(rec.Transfers, func(x catalog.HostTransfer) bool { return x.Host == h })
		require.GreaterOrEqual(t, i, 0, "no transfer recorded for %s: %+v", h, rec.Transfers)
		tr := rec.Transfers[i]
		require.Equal(t, mode, tr.Mode, "%s: %+v", h, tr)
		require.Positive(t, tr.BytesFetched, "%s", h)
		if mode == catalog.TransferDelta {
			require.Equal(t, base, tr.Base, "%s", h)
			require.Positive(t, tr.FilesLinked, "%s", h)
		} else {
			require.NotEmpty(t, tr.FallbackReason, "%s: a full download says why", h)
		}
	}
}

// editInPlace changes a file of a prepared release the way a hot fix on
// the server does: same inode, new content.
func editInPlace(t *testing.T, releaseDir string) {
	t.Helper()
	p := filepath.Join(releaseDir, "composer.json")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString("\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
}
