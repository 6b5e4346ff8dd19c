package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/front/workerapp"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
)

// phase is the outcome of one burst of workflows.
type phase struct {
	n, errors int
	firstErr  error
	wall      time.Duration
	latencies waits // schedule-to-start times
}

// result is one server's figures.
type result struct {
	target          string
	deploys, builds phase
	mem             memory
	// CPU seconds per process group during each phase.
	deployCPU, buildCPU map[string]float64
}

// smallRepo is a git repository with a tiny web root.
func smallRepo(dir string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "pub"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "pub", "index.html"), []byte("<p>benchscale</p>\n"), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command("git", "-C", dir, "init", "-q", "-b", "main").CombinedOutput(); err != nil {
		return "", fmt.Errorf("git init: %v: %s", err, out)
	}
	return dir, deploystack.Commit(dir, "benchscale app")
}

// headOf is the repository's main commit.
func headOf(repo string) (string, error) {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "main").Output()
	return strings.TrimSpace(string(out)), err
}

// webServers starts one static file server per host, over its app's
// current/pub, and returns their URLs.
func webServers(dir string, n int) ([]string, func(), error) {
	var urls []string
	var srvs []*http.Server
	stop := func() {
		for _, s := range srvs {
			_ = s.Close()
		}
	}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		pub := filepath.Join(dir, "hosts", hostName(i), appName("d", i), "current", "pub")
		s := &http.Server{Handler: http.FileServer(http.Dir(pub)), ReadHeaderTimeout: 10 * time.Second}
		srvs = append(srvs, s)
		go func() { _ = s.Serve(ln) }()
		urls = append(urls, "http://"+ln.Addr().String())
	}
	return urls, stop, nil
}

func hostName(i int) string               { return fmt.Sprintf("h%03d", i) }
func appName(prefix string, i int) string { return fmt.Sprintf("%s%04d", prefix, i) }

// writeConfig writes and loads mageflow.yaml: deploy apps d0000… with one
// environment on one host each, build apps b0000… without environments.
func writeConfig(dir string, s *server, repo string, urls []string, builds int) (*config.Config, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "temporal: {address: %q, namespace: %q, task_queue: bench-scale}\nartifacts: {dir: ./artifacts}\nsecrets: {dir: ./secrets}\n", s.address, s.namespace)
	b.WriteString("codec: {key_file: ./codec.key, key_env: MAGEFLOW_TEST_NO_SUCH_ENV}\nworker: {metrics_listen: \"127.0.0.1:0\", work_dir: ./work}\ngit: {cache_dir: ./git}\nhosts:\n")
	for i, u := range urls {
		fmt.Fprintf(&b, "  %s: {root: %q, url: %q}\n", hostName(i), filepath.Join(dir, "hosts", hostName(i)), u)
	}
	b.WriteString("apps:\n")
	recipe := `{builder: local, steps: [{name: stamp, run: "date +%s%N > pub/built.txt"}]}`
	for i, u := range urls {
		fmt.Fprintf(&b, "  %s:\n    repo: %q\n    type: custom\n    build: %s\n    environments:\n      production: {branch: main, hosts: [%s], url: %q, health_paths: [/], warm_paths: [/], keep_releases: 2}\n",
			appName("d", i), repo, recipe, hostName(i), u)
	}
	for i := range builds {
		fmt.Fprintf(&b, "  %s: {repo: %q, type: custom, build: %s}\n", appName("b", i), repo, recipe)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, "mageflow.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(p, false)
	if err != nil {
		return nil, err
	}
	_, err = codec.GenerateKeyFile(cfg.Codec.KeyFile)
	return cfg, err
}

// runTarget starts one server and runs both bursts against it.
func runTarget(ctx context.Context, o options, target, dir, repo string) (_ *result, err error) {
	fmt.Printf("\n== %s\n", target)
	s, err := startServer(ctx, o, target, dir)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	rss := sampleRSS(s.pid)
	urls, stopWeb, err := webServers(dir, o.deploys)
	if err != nil {
		return nil, err
	}
	defer stopWeb()
	cfg, err := writeConfig(dir, s, repo, urls, o.builds)
	if err != nil {
		return nil, err
	}
	c, err := dial(cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stopControl, err := startControl(ctx, c, cfg, o.controlSlots, o.wftPollers, o.actPollers)
	if err != nil {
		return nil, err
	}
	defer stopControl()
	var hosts []string
	for i := range o.deploys {
		hosts = append(hosts, hostName(i))
	}
	stopAgents, err := deploystack.StartAgents(ctx, c, cfg, hosts)
	if err != nil {
		return nil, err
	}
	defer stopAgents()
	head, err := headOf(repo)
	if err != nil {
		return nil, err
	}
	r := &result{target: target}
	// The deploy apps' releases, built first (not measured).
	rels, pre := buildAll(ctx, c, cfg, "d", o.deploys, head)
	fmt.Printf("%s: %d releases for the deploy apps built in %s, %d errors\n", target, o.deploys, pre.wall.Round(time.Millisecond), pre.errors)
	if pre.errors > 0 {
		return nil, fmt.Errorf("building the deploy apps' releases: %w", pre.firstErr)
	}
	st, err := store.NewLocal(cfg.Artifacts.Dir)
	if err != nil {
		return nil, err
	}
	stop := profileDeploys(o, target)
	cpu0 := cpuOf(s.pid)
	r.deploys = deployAll(ctx, c, cfg, st, rels)
	stop()
	fmt.Printf("%s: %d deploys in %s, %d errors %v\n", target, r.deploys.n, r.deploys.wall.Round(time.Millisecond), r.deploys.errors, errOrNil(r.deploys.firstErr))
	r.deployCPU = cpuSince(cpu0, cpuOf(s.pid))
	fmt.Printf("%s: deploys used %s\n", target, formatCPU(r.deployCPU))
	if err := checkServed(urls, rels); err != nil && r.deploys.errors == 0 {
		return nil, err
	}
	cpu0 = cpuOf(s.pid)
	_, r.builds = buildAll(ctx, c, cfg, "b", o.builds, head)
	fmt.Printf("%s: %d builds in %s, %d errors %v\n", target, r.builds.n, r.builds.wall.Round(time.Millisecond), r.builds.errors, errOrNil(r.builds.firstErr))
	r.buildCPU = cpuSince(cpu0, cpuOf(s.pid))
	fmt.Printf("%s: builds used %s\n", target, formatCPU(r.buildCPU))
	r.mem = rss.end()
	return r, nil
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return "(first: " + err.Error() + ")"
}

// checkServed proves every host serves the release it was deployed.
func checkServed(urls []string, rels []*release.Meta) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	for i, u := range urls {
		resp, err := hc.Get(u + "/" + hostops.ReleaseMarker)
		if err != nil {
			return err
		}
		var buf [256]byte
		n, _ := resp.Body.Read(buf[:])
		resp.Body.Close()
		if got := strings.TrimSpace(string(buf[:n])); got != rels[i].ID {
			return fmt.Errorf("host %s serves %q, want %s", hostName(i), got, rels[i].ID)
		}
	}
	return nil
}

