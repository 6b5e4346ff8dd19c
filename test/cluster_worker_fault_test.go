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
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
	"github.com/mageflow/mageflow/test/fixtures"
	"github.com/mageflow/mageflow/workflows"
)

// workerBurst is how many builds TestClusterKillControlWorkerMidBuild starts
// at once: more than the two workers run side by side, so builds are both
// running and queued when one worker dies.
const workerBurst = 6

// TestClusterKillControlWorkerMidBuild runs two control-worker processes
// (the mageflow-worker binary, as the cluster runs them) on the test's task
// queue, starts a burst of builds of distinct commits, SIGKILLs one worker
// at a random point of the burst and restarts it a second later. Every
// build finishes, exactly once: one workflow run per commit, all
// completed; one release meta and one artifact per release in the store.
// MAGEFLOW_KILL_SEED replays a run.
func TestClusterKillControlWorkerMidBuild(t *testing.T) {
	clusterDirOrSkip(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MAGEFLOW_KILL_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "MAGEFLOW_KILL_SEED")
	}
	t.Logf("kill seed %d (replay with MAGEFLOW_KILL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x776b72))

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	// Its own app name per run: visibility lists builds by app, and a
	// rerun in the same namespace must not count the last run's.
	app := fmt.Sprintf("wkshop-%d", seed%1_000_000)
	repo := fixtures.Magento2App(t)
	wc := startControlWorkers(ctx, t, app, repo)

	// One undisturbed build times a build, so the kill can be aimed inside
	// the burst.
	t0 := time.Now()
	first := wc.build(ctx, app, gitRev(t, repo, "HEAD"))
	calm := time.Since(t0)
	t.Logf("undisturbed build on the cluster with 2 workers: %s", calm.Round(time.Millisecond))

	var commits []string
	for i := range workerBurst {
		require.NoError(t, deploystack.CommitMarker(repo, fmt.Sprintf("wk-%02d", i)))
		commits = append(commits, gitRev(t, repo, "HEAD"))
	}
	victim := wc.workers[rng.IntN(2)]
	delay := time.Duration(rng.Int64N(int64(calm)))
	start := time.Now()
	runs := make([]client.WorkflowRun, len(commits))
	for i, c := range commits {
		run, err := wc.starter().Start(ctx, start0(app, c))
		require.NoError(t, err, "start build of %s", c)
		runs[i] = run
	}
	killed := make(chan error, 1)
	go func() {
		time.Sleep(delay) // the fault's timing inside the burst, not a wait
		if err := victim.Kill(); err != nil {
			killed <- err
			return
		}
		time.Sleep(time.Second) // the victim stays down a second
		killed <- victim.Start()
	}()
	type result struct {
		meta release.Meta
		err  error
		at   time.Duration
	}
	results := make([]result, len(runs))
	var wg sync.WaitGroup
	for i, run := range runs {
		wg.Go(func() {
			r := &results[i]
			r.err = run.Get(ctx, &r.meta)
			r.at = time.Since(start)
		})
	}
	wg.Wait()
	ids := []string{first.ID}
	var done []string
	for i, r := range results {
		require.NoError(t, r.err, "build %d of %s (SIGKILL of %s %s after the burst started)", i+1, commits[i], victim.Name, delay.Round(time.Millisecond))
		require.Equal(t, commits[i], r.meta.Commit, "build %d", i+1)
		ids = append(ids, r.meta.ID)
		// A build whose activity died with its worker waits out the
		// activity's heartbeat timeout before another worker retries it.
		done = append(done, r.at.Round(10*time.Millisecond).String())
	}
	burst := time.Since(start)
	require.NoError(t, <-killed)
	t.Logf("%d builds in one burst: SIGKILL %s at +%s, all done in %s (each seen done at +%s)", len(commits), victim.Name,
		delay.Round(time.Millisecond), burst.Round(time.Millisecond), strings.Join(done, ", +"))
	require.Less(t, delay, burst, "the kill must land inside the burst for this test to mean something")
	requireBuiltOnce(ctx, t, wc, app, append([]string{first.Commit}, commits...), ids)
}

// start0 is the request for a build of commit on main.
func start0(app, commit string) start.BuildRequest {
	return start.BuildRequest{App: app, Commit: commit, Branch: "main", Trigger: "test"}
}

// controlWorkers is a mageflow config with two control-worker processes on
// its task queue and a client; the test process runs no worker of its own.
type controlWorkers struct {
	t       *testing.T
	cfg     *config.Config
	client  client.Client
	store   store.Store
	workers []*deploystack.Process
}

