// Command bench-delta measures delta deploys (issue 13) on a generated
// Magento-sized release, with every contender in the same run:
//
//   - full prepare: artifact.Extract against `zstd -dc | tar -x` of the
//     same artifact;
//   - delta prepare, one template changed and a `composer update` of one
//     package (~300 files): artifact.ApplyDelta from the extracted v1
//     release against `rsync -a --link-dest` of the same trees, and the
//     bytes ApplyDelta fetched as a share of the artifact.
//
// Run from the module root:
//
//	go run ./test/benchdelta
//
// The tree (~60,000 files, ~232 MB) is generated deterministically under
// var/bench/ (the generator is bench-package's) and reused. Variants are
// hard-link copies of it (cp -al) with the changed files rewritten as new
// inodes. Every timing is the median of -runs runs, alternating
// contenders, with warm page cache; outputs are not fsynced by anyone.
// Each host prepares independently, so the per-host figures are what
// every host of a fleet sees.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/testkit/treegen"
)

type config struct {
	treeDir, outDir string
	params          treegen.Params
	runs            int
	cpuProfile      string
	deltaProfile    string
	steadyProfile   string
	profileKnown    bool
}

func main() {
	var c config
	flag.StringVar(&c.treeDir, "tree", "var/bench/delta-tree", "directory of the generated tree (reused when its parameters match)")
	flag.StringVar(&c.outDir, "out", "var/bench/delta", "directory for artifacts and releases")
	flag.Uint64Var(&c.params.Seed, "seed", 1, "generator seed")
	flag.IntVar(&c.params.Files, "files", 60000, "number of files to generate")
	mb := flag.Int64("mb", 232, "approximate total size to generate, in MB")
	flag.IntVar(&c.runs, "runs", 3, "runs per contender (median reported)")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of our full extractions here")
	flag.StringVar(&c.deltaProfile, "deltaprofile", "", "write a CPU profile of our delta prepares here")
	flag.StringVar(&c.steadyProfile, "steadyprofile", "", "write a CPU profile of the first case's steady-state delta prepares here (not with -deltaprofile)")
	flag.BoolVar(&c.profileKnown, "profile-known", false, "with -steadyprofile: profile the prepares with the base hashed in the background")
	flag.Parse()
	c.params.Bytes = *mb * 1e6
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-delta:", err)
		os.Exit(1)
	}
}

// variant is one v2 of the tree.
type variant struct {
	name    string
	dir     string
	changed []string
	art     string
	res     artifact.Result
}