// buildAll starts n builds (apps <prefix>0000…) at once and waits for all.
func buildAll(ctx context.Context, c client.Client, cfg *config.Config, prefix string, n int, head string) ([]*release.Meta, phase) {
	p := phase{n: n}
	rels := make([]*release.Meta, n)
	runs := make([]client.WorkflowRun, n)
	errs := make([]error, n)
	began := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			run, err := (&start.Builds{Client: c, Config: cfg}).Start(ctx, start.BuildRequest{App: appName(prefix, i), Commit: head, Branch: "main", Trigger: "benchscale"})
			if err != nil {
				errs[i] = err
				return
			}
			runs[i] = run
			var m release.Meta
			if errs[i] = run.Get(ctx, &m); errs[i] == nil {
				rels[i] = &m
			}
		})
	}
	wg.Wait()
	p.wall = time.Since(began)
	p.tally(errs)
	p.latencies = latencies(ctx, c, runs)
	return rels, p
}

// deployAll deploys rels[i] to app d<i> production, all at once.
func deployAll(ctx context.Context, c client.Client, cfg *config.Config, st store.Store, rels []*release.Meta) phase {
	p := phase{n: len(rels)}
	dep := &start.Deploys{Temporal: c, Config: cfg, Store: st}
	runs := make([]client.WorkflowRun, len(rels))
	errs := make([]error, len(rels))
	began := time.Now()
	var wg sync.WaitGroup
	for i, m := range rels {
		wg.Go(func() {
			run, err := dep.Start(ctx, activities.DeployRequest{App: appName("d", i), Env: "production", ReleaseID: m.ID, RequestedBy: "benchscale"}, false)
			if err != nil {
				errs[i] = err
				return
			}
			runs[i] = run
			errs[i] = run.Get(ctx, nil)
		})
	}
	wg.Wait()
	p.wall = time.Since(began)
	p.tally(errs)
	p.latencies = latencies(ctx, c, runs)
	return p
}

func (p *phase) tally(errs []error) {
	for _, err := range errs {
		if err != nil {
			p.errors++
			if p.firstErr == nil {
				p.firstErr = err
			}
		}
	}
}

// dial connects like deploystack.Dial, with the SDK's log at warnings only
// (its debug lines would bury the figures).
func dial(cfg *config.Config) (client.Client, error) {
	dc, _, err := tclient.DataConverter(cfg)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts, err := tclient.Options(cfg, logger, dc, nil)
	if err != nil {
		return nil, err
	}
	return client.Dial(opts)
}

// startControl runs the control worker in this process, registered as
// deploystack.StartControl does but with the worker options
// bin/mageflow-worker uses (workerapp.WorkerOptions), so the activity slots
// measured are production's.
func startControl(ctx context.Context, c client.Client, cfg *config.Config, slots, pollers, actPollers int) (stop func(), err error) {
	acts, err := workerapp.NewBuildActivities(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	opts := workerapp.WorkerOptions(cfg)
	if slots > 0 {
		opts.MaxConcurrentActivityExecutionSize = slots
	}
	if pollers > 0 {
		opts.WorkflowTaskPollerBehavior, opts.MaxConcurrentWorkflowTaskPollers = nil, pollers
	}
	if actPollers > 0 {
		opts.ActivityTaskPollerBehavior, opts.MaxConcurrentActivityTaskPollers = nil, actPollers
	}
	w := worker.New(c, cfg.Temporal.TaskQueue, opts)
	workerapp.Register(w, acts, &activities.DeployActivities{Config: cfg, Store: acts.Store, Client: c})
	if err := w.Start(); err != nil {
		return nil, err
	}
	return w.Stop, nil
}

// profileDeploys writes a CPU profile of this process (the control worker
// and every agent) during target's deploys to -profile-deploys.<target>;
// the returned func stops it.
func profileDeploys(o options, target string) func() {
	if o.profileDeploys == "" {
		return func() {}
	}
	f, err := os.Create(o.profileDeploys + "." + target)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile-deploys:", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
