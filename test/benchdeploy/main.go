// Command benchdeploy measures ZeroDowntimeDeploy on the two-host stack the
// end-to-end tests use (test/benchdeploy/deploystack): requests failed and
// p99 latency while mageflow deploys under load, the same load against a
// naive deploy (ln -sfn + php-fpm restart on every host at once), the
// duration of each deploy step for a Magento-sized artifact, and the skew
// between the two hosts' switches. It starts its own Temporal dev server
// ($TEMPORAL_CLI or ./bin/temporal) and needs nginx-light, php8.2-fpm,
// php-cli, composer and git. Run from the module root: go run ./test/benchdeploy
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
)

const app = "benchshop"

func main() {
	var (
		n       = flag.Int("deploys", 10, "deploys under load (and naive switches)")
		clients = flag.Int("clients", 8, "concurrent load clients")
		pause   = flag.Duration("pause", 5*time.Millisecond, "pause of each client between requests")
		before  = flag.Duration("before", 5*time.Second, "load before the first deploy, for the baseline p99")
		work    = flag.String("dir", "var/bench/deploy", "work directory (emptied first)")
		treeDir = flag.String("tree", "var/bench/deploy-tree", "generated Magento-sized tree (reused when its parameters match)")
		files   = flag.Int("files", 60000, "files in the Magento-sized tree (0 skips that part)")
		sizeMB  = flag.Int64("mb", 200, "approximate size of the tree, MB")
		keep    = flag.Bool("keep", false, "keep the work directory (hosts, artifacts, logs) for a look afterwards")
	)
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	err := run(ctx, *n, *clients, *pause, *before, *work, *treeDir, treeParams{Files: *files, Bytes: *sizeMB * 1e6})
	if !*keep {
		_ = os.RemoveAll(*work)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchdeploy: %v (run with -keep to look at %s)\n", err, *work)
		os.Exit(1)
	}
}

type bench struct {
	stack *deploystack.Stack
	cfg   *config.Config
	c     client.Client
	st    store.Store
	dep   *deploystack.Deployer
	repo  string
}

func run(ctx context.Context, n, clients int, pause, before time.Duration, work, treeDir string, tp treeParams) error {
	began := time.Now()
	work, err := filepath.Abs(work)
	if err != nil {
		return err
	}
	if treeDir, err = filepath.Abs(treeDir); err != nil {
		return err
	}
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	b, stop, err := startBench(ctx, work)
	defer stop()
	if err != nil {
		return err
	}

	fmt.Printf("benchdeploy: 2 hosts (nginx + php-fpm each, process_control_timeout 10s) behind an nginx balancer; %d clients, %s pause; %d deploys\n", clients, pause, n)
	rels, err := b.releases(ctx, n)
	if err != nil {
		return err
	}
	// 1. mageflow under load.
	mf, err := b.underLoad(ctx, clients, pause, before, rels)
	if err != nil {
		return err
	}
	// 2. The naive deploy under the same load, on the same hosts, between
	// the last two releases (both still on disk).
	naive, err := b.naive(clients, pause, before, n, rels[len(rels)-1].ID, rels[len(rels)-2].ID)
	if err != nil {
		return err
	}
	printLoadResults(mf, naive)

	// 3. A Magento-sized release.
	if tp.Files > 0 {
		if err := b.big(ctx, rels[len(rels)-1], treeDir, filepath.Join(work, "stage"), tp); err != nil {
			return err
		}
	}
	fmt.Printf("\ntotal %s\n", time.Since(began).Round(time.Second))
	return nil
}

