// Command benchscale runs the same scale load against the Temporal CLI's
// dev server and against a real cluster (PostgreSQL + temporal-server
// started by `mageflow cluster --temporal-only`), one after the other in
// one run, and prints both side by side: N concurrent ZeroDowntimeDeploys
// across N apps (one environment and one host each) and M builds of a small
// app in one burst. Errors, wall time, workflows per second, activity
// schedule-to-start latency (from the histories' ActivityTaskScheduled →
// ActivityTaskStarted times) and the servers' peak RSS.
//
// What is real: the control worker and every host agent are mageflow's own
// (registered in this process as bin/mageflow-worker and bin/mageflow-agent
// register them), builds run the local builder on a git repository with a
// one-step custom recipe, deploys download, extract and switch the artifact
// on each host's own root. What is not: the apps are type custom (no
// php-fpm reload, no Magento steps) and each host's web server is a Go
// static file server over <root>/<app>/current/pub instead of nginx.
//
// Run from the module root: go run ./test/benchscale (needs bin/temporal,
// bin/mageflow, bin/temporal-server, bin/temporal-sql-tool and PostgreSQL:
// make run-cluster builds them).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// options are the benchmark's flags.
type options struct {
	deploys, builds int
	dir             string
	pgPort          int
	temporalPort    int
	metricsPort     int
	uiPort          int
	only            string
	controlSlots    int
	wftPollers      int
	actPollers      int
	shards          int
	profileDeploys  string
}

func main() {
	var o options
	flag.IntVar(&o.deploys, "deploys", 100, "concurrent deploys, one app/environment/host each")
	flag.IntVar(&o.builds, "builds", 1000, "builds in one burst, one app each")
	flag.StringVar(&o.dir, "dir", "var/bench/scale", "work directory (emptied first)")
	flag.IntVar(&o.pgPort, "pg-port", 5461, "cluster PostgreSQL port")
	flag.IntVar(&o.temporalPort, "temporal-port", 7461, "cluster Temporal frontend port (the services take the ports after it)")
	flag.IntVar(&o.metricsPort, "metrics-port", 8461, "cluster metrics port")
	flag.IntVar(&o.uiPort, "ui-port", 8561, "cluster UI port (unused with --temporal-only, but reserved)")
	flag.StringVar(&o.only, "only", "", "run only \"dev\" or \"cluster\"")
	flag.IntVar(&o.controlSlots, "control-slots", 0, "control worker's activity slots (0: workerapp.WorkerOptions, production's)")
	flag.IntVar(&o.wftPollers, "workflow-pollers", 0, "control worker's workflow task pollers (0: workerapp.WorkerOptions, production's)")
	flag.IntVar(&o.actPollers, "activity-pollers", 0, "control worker's activity task pollers (0: workerapp.WorkerOptions, production's)")
	flag.IntVar(&o.shards, "shards", 0, "cluster numHistoryShards (0: mageflow cluster's default)")
	flag.StringVar(&o.profileDeploys, "profile-deploys", "", "write CPU profiles of this process (workers and agents) during the deploys to FILE.dev and FILE.cluster")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "benchscale: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	repo, err := smallRepo(filepath.Join(dir, "repo"))
	if err != nil {
		return err
	}
	fmt.Printf("benchscale: %d concurrent deploys (%d apps, 1 env + 1 host each), %d builds in one burst; load before: %s\n", o.deploys, o.deploys, o.builds, loadAvg())
	var results []*result
	for _, target := range []string{"dev", "cluster"} {
		if o.only != "" && o.only != target {
			continue
		}
		r, err := runTarget(ctx, o, target, filepath.Join(dir, target), repo)
		if err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		results = append(results, r)
	}
	fmt.Printf("\nload after: %s\n\n", loadAvg())
	printTable(os.Stdout, o, results)
	return nil
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	var a, b1, c string
	fmt.Sscan(string(b), &a, &b1, &c)
	return a + " " + b1 + " " + c
}
