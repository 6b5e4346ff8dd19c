// Command bench-buildnumber compares gitmeta's BuildNumber with
// `git rev-list --count` on a generated history (100,000 commits with
// feature merges, criss-cross and octopus merges by default).
//
// The origin repository is generated once with git fast-import and kept in
// -dir (var/bench by default); each run clones it afresh and measures:
//   - git without a commit-graph and git with its own (`git commit-graph
//     write`, done in a separate clone so it cannot help gitmeta's mirror);
//   - gitmeta cold: a new process that maps the graph and counts;
//   - gitmeta descendant: counting the tip after an ancestor 100 commits
//     back was counted, in a new process (persisted sets) and in-process;
//   - the one-time costs: first Sync, full graph build, incremental Sync of
//     ~100 pushed commits and the graph update alone.
//
// Timings of separate processes are wall-clock medians including process
// start, for git and gitmeta alike.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/build/gitmeta"
	"github.com/mageflow/mageflow/internal/testkit/fakerepo"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "count-child" {
		os.Exit(countChild(os.Args[2], os.Args[3]))
	}
	commits := flag.Int("commits", 100_000, "commits in the generated history")
	dir := flag.String("dir", "var/bench", "cache directory for generated repositories (reused between runs)")
	runs := flag.Int("runs", 7, "repetitions per timing (median reported)")
	flag.Parse()
	if err := run(*commits, *dir, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench-buildnumber:", err)
		os.Exit(1)
	}
}

// countChild is the "cold" gitmeta: a fresh process with no in-memory state.
func countChild(mirror, sha string) int {
	r, err := gitmeta.OpenDir(mirror)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, err := r.BuildNumber(context.Background(), sha)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(n)
	return 0
}

func run(commits int, dir string, runs int) error {
	if err := fakerepo.CheckGit(); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	origin, err := ensureOrigin(dir, commits)
	if err != nil {
		return err
	}
	b := &bench{ctx: context.Background(), runs: runs, work: filepath.Join(dir, "run")}
	if err := b.clone(origin); err != nil {
		return err
	}
	if err := b.oneTimeCosts(); err != nil {
		return err
	}
	c, err := b.count()
	if err != nil {
		return err
	}
	afterFetch, newTotal, err := b.incremental()
	if err != nil {
		return err
	}
	b.printTable(c, afterFetch)
	fmt.Printf("\nall counts checked against git rev-list --count (%s, then %s)\n", b.total, newTotal)
	return nil
}

// bench is one run's state: the clones, the commits counted and the
// one-time costs measured so far.
type bench struct {
	ctx  context.Context
	runs int
	work string

	upstream, gitGraph   string // bare clones: the one pushed to, the one git gives its own graph
	tip, ancestor, total string // main, main~100 and the count git gives for main
	cache                *gitmeta.Cache
	mirror, counts, self string // gitmeta's mirror, its persisted build numbers, this executable
	rows                 []row
}

// ensureOrigin generates the origin repository unless -dir holds a
// complete one, and returns its path.
func ensureOrigin(dir string, commits int) (string, error) {
	origin := filepath.Join(dir, fmt.Sprintf("origin-%d.git", commits))
	if _, err := os.Stat(filepath.Join(origin, "bench-complete")); err == nil {
		return origin, nil
	}
	fmt.Printf("generating %d commits into %s ...\n", commits, origin)
	start := time.Now()
	_ = os.RemoveAll(origin)
	if err := fakerepo.Init(origin); err != nil {
		return "", err
	}
	if _, err := fakerepo.Generate(origin, fakerepo.Options{Commits: commits, Seed: 42}); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(origin, "bench-complete"), nil, 0o644); err != nil {
		return "", err
	}
	fmt.Printf("generated in %v\n", time.Since(start).Round(time.Millisecond))
	return origin, nil
}

// clone makes the two bare clones of origin afresh and reads the commits
// to count.
func (b *bench) clone(origin string) error {
	if err := os.RemoveAll(b.work); err != nil {
		return err
	}
	b.upstream = filepath.Join(b.work, "upstream.git")
	b.gitGraph = filepath.Join(b.work, "git-with-graph.git")
	for _, d := range []string{b.upstream, b.gitGraph} {
		if out, err := exec.Command("git", "clone", "-q", "--bare", origin, d).CombinedOutput(); err != nil {
			return fmt.Errorf("clone: %v: %s", err, out)
		}
	}
	var err error
	if b.tip, err = gitOut(b.upstream, "rev-parse", "main"); err != nil {
		return err
	}
	if b.ancestor, err = gitOut(b.upstream, "rev-parse", "main~100"); err != nil {
		return err
	}
	if b.total, err = gitOut(b.upstream, "rev-list", "--count", b.tip); err != nil {
		return err
	}
	fmt.Printf("history: %s commits reachable from main (%s)\n\n", b.total, b.tip[:7])
	return nil
}