// startBench starts the Temporal dev server, the fixture repository, the
// two-host stack, the control worker and the agents. stop ends what was
// started, in reverse order; it is to be called also with an error.
func startBench(ctx context.Context, work string) (b *bench, stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	dev, err := deploystack.StartDevServer(ctx)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, func() { _ = dev.Stop() })
	repo, err := deploystack.FixtureRepo(filepath.Join(work, "repo"))
	if err != nil {
		return nil, stop, err
	}
	s, err := deploystack.Start(deploystack.Options{Dir: filepath.Join(work, "stack"), App: app})
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, func() { _ = s.Close() })
	_, cfg, err := s.WriteConfig(filepath.Join(work, "mageflow"), dev.FrontendHostPort(), "bench-deploy", repo, nil)
	if err != nil {
		return nil, stop, err
	}
	c, err := deploystack.Dial(cfg)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, c.Close)
	stopControl, err := deploystack.StartControl(ctx, c, cfg)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, stopControl)
	stopAgents, err := deploystack.StartAgents(ctx, c, cfg, s.HostNames())
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, stopAgents)
	st, err := store.NewLocal(cfg.Artifacts.Dir)
	if err != nil {
		return nil, stop, err
	}
	return &bench{stack: s, cfg: cfg, c: c, st: st, repo: repo,
		dep: &deploystack.Deployer{Deploys: &start.Deploys{Temporal: c, Config: cfg, Store: st}}}, stop, nil
}

// releases builds and deploys a first release, then builds n more, one
// commit each, to deploy under load.
func (b *bench) releases(ctx context.Context, n int) ([]*release.Meta, error) {
	first, err := deploystack.Build(ctx, b.c, b.cfg, app, "main")
	if err != nil {
		return nil, err
	}
	if _, err := b.deploy(ctx, first.ID, 2*time.Minute); err != nil {
		return nil, err
	}
	var rels []*release.Meta
	for i := 1; i <= n; i++ {
		if err := deploystack.CommitMarker(b.repo, fmt.Sprintf("bench-%02d", i)); err != nil {
			return nil, err
		}
		m, err := deploystack.Build(ctx, b.c, b.cfg, app, "main")
		if err != nil {
			return nil, err
		}
		rels = append(rels, m)
	}
	return rels, nil
}

// printLoadResults prints the table of both deploys under load and the
// figures behind it.
func printLoadResults(mf, naive loadResult) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\nunder load\tswitches\trequests\tfailed\tp99 before\tp99 in switch windows\tmax in windows\t")
	for _, r := range []loadResult{mf, naive} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.name, r.switches, r.all.N, r.all.Failed, ms(r.before.P99), ms(r.window.P99), ms(r.window.Max))
	}
	tw.Flush()
	fmt.Println("switch window: mageflow = first host switched → deploy finished (reload, warm-up, health, prune); naive = ln -sfn → both php-fpm restarted + 1s")
	fmt.Printf("mageflow deploys: median %s, switch skew between hosts (SwitchResult.SwitchedAt): median %s, max %s\n",
		ms(median(mf.durations)), ms(median(mf.skews)), ms(maxDur(mf.skews)))
	fmt.Printf("naive switches: median %s from ln -sfn to both php-fpm serving again; %d of its failed requests inside those windows (+1s)\n",
		ms(median(naive.durations)), naive.window.Failed)
	if len(naive.errors) > 0 {
		fmt.Printf("naive failures, first few: %s\n", strings.Join(naive.errors, "; "))
	}
}

func (b *bench) deploy(ctx context.Context, id string, timeout time.Duration) (*catalog.Deploy, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rec, err := b.dep.Run(dctx, activities.DeployRequest{App: app, Env: "production", ReleaseID: id, RequestedBy: "benchdeploy"})
	if err != nil {
		return rec, fmt.Errorf("deploy %s: %w", id, err)
	}
	return rec, nil
}

type loadResult struct {
	name                string
	switches            int
	all, before, window deploystack.Summary
	durations, skews    []time.Duration
	errors              []string
}

type window struct{ from, to time.Time }

func inWindows(ws []window) func(deploystack.Sample) bool {
	return func(s deploystack.Sample) bool {
		for _, w := range ws {
			if !s.Start.Before(w.from) && s.Start.Before(w.to) {
				return true
			}
		}
		return false
	}
}

// switchedAt reads the hosts' last SwitchResult (written by the Switch
// activity beside current).
func (b *bench) switchedAt() ([]time.Time, error) {
	var out []time.Time
	for _, h := range b.stack.Hosts {
		raw, err := os.ReadFile(filepath.Join(hostops.AppDir(h.Root, app), hostops.SwitchStateName))
		if err != nil {
			return nil, err
		}
		var r agent.SwitchResult
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		out = append(out, r.SwitchedAt)
	}
	return out, nil
}

