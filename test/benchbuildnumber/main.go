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
	ctx := context.Background()
	if err := fakerepo.CheckGit(); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	origin := filepath.Join(dir, fmt.Sprintf("origin-%d.git", commits))
	if _, err := os.Stat(filepath.Join(origin, "bench-complete")); err != nil {
		fmt.Printf("generating %d commits into %s ...\n", commits, origin)
		start := time.Now()
		_ = os.RemoveAll(origin)
		if err := fakerepo.Init(origin); err != nil {
			return err
		}
		if _, err := fakerepo.Generate(origin, fakerepo.Options{Commits: commits, Seed: 42}); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(origin, "bench-complete"), nil, 0o644); err != nil {
			return err
		}
		fmt.Printf("generated in %v\n", time.Since(start).Round(time.Millisecond))
	}

	work := filepath.Join(dir, "run")
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	upstream := filepath.Join(work, "upstream.git")
	gitGraph := filepath.Join(work, "git-with-graph.git")
	for _, d := range []string{upstream, gitGraph} {
		if out, err := exec.Command("git", "clone", "-q", "--bare", origin, d).CombinedOutput(); err != nil {
			return fmt.Errorf("clone: %v: %s", err, out)
		}
	}
	tip, err := gitOut(upstream, "rev-parse", "main")
	if err != nil {
		return err
	}
	ancestor, err := gitOut(upstream, "rev-parse", "main~100")
	if err != nil {
		return err
	}
	total, err := gitOut(upstream, "rev-list", "--count", tip)
	if err != nil {
		return err
	}
	fmt.Printf("history: %s commits reachable from main (%s)\n\n", total, tip[:7])

	var rows []row
	add := func(name string, d time.Duration, vsGit bool) { rows = append(rows, row{name, d, vsGit}) }

	// One-time costs.
	cache := gitmeta.NewCache(filepath.Join(work, "cache"))
	start := time.Now()
	repo, err := cache.Sync(ctx, upstream, nil)
	if err != nil {
		return err
	}
	add("first Sync (clone + full commit-graph)", time.Since(start), false)
	mirror := repo.Dir()
	graphFile := filepath.Join(mirror, "objects", "info", "commit-graph")
	if err := os.Remove(graphFile); err != nil {
		return err
	}
	fresh, err := gitmeta.OpenDir(mirror)
	if err != nil {
		return err
	}
	start = time.Now()
	if _, err := fresh.UpdateGraph(ctx); err != nil {
		return err
	}
	add("  of which: full commit-graph build", time.Since(start), false)
	start = time.Now()
	if out, err := exec.Command("git", "--git-dir", gitGraph, "commit-graph", "write", "--reachable").CombinedOutput(); err != nil {
		return fmt.Errorf("git commit-graph write: %v: %s", err, out)
	}
	add("  (git commit-graph write --reachable)", time.Since(start), false)

	// Counting.
	gitNoGraph := median(runs, func() (time.Duration, error) {
		return timeCmd(total, "git", "-c", "core.commitGraph=false", "--git-dir", upstream, "rev-list", "--count", tip)
	})
	gitWithGraph := median(runs, func() (time.Duration, error) {
		return timeCmd(total, "git", "--git-dir", gitGraph, "rev-list", "--count", tip)
	})
	self, err := os.Executable()
	if err != nil {
		return err
	}
	counts := filepath.Join(mirror, "mageflow-buildnumbers")
	cold := median(runs, func() (time.Duration, error) {
		if err := os.Remove(counts); err != nil && !os.IsNotExist(err) {
			return 0, err
		}
		return timeCmd(total, self, "count-child", mirror, tip)
	})
	descCold := median(runs, func() (time.Duration, error) {
		if err := os.Remove(counts); err != nil && !os.IsNotExist(err) {
			return 0, err
		}
		if _, err := timeCmd("", self, "count-child", mirror, ancestor); err != nil {
			return 0, err
		}
		return timeCmd(total, self, "count-child", mirror, tip)
	})
	descWarm := median(runs, func() (time.Duration, error) {
		if err := os.Remove(counts); err != nil && !os.IsNotExist(err) {
			return 0, err
		}
		r, err := gitmeta.OpenDir(mirror)
		if err != nil {
			return 0, err
		}
		if _, err := r.BuildNumber(ctx, ancestor); err != nil {
			return 0, err
		}
		start := time.Now()
		n, err := r.BuildNumber(ctx, tip)
		d := time.Since(start)
		if err == nil && strconv.Itoa(n) != total {
			err = fmt.Errorf("in-process count %d, git says %s", n, total)
		}
		return d, err
	})
	for _, m := range []measured{gitNoGraph, gitWithGraph, cold, descCold, descWarm} {
		if m.err != nil {
			return m.err
		}
	}
	git1, git2 := gitNoGraph.d, gitWithGraph.d

	// Incremental: ~100 commits pushed, then Sync (fetch + graph update).
	if _, err := fakerepo.Generate(upstream, fakerepo.Options{Commits: 100, Seed: 7, From: "refs/heads/main^0", StartTime: 1_900_000_000}); err != nil {
		return err
	}
	start = time.Now()
	if _, err := cache.Sync(ctx, upstream, nil); err != nil {
		return err
	}
	add("incremental Sync of ~100 pushed commits", time.Since(start), false)
	// The graph update alone: fetch another 100 with the git CLI, then
	// update the graph.
	if _, err := fakerepo.Generate(upstream, fakerepo.Options{Commits: 100, Seed: 8, From: "refs/heads/main^0", StartTime: 1_950_000_000}); err != nil {
		return err
	}
	if out, err := exec.Command("git", "--git-dir", mirror, "fetch", "-q", upstream, "+refs/heads/*:refs/heads/*").CombinedOutput(); err != nil {
		return fmt.Errorf("git fetch: %v: %s", err, out)
	}
	r, err := gitmeta.OpenDir(mirror)
	if err != nil {
		return err
	}
	start = time.Now()
	added, err := r.UpdateGraph(ctx)
	if err != nil {
		return err
	}
	add(fmt.Sprintf("  graph update alone (%d new commits)", added), time.Since(start), false)
	newTip, err := gitOut(upstream, "rev-parse", "main")
	if err != nil {
		return err
	}
	newTotal, err := gitOut(upstream, "rev-list", "--count", newTip)
	if err != nil {
		return err
	}
	// The persisted sets were carried over to the new graph positions;
	// restore them before each run so every run starts from that state.
	carried, err := os.ReadFile(counts)
	if err != nil {
		return fmt.Errorf("no build numbers carried over the graph update: %w", err)
	}
	afterFetch := median(runs, func() (time.Duration, error) {
		if err := os.WriteFile(counts, carried, 0o644); err != nil {
			return 0, err
		}
		return timeCmd(newTotal, self, "count-child", mirror, newTip)
	})
	if afterFetch.err != nil {
		return afterFetch.err
	}

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
	line("gitmeta cold (new process: map graph + count)", cold.d, true)
	line("gitmeta descendant, new process (ancestor ~100)", descCold.d, true)
	line("gitmeta descendant, in-process (ancestor ~100)", descWarm.d, true)
	line("gitmeta descendant after graph update, new process", afterFetch.d, true)
	for _, r := range rows {
		line(r.name, r.d, r.vsGit)
	}
	fmt.Printf("\nall counts checked against git rev-list --count (%s, then %s)\n", total, newTotal)
	return nil
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