// add records a one-time cost.
func (b *bench) add(name string, d time.Duration, vsGit bool) {
	b.rows = append(b.rows, row{name, d, vsGit})
}

// oneTimeCosts measures the first Sync, the full graph build alone and
// git's own commit-graph write.
func (b *bench) oneTimeCosts() error {
	b.cache = gitmeta.NewCache(filepath.Join(b.work, "cache"))
	start := time.Now()
	repo, err := b.cache.Sync(b.ctx, b.upstream, nil)
	if err != nil {
		return err
	}
	b.add("first Sync (clone + full commit-graph)", time.Since(start), false)
	b.mirror = repo.Dir()
	b.counts = filepath.Join(b.mirror, "mageflow-buildnumbers")
	graphFile := filepath.Join(b.mirror, "objects", "info", "commit-graph")
	if err := os.Remove(graphFile); err != nil {
		return err
	}
	fresh, err := gitmeta.OpenDir(b.mirror)
	if err != nil {
		return err
	}
	start = time.Now()
	if _, err := fresh.UpdateGraph(b.ctx); err != nil {
		return err
	}
	b.add("  of which: full commit-graph build", time.Since(start), false)
	start = time.Now()
	if out, err := exec.Command("git", "--git-dir", b.gitGraph, "commit-graph", "write", "--reachable").CombinedOutput(); err != nil {
		return fmt.Errorf("git commit-graph write: %v: %s", err, out)
	}
	b.add("  (git commit-graph write --reachable)", time.Since(start), false)
	return nil
}

// countTimes are the medians of counting the tip.
type countTimes struct {
	gitNoGraph, gitWithGraph, cold, descCold, descWarm time.Duration
}