func (b *bench) underLoad(ctx context.Context, clients int, pause, before time.Duration, rels []*release.Meta) (loadResult, error) {
	res := loadResult{name: "mageflow", switches: len(rels)}
	load := deploystack.StartLoad(b.stack.BalancerURL, clients, pause)
	defer load.Stop()
	t0 := time.Now()
	time.Sleep(before)
	calmEnd := time.Now()
	var ws []window
	for _, m := range rels {
		start := time.Now()
		if _, err := b.deploy(ctx, m.ID, 2*time.Minute); err != nil {
			return res, err
		}
		end := time.Now()
		res.durations = append(res.durations, end.Sub(start))
		at, err := b.switchedAt()
		if err != nil {
			return res, err
		}
		first, last := at[0], at[0]
		for _, t := range at[1:] {
			first, last = minTime(first, t), maxTime(last, t)
		}
		res.skews = append(res.skews, last.Sub(first))
		ws = append(ws, window{first, end})
	}
	samples := load.Stop()
	res.all = deploystack.Summarize(samples, nil)
	res.before = deploystack.Summarize(samples, deploystack.Between(t0, calmEnd))
	res.window = deploystack.Summarize(samples, inWindows(ws))
	for _, s := range samples {
		if !s.OK() && len(res.errors) < 5 {
			res.errors = append(res.errors, s.String())
		}
	}
	return res, nil
}

func (b *bench) naive(clients int, pause, before time.Duration, n int, ids ...string) (loadResult, error) {
	res := loadResult{name: "naive: ln -sfn + php-fpm restart", switches: n}
	load := deploystack.StartLoad(b.stack.BalancerURL, clients, pause)
	defer load.Stop()
	t0 := time.Now()
	time.Sleep(before)
	calmEnd := time.Now()
	var ws []window
	for i := range n {
		start := time.Now()
		if err := b.stack.NaiveSwitch(ids[i%len(ids)]); err != nil {
			return res, err
		}
		end := time.Now().Add(time.Second)
		res.durations = append(res.durations, time.Since(start))
		ws = append(ws, window{start, end})
		time.Sleep(2 * time.Second)
	}
	samples := load.Stop()
	res.all = deploystack.Summarize(samples, nil)
	res.before = deploystack.Summarize(samples, deploystack.Between(t0, calmEnd))
	res.window = deploystack.Summarize(samples, inWindows(ws))
	for _, s := range samples {
		if !s.OK() && len(res.errors) < 3 {
			res.errors = append(res.errors, s.String())
		}
	}
	return res, nil
}

