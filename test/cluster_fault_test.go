package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/front/cluster"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
	"github.com/mageflow/mageflow/test/fixtures"
	"github.com/mageflow/mageflow/workflows"
)

// envClusterDir names the data directory of the cluster make test-cluster
// runs (its pid files are under <dir>/run).
const envClusterDir = "MAGEFLOW_TEST_CLUSTER_DIR"

// clusterDirOrSkip returns the test cluster's directory, or skips: the
// engine's own faults exist only on the real cluster.
func clusterDirOrSkip(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(envClusterDir)
	if dir == "" || dev == nil || dev.dev != nil {
		t.Skipf("needs the Temporal cluster of `make test-cluster` (%s with MAGEFLOW_TEST_TEMPORAL and MAGEFLOW_TEST_NAMESPACE)", envClusterDir)
	}
	return dir
}

// servicePid reads the pid the cluster's supervisor recorded for svc
// (postgres, or a Temporal service: history, matching, frontend, worker).
func servicePid(dir, svc string) (int, error) {
	name := "temporal-" + svc
	if svc == "postgres" {
		name = svc
	}
	b, err := os.ReadFile(cluster.PidFile(dir, name))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// killService SIGKILLs the cluster's svc process and waits until the
// supervisor started a new one; it returns how long svc was gone.
func killService(dir, svc string) (time.Duration, error) {
	pid, err := servicePid(dir, svc)
	if err != nil {
		return 0, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("SIGKILL %s (pid %d): %w", svc, pid, err)
	}
	killed := time.Now()
	for time.Since(killed) < 30*time.Second {
		time.Sleep(50 * time.Millisecond) // polling the supervisor's pid file
		if p, err := servicePid(dir, svc); err == nil && p != pid {
			return time.Since(killed), nil
		}
	}
	return 0, fmt.Errorf("%s was not restarted within 30s of its SIGKILL", svc)
}

// TestClusterKillServiceMidDeploy SIGKILLs one of the cluster's Temporal
// services (history, matching, then frontend) at a random point of each of
// 3 deploys under load; the supervisor restarts it. Every deploy completes
// exactly once (one closed workflow run and one deploy record per deploy,
// each release recorded once), and not one storefront request fails.
// MAGEFLOW_KILL_SEED replays a run.
func TestClusterKillServiceMidDeploy(t *testing.T) {
	dir := clusterDirOrSkip(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MAGEFLOW_KILL_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "MAGEFLOW_KILL_SEED")
	}
	t.Logf("kill seed %d (replay with MAGEFLOW_KILL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x68697374))
	for _, svc := range []string{"history", "matching", "frontend"} {
		t.Run(svc, func(t *testing.T) { killServiceMidDeploys(t, dir, svc, rng) })
	}
}

// killServiceMidDeploys runs the deploys of TestClusterKillServiceMidDeploy
// with svc as the victim.
func killServiceMidDeploys(t *testing.T, dir, svc string, rng *rand.Rand) {
	e := newDeployEnv(t, "kill"+svc, deployEnvOptions{})
	first := e.build()
	e.mustDeploy(first.ID)
	const kills = 3
	var ids []string
	for i := range kills + 1 {
		ids = append(ids, e.release(fmt.Sprintf("%s-%02d", svc, i)).ID)
	}
	load := deploystack.StartLoad(e.stack.BalancerURL, loadClients, loadPause)
	defer load.Stop()
	t0 := time.Now()
	e.mustDeploy(ids[0])
	bound := time.Since(t0) * 7 / 10
	t.Logf("undisturbed deploy under load on the cluster: %s", time.Since(t0).Round(time.Millisecond))

	for i, id := range ids[1:] {
		delay := time.Duration(rng.Int64N(int64(bound)))
		type result struct {
			gone time.Duration
			err  error
		}
		done := make(chan result, 1)
		go func() {
			time.Sleep(delay) // the fault's timing inside the deploy, not a wait
			gone, err := killService(dir, svc)
			done <- result{gone, err}
		}()
		start := time.Now()
		rec := e.mustDeploy(id)
		r := <-done
		require.NoError(t, r.err)
		t.Logf("deploy %d: SIGKILL %s at +%s, back after %s, deploy done in %s;%s", i+1, svc, delay.Round(time.Millisecond),
			r.gone.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), stepSeconds(rec))
	}
	samples := load.Stop()
	sum := deploystack.Summarize(samples, nil)
	t.Logf("storefront under load: %d requests, %d failed, p99 %s", sum.N, sum.Failed, sum.P99)
	require.Zero(t, sum.Failed, "storefront requests failed while %s was killed", svc)
	e.requireCurrent(ids[len(ids)-1])
	requireDeployedOnce(t, e, append([]string{first.ID}, ids...))
}

