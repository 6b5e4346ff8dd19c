package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
	"github.com/mageflow/mageflow/test/fixtures"
)

// TestDeployKillWorkerAndAgent runs the control worker and web1's agent as
// OS processes and SIGKILLs one of them at a random point of each of 10
// deploys, restarting it a second later: every deploy still completes (the
// workflow retries), no request fails, and current never points at an
// incomplete release. MAGEFLOW_KILL_SEED replays a failing run.
func TestDeployKillWorkerAndAgent(t *testing.T) {
	if err := deploystack.RequireBinaries(); err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MAGEFLOW_KILL_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "MAGEFLOW_KILL_SEED")
	}
	t.Logf("kill seed %d (replay with MAGEFLOW_KILL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := deploystack.BuildWorker(ctx, dir)
	require.NoError(t, err)

	const app = "killshop"
	repo := fixtures.Magento2App(t)
	s := startStack(t, app, nil)
	queue := "it-" + t.Name()
	cfgPath, cfg, err := s.WriteConfig(filepath.Join(dir, "mageflow"), dev.FrontendHostPort(), queue, repo, nil)
	require.NoError(t, err)
	c, err := deploystack.Dial(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	st, err := store.NewLocal(cfg.Artifacts.Dir)
	require.NoError(t, err)

	logs := filepath.Join(dir, "logs")
	require.NoError(t, os.MkdirAll(logs, 0o755))
	worker, err := deploystack.StartProcess("control worker", bin, filepath.Join(logs, "worker.log"), "--config", cfgPath, "--log-level", "warn")
	require.NoError(t, err)
	t.Cleanup(worker.Stop)
	agent, err := deploystack.StartProcess("agent web1", bin, filepath.Join(logs, "agent-web1.log"), "--agent", "--host", "web1", "--config", cfgPath, "--log-level", "warn")
	require.NoError(t, err)
	t.Cleanup(agent.Stop)
	stopWeb2, err := deploystack.StartAgents(ctx, c, cfg, []string{"web2"})
	require.NoError(t, err)
	t.Cleanup(stopWeb2)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"worker.log", "agent-web1.log"} {
				b, _ := os.ReadFile(filepath.Join(logs, f))
				t.Logf("--- %s (last 6 KiB)\n%s", f, tail(string(b), 6<<10))
			}
		}
	})
	e := &deployEnv{t: t, app: app, repo: repo, stack: s, cfg: cfg, client: c, store: st,
		dep: &deploystack.Deployer{Deploys: &start.Deploys{Temporal: c, Config: cfg, Store: st}}}
	t.Cleanup(e.terminateRunning)

	// Every release is built before the kills start: only deploys are
	// interrupted. The first deploy upgrades the empty database; the
	// second, undisturbed and under load, times a deploy so the kills can
	// be aimed inside one.
	first := e.build()
	var rels []*release.Meta
	for i := 0; i <= 10; i++ {
		rels = append(rels, e.release(fmt.Sprintf("kill-%02d", i)))
	}
	e.mustDeploy(first.ID)

	hosts := s.HostNames()
	w := s.Watch(2 * time.Millisecond)
	defer w.Stop()
	load := deploystack.StartLoad(s.BalancerURL, loadClients, loadPause)
	defer load.Stop()

	t0 := time.Now()
	e.mustDeploy(rels[0].ID)
	calm := time.Since(t0)
	at, err := w.AllSwitchedAt(hosts, rels[0].ID, t0)
	require.NoError(t, err)
	t.Logf("undisturbed deploy under load: %s", calm.Round(time.Millisecond))
	// Kills land in the first 70% of an undisturbed deploy's time.
	bound := calm * 7 / 10
	intervals := []served{{release: rels[0].ID, from: at}}
	rels = rels[1:]

	midDeploy := 0
	for i, m := range rels {
		victim := []*deploystack.Process{worker, agent}[rng.IntN(2)]
		delay := time.Duration(rng.Int64N(int64(bound)))
		start := time.Now()
		if n := len(intervals); n > 0 {
			intervals[n-1].to = start
		}
		dctx, dcancel := context.WithTimeout(ctx, deployTimeout)
		run, err := e.dep.Start(dctx, activities.DeployRequest{App: app, Env: "production", ReleaseID: m.ID, RequestedBy: "kill-test"}, false)
		require.NoError(t, err)
		var killedAt time.Time
		var kerr error
		var wg sync.WaitGroup
		wg.Go(func() {
			time.Sleep(delay) // the fault's timing: kill this far into the deploy, not a wait
			killedAt = time.Now()
			if kerr = victim.Kill(); kerr != nil {
				return
			}
			time.Sleep(time.Second) // the victim stays down a second
			kerr = victim.Start()
		})
		rec, err := e.dep.Wait(dctx, app, "production", run)
		finished := time.Now()
		dcancel()
		if err != nil {
			t.Logf("deploy %d is stuck on:%s", i+1, e.pending("production"))
		}
		wg.Wait()
		require.NoError(t, kerr)
		require.NoError(t, err, "deploy %d of %s (SIGKILL of %s %s after its start) did not complete within %s", i+1, m.ID, victim.Name, delay.Round(time.Millisecond), deployTimeout)
		require.Equal(t, catalog.OutcomeSucceeded, rec.Outcome)
		if killedAt.Before(finished) {
			midDeploy++
		}
		at, err := w.AllSwitchedAt(hosts, m.ID, start)
		require.NoError(t, err)
		intervals = append(intervals, served{release: m.ID, from: at})
		t.Logf("deploy %2d: %s, SIGKILL %s at +%s, done in %s;%s", i+1, m.ID, victim.Name, delay.Round(time.Millisecond),
			finished.Sub(start).Round(time.Millisecond), stepSeconds(rec))
	}
	intervals[len(intervals)-1].to = time.Now()
	samples := load.Stop()
	w.Stop()
	t.Logf("%d of %d kills landed while the deploy ran; watcher read current %d times", midDeploy, len(rels), w.Polls())
	require.Empty(t, w.Problems(), "current pointed at an incomplete release")
	loadReport(t, samples, intervals, nil, 0)
	require.Zero(t, deploystack.Summarize(samples, nil).Failed)
	require.GreaterOrEqual(t, midDeploy, len(rels)/2, "most kills must land inside a deploy for this test to mean something")
	e.requireCurrent(rels[len(rels)-1].ID)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