// big packages the last fixture release plus the generated tree as a new
// release, deploys it and prints the deploy record's steps.
func (b *bench) big(ctx context.Context, base *release.Meta, treeDir, stage string, tp treeParams) error {
	t := time.Now()
	reused, err := ensureTree(treeDir, tp)
	if err != nil {
		return fmt.Errorf("generate tree: %w", err)
	}
	how := "generated"
	if reused {
		how = "reused"
	}
	fmt.Printf("\nMagento-sized release: %d files, ~%d MB of vendor/, generated/, pub/static/ (tree %s in %s)\n", tp.Files, tp.Bytes/1e6, how, time.Since(t).Round(time.Millisecond))
	m, err := b.packBig(ctx, base, treeDir, stage, 1000, nil)
	if err != nil {
		return err
	}
	if err := b.deployBig(ctx, m, 0, 0); err != nil {
		return err
	}
	// The same release with one template changed, deployed under load:
	// each host prepares it as a delta from the release above.
	m2, err := b.packBig(ctx, base, treeDir, stage, 1001, changeOneTemplate(1001))
	if err != nil {
		return err
	}
	fmt.Println("\nthe same release with one template changed, deployed under load (8 clients):")
	if err := b.deployBig(ctx, m2, 8, 5*time.Millisecond); err != nil {
		return err
	}
	// Steady state: with keep_releases 3, the fourth deploy's prune sets
	// the first Magento-sized release aside, and the fifth reuses its
	// directory tree.
	for _, bump := range []int{1002, 1003, 1004} {
		m, err := b.packBig(ctx, base, treeDir, stage, bump, changeOneTemplate(bump))
		if err != nil {
			return err
		}
		if bump == 1004 {
			fmt.Println("\nsteady state: the next template change, deployed under load (8 clients) on hosts holding the release Prune set aside:")
			return b.deployBig(ctx, m, 8, 5*time.Millisecond)
		}
		if _, err := b.deploy(ctx, m.ID, 10*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// changeOneTemplate returns a mutation that rewrites one .phtml file of
// the staged tree as a new inode (the tree is hard-linked from the
// generated one, which must not change), marked with n.
func changeOneTemplate(n int) func(string) error {
	return func(stage string) error { return changeTemplate(stage, n) }
}

func changeTemplate(stage string, n int) error {
	var victim string
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || victim != "" {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".phtml") {
			victim = p
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return err
	}
	if victim == "" {
		return errors.New("no .phtml file in the tree")
	}
	old, err := os.ReadFile(victim)
	if err != nil {
		return err
	}
	if err := os.Remove(victim); err != nil {
		return err
	}
	return os.WriteFile(victim, append(old, fmt.Appendf(nil, "\n<?php /* hot template change %d */ ?>\n", n)...), 0o644)
}

// packBig stages the fixture release base plus the tree, lets mutate
// change the stage, and packs and stores it as build base+bump.
func (b *bench) packBig(ctx context.Context, base *release.Meta, treeDir, stage string, bump int, mutate func(string) error) (*release.Meta, error) {
	_ = os.RemoveAll(stage)
	rc, err := b.st.Get(ctx, catalog.ArtifactKey(app, base.ID))
	if err != nil {
		return nil, err
	}
	err = artifact.Extract(ctx, rc, stage, artifact.ExtractOptions{})
	rc.Close()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{artifact.ManifestName, artifact.IndexName} {
		if err := os.Remove(filepath.Join(stage, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if err := linkTree(treeDir, stage); err != nil {
		return nil, err
	}
	if mutate != nil {
		if err := mutate(stage); err != nil {
			return nil, err
		}
	}
	m := *base
	m.BuildNumber += bump
	m.ID = release.NewID(m.BuildNumber, m.ShortCommit)
	m.WorkflowID, m.Steps = "benchdeploy", nil
	manifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	t := time.Now()
	tmp := stage + ".tar.zst"
	ares, err := artifact.WriteFile(ctx, tmp, stage, manifest, artifact.Options{Exclude: b.cfg.Apps[app].SharedPaths()})
	if err != nil {
		return nil, err
	}
	_ = os.RemoveAll(stage)
	uri, _, err := b.st.Put(ctx, catalog.ArtifactKey(app, m.ID), tmp, ares.SHA256, store.PutOptions{})
	if err != nil {
		return nil, err
	}
	_ = os.Remove(tmp)
	m.Artifact = release.Artifact{URI: uri, SHA256: ares.SHA256, Size: ares.Size, UncompressedSize: ares.TarSize, IndexSHA256: ares.IndexSHA256}
	if err := catalog.Put(ctx, b.st, &m); err != nil {
		return nil, err
	}
	fmt.Printf("artifact %s: %d files, %.0f MB → %.0f MB zstd, packaged in %s\n", m.ID, ares.Files, float64(ares.UncompressedBytes)/1e6, float64(ares.Size)/1e6, time.Since(t).Round(time.Millisecond))
	return &m, nil
}

// deployBig deploys m (under load when clients > 0) and prints its steps,
// each host's transfer, the switch skew and the requests that failed.
func (b *bench) deployBig(ctx context.Context, m *release.Meta, clients int, pause time.Duration) error {
	// The benchmark just staged and packed 232 MB on this disk, which a
	// real app server never does (builds run elsewhere): flush it first,
	// so the deploy does not wait behind the benchmark's own writeback.
	syscall.Sync()
	var load *deploystack.Load
	if clients > 0 {
		load = deploystack.StartLoad(b.stack.BalancerURL, clients, pause)
		defer load.Stop()
	}
	start := time.Now()
	rec, err := b.deploy(ctx, m.ID, 10*time.Minute)
	if err != nil {
		return err
	}
	total := time.Since(start)
	at, err := b.switchedAt()
	if err != nil {
		return err
	}
	skew := at[0].Sub(at[1]).Abs()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "deploy step\tseconds\t")
	for _, s := range rec.Steps {
		fmt.Fprintf(tw, "%s\t%.2f\t\n", s.Name, s.Seconds)
	}
	fmt.Fprintf(tw, "total (client)\t%.2f\t\n", total.Seconds())
	tw.Flush()
	for _, t := range rec.Transfers {
		fmt.Printf("host %s: %s prepare, %.2f MB fetched of %.2f MB (%.1f%%), %d files linked (%d of them hashed in the background since the last deploy), %d written%s\n", t.Host, t.Mode,
			float64(t.BytesFetched)/1e6, float64(t.ArtifactSize)/1e6, 100*float64(t.BytesFetched)/float64(max(t.ArtifactSize, 1)),
			t.FilesLinked, t.FilesKnown, t.FilesWritten, orReason(t.FallbackReason)+recycled(t.Recycled, t.RecycleNote))
	}
	fmt.Printf("switch skew between the hosts: %s; upgrade needed: %v\n", skew.Round(time.Microsecond), rec.UpgradeNeeded)
	if load != nil {
		samples := load.Stop()
		sum := deploystack.Summarize(samples, nil)
		fmt.Printf("requests during the deploy: %d, failed %d, p99 %s\n", sum.N, sum.Failed, ms(sum.P99))
		shown := 0
		seconds := map[string]bool{}
		for _, s := range samples {
			if !s.OK() {
				// nginx's and php-fpm's time stamps, from 3 s
				// before (the balancer marks a host down for its
				// fail_timeout, 2 s, after one failure).
				for back := 3; back >= 0; back-- {
					t := s.Start.Add(-time.Duration(back) * time.Second)
					seconds[t.Format("2006/01/02 15:04:05")] = true
					seconds[t.Format("[02-Jan-2006 15:04:05]")] = true
				}
				if shown < 5 {
					fmt.Printf("  failed: %s (deploy started %s)\n", s, start.Format("15:04:05.000"))
					shown++
				}
			}
		}
		printLogLines(b.stack.Logs(), seconds)
	}
	return nil
}

// printLogLines prints the daemons' log lines (nginx, php-fpm, the
// balancer) written in the seconds of failed requests and the three
// before, but nginx's and php-fpm's routine notices (reloads and worker
// exits stay), so a failure can be told apart afterwards.
func printLogLines(logs string, seconds map[string]bool) {
	if len(seconds) == 0 {
		return
	}
	fmt.Println("  daemon log lines in those seconds:")
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		match := (len(l) >= 19 && seconds[l[:19]]) || (len(l) >= 22 && seconds[l[:22]])
		routine := (strings.Contains(l, "[notice]") || strings.Contains(l, "NOTICE")) &&
			!strings.Contains(l, "signal") && !strings.Contains(l, "exited") && !strings.Contains(l, "reconfiguring")
		if match && !routine && n < 60 {
			fmt.Println("    " + l)
			n++
		}
	}
}

func recycled(id, note string) string {
	switch {
	case id != "":
		return ", directory tree of " + id + " reused"
	case note != "":
		return " (retired tree not reused: " + note + ")"
	}
	return ""
}

func orReason(r string) string {
	if r == "" {
		return ""
	}
	return " (fallback: " + r + ")"
}

// linkTree hard-links every file of src into dst (same file system: the
// tree is not copied).
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." || rel == treeMarker {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if err := os.Link(p, target); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return nil
			}
			return fmt.Errorf("link the bench tree into the stage (keep -tree and -dir on one file system): %w", err)
		}
		return nil
	})
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