// requireDeployedOnce checks that each release in ids was deployed by
// exactly one completed workflow run and recorded once, and that no other
// run of the deploy workflow exists.
func requireDeployedOnce(t *testing.T, e *deployEnv, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := catalog.Deploys(ctx, e.store, e.app, "production", 0)
	require.NoError(t, err)
	byRelease := map[string]int{}
	runs := map[string]bool{}
	for _, r := range recs {
		byRelease[r.ReleaseID]++
		require.False(t, runs[r.RunID], "run %s recorded twice", r.RunID)
		runs[r.RunID] = true
	}
	for _, id := range ids {
		require.Equal(t, 1, byRelease[id], "deploy records of %s (all: %v)", id, byRelease)
	}
	require.Len(t, recs, len(ids), "deploy records")
	// Every run visibility lists (eventually consistent: history was just
	// killed) has a record, and history itself says each completed.
	id := workflows.DeployWorkflowID(e.app, "production")
	q := fmt.Sprintf("WorkflowId = '%s'", id)
	var listed []string
	require.Eventually(t, func() bool {
		resp, err := e.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: testNamespace, Query: q, PageSize: 100})
		if err != nil {
			return false
		}
		listed = listed[:0]
		for _, x := range resp.GetExecutions() {
			listed = append(listed, x.GetExecution().GetRunId())
		}
		return len(listed) == len(ids)
	}, 20*time.Second, 200*time.Millisecond, "visibility must list exactly the %d deploy runs of %s", len(ids), id)
	for _, run := range listed {
		require.True(t, runs[run], "run %s has no deploy record", run)
		d, err := e.client.DescribeWorkflow(ctx, id, run)
		require.NoError(t, err)
		require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, d.Status, "run %s", run)
	}
}

// TestClusterRestartPostgresMidBuild SIGKILLs PostgreSQL at a random point
// of each of 3 builds; the supervisor waits for its backends to let go of
// its shared memory and starts it again. Every build completes exactly
// once: one release per commit in the catalog, one completed BuildRelease
// run per build.
func TestClusterRestartPostgresMidBuild(t *testing.T) {
	dir := clusterDirOrSkip(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x7067))
	const app = "pgshop"
	repo := fixtures.Magento2App(t)
	h := newHarness(t, localApp(app, repo))
	t0 := time.Now()
	first, _, err := h.build(app, "main", 3*time.Minute)
	require.NoError(t, err)
	bound := time.Since(t0) * 7 / 10
	ids := []string{first.ID}
	for i := range 3 {
		require.NoError(t, deploystack.CommitMarker(repo, fmt.Sprintf("pg-%02d", i)))
		delay := time.Duration(rng.Int64N(int64(bound)))
		done := make(chan error, 1)
		var gone time.Duration
		go func() {
			time.Sleep(delay) // the fault's timing inside the build, not a wait
			var err error
			gone, err = killService(dir, "postgres")
			done <- err
		}()
		start := time.Now()
		m, _, err := h.build(app, "main", 3*time.Minute)
		require.NoError(t, <-done)
		require.NoError(t, err, "build %d (PostgreSQL killed %s after its start)", i+1, delay)
		t.Logf("build %d: %s, SIGKILL PostgreSQL at +%s, back after %s, build done in %s", i+1, m.ID, delay.Round(time.Millisecond),
			gone.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		ids = append(ids, m.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rels, err := catalog.List(ctx, h.acts.Store, app)
	require.NoError(t, err)
	var got []string
	for _, r := range rels {
		got = append(got, r.ID)
	}
	require.ElementsMatch(t, ids, got, "one release per build, none twice")
	q := fmt.Sprintf("WorkflowType = 'BuildRelease' AND WorkflowId STARTS_WITH 'build/%s/'", app)
	var runs []*workflowpb.WorkflowExecutionInfo
	require.Eventually(t, func() bool {
		resp, err := h.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: testNamespace, Query: q, PageSize: 100})
		if err != nil {
			return false
		}
		runs = resp.GetExecutions()
		return len(runs) == len(ids)
	}, 20*time.Second, 200*time.Millisecond, "visibility must list exactly the %d builds of %s", len(ids), app)
	for _, x := range runs {
		d, err := h.client.DescribeWorkflow(ctx, x.GetExecution().GetWorkflowId(), x.GetExecution().GetRunId())
		require.NoError(t, err)
		require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, d.Status, "build %s", x.GetExecution().GetWorkflowId())
	}
}