// startControlWorkers writes a config for app (a local build of repo) and
// starts two mageflow-worker processes for it.
func startControlWorkers(ctx context.Context, t *testing.T, app, repo string) *controlWorkers {
	t.Helper()
	dir := t.TempDir()
	bin, err := deploystack.BuildWorker(ctx, dir)
	require.NoError(t, err)
	queue := "it-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	yml := fmt.Sprintf(`temporal: {address: %q, namespace: default, task_queue: %q}
artifacts: {dir: ./artifacts}
secrets: {dir: ./secrets}
codec: {key_file: ./codec.key, key_env: MAGEFLOW_TEST_NO_SUCH_ENV}
worker: {metrics_listen: "127.0.0.1:0", work_dir: ./work}
git: {cache_dir: ./git}
apps:
%s`, dev.FrontendHostPort(), queue, localApp(app, repo))
	cfgPath := filepath.Join(dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(yml), 0o644))
	cfg, err := config.Load(cfgPath, false)
	require.NoError(t, err)
	_, err = codec.GenerateKeyFile(cfg.Codec.KeyFile)
	require.NoError(t, err)
	dc, _, err := tclient.DataConverter(cfg)
	require.NoError(t, err)
	opts, err := tclient.Options(cfg, nil, dc, nil)
	require.NoError(t, err)
	opts.HostPort = dev.FrontendHostPort()
	c, err := client.Dial(opts)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	st, err := store.NewLocal(cfg.Artifacts.Dir)
	require.NoError(t, err)

	wc := &controlWorkers{t: t, cfg: cfg, client: c, store: st}
	logs := filepath.Join(dir, "logs")
	require.NoError(t, os.MkdirAll(logs, 0o755))
	for i := range 2 {
		name := fmt.Sprintf("control worker %d", i+1)
		log := filepath.Join(logs, fmt.Sprintf("worker-%d.log", i+1))
		p, err := deploystack.StartProcess(name, bin, log, "--config", cfgPath, "--log-level", "warn")
		require.NoError(t, err)
		t.Cleanup(p.Stop)
		wc.workers = append(wc.workers, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range 2 {
				b, _ := os.ReadFile(filepath.Join(logs, fmt.Sprintf("worker-%d.log", i+1)))
				t.Logf("--- worker-%d.log (last 6 KiB)\n%s", i+1, tail(string(b), 6<<10))
			}
		}
	})
	return wc
}

// starter starts builds through the config's task queue.
func (w *controlWorkers) starter() *start.Builds {
	return &start.Builds{Client: w.client, Config: w.cfg}
}

// build runs one build of commit to its end.
func (w *controlWorkers) build(ctx context.Context, app, commit string) *release.Meta {
	w.t.Helper()
	run, err := w.starter().Start(ctx, start0(app, commit))
	require.NoError(w.t, err)
	var m release.Meta
	require.NoError(w.t, run.Get(ctx, &m))
	return &m
}

// requireBuiltOnce checks the store and Temporal after the burst: the
// releases are exactly ids, each with one meta and one artifact; the
// BuildRelease runs of app are exactly one per commit, all completed.
func requireBuiltOnce(ctx context.Context, t *testing.T, w *controlWorkers, app string, commits, ids []string) {
	t.Helper()
	rels, err := catalog.List(ctx, w.store, app)
	require.NoError(t, err)
	var got []string
	for _, r := range rels {
		got = append(got, r.ID)
	}
	require.ElementsMatch(t, ids, got, "one release meta per build, none twice")
	infos, err := w.store.List(ctx, app+"/")
	require.NoError(t, err)
	artifacts := map[string]int{}
	for _, in := range infos {
		if id, ok := strings.CutSuffix(strings.TrimPrefix(in.Key, app+"/"), ".tar.zst"); ok {
			artifacts[id]++
		}
	}
	require.Len(t, artifacts, len(ids), "artifacts in the store: %v", artifacts)
	for _, id := range ids {
		require.Equal(t, 1, artifacts[id], "artifact of %s", id)
	}
	q := fmt.Sprintf("WorkflowType = 'BuildRelease' AND WorkflowId STARTS_WITH 'build/%s/'", app)
	var listed []string
	require.Eventually(t, func() bool {
		resp, err := w.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: testNamespace, Query: q, PageSize: 100})
		if err != nil {
			return false
		}
		listed = listed[:0]
		for _, x := range resp.GetExecutions() {
			listed = append(listed, x.GetExecution().GetWorkflowId()+" "+x.GetExecution().GetRunId())
		}
		return len(listed) == len(commits)
	}, 20*time.Second, 200*time.Millisecond, "visibility must list exactly the %d builds of %s", len(commits), app)
	perCommit := map[string]int{}
	for _, c := range commits {
		perCommit[workflows.BuildWorkflowID(app, c)] = 0
	}
	for _, x := range listed {
		wid, run, _ := strings.Cut(x, " ")
		_, known := perCommit[wid]
		require.True(t, known, "build workflow %s is of no commit of the burst", wid)
		perCommit[wid]++
		d, err := w.client.DescribeWorkflow(ctx, wid, run)
		require.NoError(t, err)
		require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, d.RawResponse.GetWorkflowExecutionInfo().GetStatus(), "build %s", wid)
	}
	for wid, n := range perCommit {
		require.Equal(t, 1, n, "runs of %s", wid)
	}
}
