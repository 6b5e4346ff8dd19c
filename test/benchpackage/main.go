// Command bench-package measures the artifact writer against `tar -czf`
// (GNU tar + gzip -6, what a shell deploy script would use) on a generated
// Magento-sized tree, in the same run, and prints a table with ratios.
//
// Run from the module root:
//
//	go run ./test/benchpackage
//
// The tree (~60,000 files, ~700 MB, 30% of the bytes incompressible
// images) is generated deterministically from -seed under var/bench/ and
// reused by later runs. Every contender runs as a child process so its
// wall time, CPU time and peak RSS (ru_maxrss from wait4, which for tar
// includes its gzip child) are measured the same way; our writer also
// reports VmHWM from /proc/self/status as a cross-check. Outputs go to
// -out and are not fsynced by either side. The page cache is warmed first
// so that every contender reads the tree from memory.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/testkit/treegen"
)

func main() {
	var (
		treeDir = flag.String("tree", "var/bench/magento-tree", "directory of the generated tree (reused when its parameters match)")
		outDir  = flag.String("out", "var/bench/out", "directory for the outputs")
		seed    = flag.Uint64("seed", 1, "generator seed")
		files   = flag.Int("files", 60000, "number of files to generate")
		sizeMB  = flag.Int64("mb", 700, "approximate total size to generate, in MB")
		levels  = flag.String("levels", "fastest,default,better", "zstd levels to measure")
		gzipRun = flag.Bool("gzip", true, "measure tar -czf (slow)")

		child      = flag.Bool("child", false, "internal: run one write and print JSON")
		childLevel = flag.String("level", "default", "internal: level for -child")
		childSrc   = flag.String("src", "", "internal: source for -child")
		childOut   = flag.String("o", "", "internal: output for -child")
		cpuProfile = flag.String("cpuprofile", "", "with -child: write a CPU profile here")
	)
	flag.Parse()
	if *child {
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err == nil {
				err = pprof.StartCPUProfile(f)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench-package: cpu profile:", err)
				os.Exit(1)
			}
			defer pprof.StopCPUProfile()
		}
		if err := runChild(*childSrc, *childOut, *childLevel); err != nil {
			fmt.Fprintln(os.Stderr, "bench-package child:", err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
		return
	}
	if err := run(*treeDir, *outDir, treegen.Params{Seed: *seed, Files: *files, Bytes: *sizeMB * 1e6}, strings.Split(*levels, ","), *gzipRun); err != nil {
		fmt.Fprintln(os.Stderr, "bench-package:", err)
		os.Exit(1)
	}
}

type childResult struct {
	artifact.Result
	VmHWMKiB int64 `json:"vm_hwm_kib"`
}

func runChild(src, out, level string) error {
	ok, lvl := zstd.EncoderLevelFromString(level)
	if !ok {
		return fmt.Errorf("unknown level %q", level)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	res, err := artifact.Write(context.Background(), f, src, []byte(`{"bench":true}`), artifact.Options{
		Exclude: []string{treegen.MarkerName},
		ModTime: time.Unix(1700000000, 0),
		Level:   lvl,
	})
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	hwm, err := vmHWM()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(childResult{Result: res, VmHWMKiB: hwm})
}

func vmHWM() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib)
			return kib, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

type measurement struct {
	name    string
	wall    time.Duration
	cpu     time.Duration
	maxRSS  int64 // KiB
	outSize int64
	hwm     int64 // KiB, our writer only
	sha     string
}

func measure(name string, cmd *exec.Cmd, outFile string) (measurement, []byte, error) {
	cmd.Stderr = os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	wall := time.Since(start)
	if err != nil {
		return measurement{}, nil, fmt.Errorf("%s: %w", name, err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fi, err := os.Stat(outFile)
	if err != nil {
		return measurement{}, nil, err
	}
	return measurement{
		name:    name,
		wall:    wall,
		cpu:     time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		maxRSS:  ru.Maxrss,
		outSize: fi.Size(),
	}, out, nil
}

func run(treeDir, outDir string, p treegen.Params, levels []string, withGzip bool) error {
	fmt.Printf("load average at start: %s", loadavg())
	nBytes, err := prepareTree(treeDir, p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var ms []measurement
	if withGzip {
		out := filepath.Join(outDir, "tree.tar.gz")
		m, _, err := measure("tar -czf (gzip -6)", exec.Command("tar", "-C", treeDir, "--exclude="+treegen.MarkerName, "-czf", out, "."), out)
		if err != nil {
			return fmt.Errorf("%w (is GNU tar with gzip installed?)", err)
		}
		ms = append(ms, m)
	}
	if _, err := exec.LookPath("zstd"); err == nil {
		out := filepath.Join(outDir, "tree.tar.zst-cli")
		sh := fmt.Sprintf("tar -C %q --exclude=%s -cf - . | zstd -q -3 -T0 -o %q -f", treeDir, treegen.MarkerName, out)
		m, _, err := measure("tar | zstd -3 -T0 (reference)", exec.Command("sh", "-c", sh), out)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	for _, lvl := range levels {
		m, err := measureArtifact(self, treeDir, outDir, lvl)
		if err != nil {
			return err
		}
		ms = append(ms, m)
	}
	var base *measurement
	if withGzip {
		base = &ms[0]
	}
	if err := printTable(ms, base, nBytes); err != nil {
		return err
	}
	fmt.Printf("load average at end: %s", loadavg())
	fmt.Println("goals: speed ≥ 4× gzip, size ≤ 110% of gzip, peak RSS < 256 MiB")
	return nil
}

// prepareTree generates the tree unless a matching one exists and warms
// the page cache with it; it returns the tree's size in bytes.
func prepareTree(treeDir string, p treegen.Params) (int64, error) {
	t0 := time.Now()
	reused, err := treegen.Ensure(treeDir, p)
	if err != nil {
		return 0, fmt.Errorf("generate tree: %w", err)
	}
	if reused {
		fmt.Printf("reusing tree %s\n", treeDir)
	} else {
		fmt.Printf("generated tree %s in %v\n", treeDir, time.Since(t0).Round(time.Millisecond))
	}
	nFiles, nBytes, err := warm(treeDir)
	if err != nil {
		return 0, err
	}
	fmt.Printf("tree: %d files, %.1f MB (page cache warmed)\n", nFiles, float64(nBytes)/1e6)
	return nBytes, nil
}

// measureArtifact times artifact.Write at one level in a child process
// (self -child) and checks that what it wrote is a valid artifact.
func measureArtifact(self, treeDir, outDir, lvl string) (measurement, error) {
	out := filepath.Join(outDir, "tree-"+lvl+".tar.zst")
	m, stdout, err := measure("artifact.Write "+lvl, exec.Command(self, "-child", "-level", lvl, "-src", treeDir, "-o", out), out)
	if err != nil {
		return m, err
	}
	var cr childResult
	if err := json.Unmarshal(stdout, &cr); err != nil {
		return m, fmt.Errorf("parse child output %q: %w", stdout, err)
	}
	m.hwm, m.sha = cr.VmHWMKiB, cr.SHA256
	return m, checkOutput(out, cr.Result)
}

// printTable prints each contender's figures, against gzip when base is
// its measurement.
func printTable(ms []measurement, base *measurement, nBytes int64) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "contender\twall s\tMB/s in\tspeed ×gzip\tout MB\tsize % gzip\tCPU s\tpeak RSS MiB\tVmHWM MiB\t")
	for _, m := range ms {
		speed, size := "-", "-"
		if base != nil {
			speed = fmt.Sprintf("%.2f×", base.wall.Seconds()/m.wall.Seconds())
			size = fmt.Sprintf("%.1f%%", 100*float64(m.outSize)/float64(base.outSize))
		}
		hwm := "-"
		if m.hwm > 0 {
			hwm = fmt.Sprintf("%.0f", float64(m.hwm)/1024)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t%s\t%.1f\t%s\t%.2f\t%.0f\t%s\t\n",
			m.name, m.wall.Seconds(), float64(nBytes)/1e6/m.wall.Seconds(), speed,
			float64(m.outSize)/1e6, size, m.cpu.Seconds(), float64(m.maxRSS)/1024, hwm)
	}
	return tw.Flush()
}

// checkOutput makes sure what we timed is a valid artifact.
func checkOutput(path string, res artifact.Result) error {
	if err := artifact.VerifyFile(path, res.SHA256); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := artifact.ReadManifest(f); err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	return nil
}

// warm reads every file once so that all contenders read from the page
// cache and the order in which they run does not matter.
func warm(dir string) (files int, bytes int64, err error) {
	buf := make([]byte, 1<<20)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == treegen.MarkerName {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.CopyBuffer(io.Discard, f, buf)
		files++
		bytes += n
		return err
	})
	return files, bytes, err
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown\n"
	}
	return string(b)
}