func run(c config) error {
	ctx := context.Background()
	t0 := time.Now()
	reused, err := treegen.Ensure(c.treeDir, c.params)
	if err != nil {
		return fmt.Errorf("generate tree: %w", err)
	}
	fmt.Printf("tree %s (%d files, reused %v) in %s\n", c.treeDir, c.params.Files, reused, time.Since(t0).Round(time.Millisecond))
	if err := os.RemoveAll(c.outDir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.outDir, "releases"), 0o755); err != nil {
		return err
	}
	v1 := &variant{name: "v1", dir: c.treeDir, art: filepath.Join(c.outDir, "v1.tar.zst")}
	commit := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if v1.res, err = artifact.WriteFile(ctx, v1.art, v1.dir, []byte(`{"id":"1-aaaaaaa"}`), artifact.Options{ModTime: commit}); err != nil {
		return err
	}
	vs, err := makeVariants(c, v1)
	if err != nil {
		return err
	}
	for i, v := range vs {
		if v.res, err = artifact.WriteFile(ctx, v.art, v.dir, []byte(`{"id":"2-bbbbbbb"}`), artifact.Options{ModTime: commit.Add(time.Duration(i+1) * time.Hour)}); err != nil {
			return err
		}
	}
	fmt.Printf("artifact v1: %d files, %.1f MB tree, %.1f MB zstd, index %s\n", v1.res.Files, float64(v1.res.UncompressedBytes)/1e6, float64(v1.res.Size)/1e6, v1.res.IndexSHA256[:12])
	var rows []row
	full, base, err := benchFull(ctx, c, v1)
	if err != nil {
		return err
	}
	rows = append(rows, full...)
	fmt.Printf("measured: %+v\n", full[0])
	if c.deltaProfile != "" {
		f, err := os.Create(c.deltaProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for i, v := range vs {
		r, err := benchDelta(ctx, c, base, v1, v)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
		fmt.Printf("measured: %+v\n", r[0])
		// The retired release: the other variant (a release that
		// differs from the base where the other change was made).
		for _, m := range []recycleMode{{}, {known: true}, {known: true, spare: true}} {
			rr, err := benchRecycled(ctx, c, base, v, vs[1-i], r[0].base, m)
			if err != nil {
				return err
			}
			rows = append(rows, rr)
			fmt.Printf("measured: %+v\n", rr)
		}
	}
	printTable(c, v1, rows)
	return nil
}

// makeVariants writes v2a (one template changed) and v2b (the first
// ~300 files of one vendor package changed) as cp -al copies of v1.
func makeVariants(c config, v1 *variant) ([]*variant, error) {
	var templates, pkg []string
	err := filepath.WalkDir(v1.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(v1.dir, p)
		if strings.HasSuffix(rel, ".phtml") && len(templates) == 0 {
			templates = append(templates, rel)
		}
		if strings.HasPrefix(rel, "vendor/") && len(pkg) < 300 && (len(pkg) == 0 || strings.SplitN(rel, "/", 3)[1] == strings.SplitN(pkg[0], "/", 3)[1]) {
			pkg = append(pkg, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := []*variant{
		{name: "one template changed", changed: templates},
		{name: fmt.Sprintf("composer update of one package (%d files)", len(pkg)), changed: pkg},
	}
	for i, v := range out {
		v.dir = filepath.Join(c.outDir, fmt.Sprintf("tree-v2%c", 'a'+i))
		v.art = filepath.Join(c.outDir, fmt.Sprintf("v2%c.tar.zst", 'a'+i))
		if err := sh("cp", "-al", v1.dir, v.dir); err != nil {
			return nil, err
		}
		for _, rel := range v.changed {
			p := filepath.Join(v.dir, rel)
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			// A new inode: v1's file (shared by the copy) stays as is.
			if err := os.Remove(p); err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, append(b, "\n// updated by bench-delta\n"...), 0o644); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

type row struct {
	what       string
	ours       time.Duration
	baseline   string
	base       time.Duration // zero: baseline not run
	fetched    int64
	artSize    int64
	linked     int
	written    int
	verifiedMB float64
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func have(bin string) bool {
	_, err := exec.LookPath(bin)
	return err == nil
}

// benchFull times Extract against zstd -dc | tar -x, alternating, and
// leaves one extraction of v1 as the base release for the deltas.
func benchFull(ctx context.Context, c config, v1 *variant) ([]row, string, error) {
	var ours, theirs []time.Duration
	dir := filepath.Join(c.outDir, "releases")
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, "", err
		}
	}
	for i := range c.runs {
		dst := filepath.Join(dir, fmt.Sprintf("full-%d", i))
		t := time.Now()
		if err := extractFile(ctx, v1, dst); err != nil {
			return nil, "", err
		}
		ours = append(ours, time.Since(t))
		if i > 0 {
			_ = os.RemoveAll(dst)
		}
		if have("zstd") {
			dst := filepath.Join(dir, fmt.Sprintf("tar-%d", i))
			if err := os.Mkdir(dst, 0o755); err != nil {
				return nil, "", err
			}
			t := time.Now()
			if err := sh("sh", "-c", `zstd -dc "$1" | tar -x -C "$2"`, "sh", v1.art, dst); err != nil {
				return nil, "", err
			}
			theirs = append(theirs, time.Since(t))
			_ = os.RemoveAll(dst)
		}
	}
	if c.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	r := row{what: "full prepare (no base release)", ours: median(ours), baseline: "`zstd -dc \\| tar -x`", fetched: v1.res.Size, artSize: v1.res.Size, written: v1.res.Files}
	if len(theirs) > 0 {
		r.base = median(theirs)
	} else {
		fmt.Println("note: no zstd binary (Debian package zstd): the tar baseline is not measured")
	}
	return []row{r}, filepath.Join(dir, "full-0"), nil
}

func extractFile(ctx context.Context, v *variant, dst string) error {
	f, err := os.Open(v.art)
	if err != nil {
		return err
	}
	defer f.Close()
	return artifact.Extract(ctx, f, dst, artifact.ExtractOptions{MaxBytes: v.res.TarSize})
}

// benchDelta times ApplyDelta from base against rsync --link-dest of the
// source trees.
func benchDelta(ctx context.Context, c config, base string, v1, v *variant) ([]row, error) {
	f, err := os.Open(v.art)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ours, theirs, floor []time.Duration
	var st artifact.DeltaStats
	dir := filepath.Join(c.outDir, "releases")
	for i := range c.runs {
		dst := filepath.Join(dir, fmt.Sprintf("delta-%d", i))
		t := time.Now()
		st, err = artifact.ApplyDelta(ctx, artifact.DeltaOptions{
			Base: base, Dst: dst, Source: artifact.ReaderAtRange{R: f}, Size: v.res.Size, IndexSHA256: v.res.IndexSHA256,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		ours = append(ours, time.Since(t))
		_ = os.RemoveAll(dst)
		if have("rsync") {
			dst := filepath.Join(dir, fmt.Sprintf("rsync-%d", i))
			abs, _ := filepath.Abs(v1.dir)
			t := time.Now()
			if err := sh("rsync", "-a", "--link-dest="+abs, v.dir+"/", dst+"/"); err != nil {
				return nil, err
			}
			theirs = append(theirs, time.Since(t))
			_ = os.RemoveAll(dst)
		}
		// The floor of any link-based prepare: hard-link the whole base
		// release, nothing checked, nothing fetched.
		cpal := filepath.Join(dir, fmt.Sprintf("cpal-%d", i))
		t = time.Now()
		if err := sh("cp", "-al", base, cpal); err != nil {
			return nil, err
		}
		floor = append(floor, time.Since(t))
		_ = os.RemoveAll(cpal)
	}
	r := row{what: v.name + ": delta prepare per host, nothing to recycle (no retired release, no spare yet)", ours: median(ours), baseline: "`rsync -a --link-dest`",
		fetched: st.BytesFetched, artSize: v.res.Size, linked: st.FilesLinked + st.FilesCopied, written: st.FilesWritten, verifiedMB: float64(st.BaseBytesVerified) / 1e6}
	if len(theirs) > 0 {
		r.base = median(theirs)
	} else {
		fmt.Println("note: no rsync binary (Debian package rsync): the rsync baseline is not measured")
	}
	fl := r
	fl.what, fl.baseline, fl.base = v.name+": the same against linking the whole base", "`cp -al` of the base (no check, no fetch)", median(floor)
	return []row{r, fl}, nil
}

// benchRecycled times ApplyDelta on a host in steady state: besides the
// base it holds the release Prune retired last (here: the other variant,
// built from the base as a host builds it), whose directory tree the delta
// reuses. The retired tree is rebuilt before each run, untimed.
// recycleMode is what the host holds before the delta: with known, the
// base hashed into a VerifiedInodes, as the agent does in the background
// after a deploy (timed apart and printed), so the delta reads only the
// base files changed since; with spare, a spare of the base staged by
// hostops.StageSpare (a host's second to fifth release) instead of a
// retired release (one that differs from the base where the other change
// was made).
type recycleMode struct{ known, spare bool }

func benchRecycled(ctx context.Context, c config, base string, v, other *variant, rsync time.Duration, m recycleMode) (row, error) {
	known := m.known
	f, err := os.Open(v.art)
	if err != nil {
		return row{}, err
	}
	defer f.Close()
	of, err := os.Open(other.art)
	if err != nil {
		return row{}, err
	}
	defer of.Close()
	var ours []time.Duration
	var st artifact.DeltaStats
	dir := filepath.Join(c.outDir, "releases")
	for i := range c.runs {
		retired := filepath.Join(dir, fmt.Sprintf(".recycle-%d", i))
		if m.spare {
			retired = filepath.Join(filepath.Dir(base), hostops.RecyclePrefix+filepath.Base(base))
			if err := hostops.StageSpare(ctx, filepath.Dir(base), filepath.Base(base), "", 0); err != nil {
				return row{}, fmt.Errorf("spare for %s: %w", v.name, err)
			}
		} else if _, err := artifact.ApplyDelta(ctx, artifact.DeltaOptions{
			Base: base, Dst: retired, Source: artifact.ReaderAtRange{R: of}, Size: other.res.Size, IndexSHA256: other.res.IndexSHA256,
		}); err != nil {
			return row{}, fmt.Errorf("retired tree for %s: %w", v.name, err)
		}
		var verified *artifact.VerifiedInodes
		if known {
			if verified, err = hashBase(ctx, base); err != nil {
				return row{}, err
			}
		}
		dst := filepath.Join(dir, fmt.Sprintf("recycled-%d", i))
		stop := startSteadyProfile(c, known)
		t := time.Now()
		st, err = artifact.ApplyDelta(ctx, artifact.DeltaOptions{
			Base: base, Dst: dst, Source: artifact.ReaderAtRange{R: f}, Size: v.res.Size, IndexSHA256: v.res.IndexSHA256, Recycle: retired,
			Verified: verified,
		})
		stop()
		if err != nil {
			return row{}, fmt.Errorf("%s, recycled: %w", v.name, err)
		}
		if !st.Recycled {
			return row{}, fmt.Errorf("%s: the retired tree was not reused: %s", v.name, st.RecycleNote)
		}
		ours = append(ours, time.Since(t))
		_ = os.RemoveAll(dst)
	}
	what := v.name + ": delta prepare per host, steady state (tree of the retired release reused)"
	if m.spare {
		what = v.name + ": a host's second to fifth release (spare staged and base hashed in the background after the last deploy)"
	} else if known {
		what = v.name + ": the same, base hashed in the background since the last deploy"
		if st.BaseFilesKnown == 0 {
			return row{}, fmt.Errorf("%s: no base file was known: %+v", v.name, st)
		}
	}
	return row{what: what, ours: median(ours),
		baseline: "`rsync -a --link-dest` (above)", base: rsync, fetched: st.BytesFetched, artSize: v.res.Size,
		linked: st.FilesLinked + st.FilesCopied, written: st.FilesWritten, verifiedMB: float64(st.BaseBytesVerified) / 1e6}, nil
}

func printTable(c config, v1 *variant, rows []row) {
	fmt.Printf("\nbench-delta: %d-file tree, %.0f MB, artifact %.1f MB, median of %d runs, %s\n", v1.res.Files, float64(v1.res.UncompressedBytes)/1e6, float64(v1.res.Size)/1e6, c.runs, time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("releases on %s\n\n", describeFS(c.outDir))
	fmt.Println("| case (per host) | mageflow | baseline | baseline time | ratio (ours / baseline) | bytes fetched | % of artifact | files reused / written |")
	fmt.Println("|---|---:|---|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		bt, ratio := "not measured", "-"
		if r.base > 0 {
			bt = fmtDur(r.base)
			ratio = fmt.Sprintf("%.2f×", r.ours.Seconds()/r.base.Seconds())
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %.2f MB | %.1f%% | %d / %d |\n", r.what, fmtDur(r.ours), r.baseline, bt, ratio,
			float64(r.fetched)/1e6, 100*float64(r.fetched)/float64(r.artSize), r.linked, r.written)
	}
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// hashBase hashes the base as the agent does after a deploy, once the
// retired tree's links are artifact.RacyMargin old, and prints the cost.
func hashBase(ctx context.Context, base string) (*artifact.VerifiedInodes, error) {
	time.Sleep(artifact.RacyMargin + 100*time.Millisecond)
	v := &artifact.VerifiedInodes{}
	t := time.Now()
	n, err := v.HashTree(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("hash the base: %w", err)
	}
	fmt.Printf("background hashing of the base (not timed below): %d files in %s\n", n, time.Since(t).Round(time.Millisecond))
	return v, nil
}

// steadyProfiled counts the steady-state prepares profiled so far.
var steadyProfiled int

// startSteadyProfile profiles one steady-state delta prepare into
// -steadyprofile (the first one only: a profile cannot be paused); the
// returned func stops it.
func startSteadyProfile(c config, known bool) func() {
	if c.steadyProfile == "" || steadyProfiled > 0 || known != c.profileKnown {
		return func() {}
	}
	steadyProfiled++
	f, err := os.Create(c.steadyProfile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "steadyprofile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "steadyprofile:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