// removeCounts forgets the persisted build numbers.
func (b *bench) removeCounts() error {
	if err := os.Remove(b.counts); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// count measures counting the tip: git without and with its graph,
// gitmeta cold, and gitmeta after counting an ancestor (new process and
// in-process).
func (b *bench) count() (countTimes, error) {
	gitNoGraph := median(b.runs, func() (time.Duration, error) {
		return timeCmd(b.total, "git", "-c", "core.commitGraph=false", "--git-dir", b.upstream, "rev-list", "--count", b.tip)
	})
	gitWithGraph := median(b.runs, func() (time.Duration, error) {
		return timeCmd(b.total, "git", "--git-dir", b.gitGraph, "rev-list", "--count", b.tip)
	})
	var err error
	if b.self, err = os.Executable(); err != nil {
		return countTimes{}, err
	}
	cold := median(b.runs, func() (time.Duration, error) {
		if err := b.removeCounts(); err != nil {
			return 0, err
		}
		return timeCmd(b.total, b.self, "count-child", b.mirror, b.tip)
	})
	descCold := median(b.runs, func() (time.Duration, error) {
		if err := b.removeCounts(); err != nil {
			return 0, err
		}
		if _, err := timeCmd("", b.self, "count-child", b.mirror, b.ancestor); err != nil {
			return 0, err
		}
		return timeCmd(b.total, b.self, "count-child", b.mirror, b.tip)
	})
	descWarm := median(b.runs, b.descendantInProcess)
	for _, m := range []measured{gitNoGraph, gitWithGraph, cold, descCold, descWarm} {
		if m.err != nil {
			return countTimes{}, m.err
		}
	}
	return countTimes{gitNoGraph.d, gitWithGraph.d, cold.d, descCold.d, descWarm.d}, nil
}

// descendantInProcess times counting the tip in-process after its
// ancestor was counted, and checks the count against git's.
func (b *bench) descendantInProcess() (time.Duration, error) {
	if err := b.removeCounts(); err != nil {
		return 0, err
	}
	r, err := gitmeta.OpenDir(b.mirror)
	if err != nil {
		return 0, err
	}
	if _, err := r.BuildNumber(b.ctx, b.ancestor); err != nil {
		return 0, err
	}
	start := time.Now()
	n, err := r.BuildNumber(b.ctx, b.tip)
	d := time.Since(start)
	if err == nil && strconv.Itoa(n) != b.total {
		err = fmt.Errorf("in-process count %d, git says %s", n, b.total)
	}
	return d, err
}

// incremental pushes ~100 commits and measures the Sync (fetch + graph
// update), then the graph update alone after another 100 fetched with the
// git CLI, then counting the new tip from the carried-over build numbers.
// It returns that last median and git's count of the new tip.
func (b *bench) incremental() (time.Duration, string, error) {
	if _, err := fakerepo.Generate(b.upstream, fakerepo.Options{Commits: 100, Seed: 7, From: "refs/heads/main^0", StartTime: 1_900_000_000}); err != nil {
		return 0, "", err
	}
	start := time.Now()
	if _, err := b.cache.Sync(b.ctx, b.upstream, nil); err != nil {
		return 0, "", err
	}
	b.add("incremental Sync of ~100 pushed commits", time.Since(start), false)
	if err := b.graphUpdateAlone(); err != nil {
		return 0, "", err
	}
	newTip, err := gitOut(b.upstream, "rev-parse", "main")
	if err != nil {
		return 0, "", err
	}
	newTotal, err := gitOut(b.upstream, "rev-list", "--count", newTip)
	if err != nil {
		return 0, "", err
	}
	// The persisted sets were carried over to the new graph positions;
	// restore them before each run so every run starts from that state.
	carried, err := os.ReadFile(b.counts)
	if err != nil {
		return 0, "", fmt.Errorf("no build numbers carried over the graph update: %w", err)
	}
	afterFetch := median(b.runs, func() (time.Duration, error) {
		if err := os.WriteFile(b.counts, carried, 0o644); err != nil {
			return 0, err
		}
		return timeCmd(newTotal, b.self, "count-child", b.mirror, newTip)
	})
	return afterFetch.d, newTotal, afterFetch.err
}

// graphUpdateAlone fetches another 100 commits with the git CLI, then
// measures the graph update.
func (b *bench) graphUpdateAlone() error {
	if _, err := fakerepo.Generate(b.upstream, fakerepo.Options{Commits: 100, Seed: 8, From: "refs/heads/main^0", StartTime: 1_950_000_000}); err != nil {
		return err
	}
	if out, err := exec.Command("git", "--git-dir", b.mirror, "fetch", "-q", b.upstream, "+refs/heads/*:refs/heads/*").CombinedOutput(); err != nil {
		return fmt.Errorf("git fetch: %v: %s", err, out)
	}
	r, err := gitmeta.OpenDir(b.mirror)
	if err != nil {
		return err
	}
	start := time.Now()
	added, err := r.UpdateGraph(b.ctx)
	if err != nil {
		return err
	}
	b.add(fmt.Sprintf("  graph update alone (%d new commits)", added), time.Since(start), false)
	return nil
}

// printTable writes the table: the counts against git, then the one-time costs.
func (b *bench) printTable(c countTimes, afterFetch time.Duration) {
	git1, git2 := c.gitNoGraph, c.gitWithGraph
	fmt.Printf("%-52s %12s %10s %10s\n", "measurement", "time", "÷git", "÷git+cg")
	line := func(name string, d time.Duration, vsGit bool) {
		if vsGit {
			fmt.Printf("%-52s %12v %9.2fx %9.2fx\n", name, d.Round(10*time.Microsecond), ratio(d, git1), ratio(d, git2))
		} else {
			fmt.Printf("%-52s %12v\n", name, d.Round(10*time.Microsecond))
		}
	}
	line("git rev-list --count (no commit-graph)", git1, true)
	line("git rev-list --count (git's own commit-graph)", git2, true)
	line("gitmeta cold (new process: map graph + count)", c.cold, true)
	line("gitmeta descendant, new process (ancestor ~100)", c.descCold, true)
	line("gitmeta descendant, in-process (ancestor ~100)", c.descWarm, true)
	line("gitmeta descendant after graph update, new process", afterFetch, true)
	for _, r := range b.rows {
		line(r.name, r.d, r.vsGit)
	}
}

type row struct {
	name  string
	d     time.Duration
	vsGit bool
}

type measured struct {
	d   time.Duration
	err error
}

func median(n int, f func() (time.Duration, error)) measured {
	var ds []time.Duration
	for range n {
		d, err := f()
		if err != nil {
			return measured{err: err}
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return measured{d: ds[len(ds)/2]}
}

// timeCmd runs a command and checks that it printed want (when not "").
func timeCmd(want string, name string, args ...string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.Command(name, args...).Output()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	if got := strings.TrimSpace(string(out)); want != "" && got != want {
		return 0, fmt.Errorf("%s %s printed %s, want %s", name, strings.Join(args, " "), got, want)
	}
	return d, nil
}

func gitOut(gitDir string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"--git-dir", gitDir}, args...)...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }
