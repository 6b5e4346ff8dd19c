package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/front/cluster"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// clusterOptions are the flags of `mageflow cluster`.
type clusterOptions struct {
	cluster.Options
	workerBin, agentBin, listen, demoSource string
	readyFile, workerConfig                 string
	namespaces                              stringList
	workers                                 int
	demo, exitAfter, temporalOnly           bool
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

var errWorkers = errors.New("--workers must be at least 1")

func clusterFlags(stderr io.Writer) (*env, *clusterOptions) {
	e := newFlags("cluster", stderr)
	o := &clusterOptions{Options: cluster.Defaults()}
	fs := e.fs
	fs.StringVar(&o.Dir, "dir", o.Dir, "the cluster's data, configs and logs (PostgreSQL under <dir>/pg, logs under <dir>/log)")
	fs.StringVar(&o.Bin, "bin", o.Bin, "directory holding temporal-server, temporal-sql-tool and temporal-ui-server (make run-cluster builds them)")
	fs.StringVar(&o.PGBin, "pg-bin", o.PGBin, "PostgreSQL 15's binaries")
	fs.StringVar(&o.PGUser, "pg-user", o.PGUser, "system user PostgreSQL runs as when mageflow runs as root")
	fs.StringVar(&o.IP, "ip", o.IP, "address every process binds to")
	fs.IntVar(&o.Ports.Postgres, "pg-port", o.Ports.Postgres, "PostgreSQL port")
	fs.IntVar(&o.Ports.Frontend, "temporal-port", o.Ports.Frontend, "Temporal frontend gRPC port (history +1, matching +2, worker +6, membership ports 300 lower, frontend HTTP +10)")
	fs.IntVar(&o.Ports.Metrics, "metrics-port", o.Ports.Metrics, "first of the four Temporal services' Prometheus ports")
	fs.IntVar(&o.Ports.UI, "ui-port", o.Ports.UI, "Temporal Web UI port")
	fs.IntVar(&o.Shards, "shards", o.Shards, "numHistoryShards (fixed when the database is first set up)")
	fs.BoolVar(&o.NoUI, "no-ui", false, "do not start the Web UI")
	fs.IntVar(&o.S3Port, "s3-port", 9000, "port of the SeaweedFS S3 server (bin/weed, data in <dir>/s3) the artifacts are kept in; master, volume, filer +1..+3, gRPC +100..+103; 0 keeps the config's artifact store (never with --temporal-only)")
	fs.StringVar(&o.S3Bucket, "s3-bucket", "mageflow-artifacts", "the S3 server's artifact bucket (created if missing)")
	fs.Var(&o.namespaces, "namespace", "also register this namespace with mageflow's search attributes (repeatable)")
	fs.BoolVar(&o.temporalOnly, "temporal-only", false, "run only PostgreSQL, Temporal and the Web UI (make test-cluster)")
	fs.StringVar(&o.readyFile, "ready-file", "", "write the frontend address to this file once the cluster is ready; removed on stop")
	fs.StringVar(&o.workerBin, "worker-bin", "./bin/mageflow-worker", "the control worker binary")
	fs.StringVar(&o.agentBin, "agent-bin", "./bin/mageflow-agent", "the host agent binary (one process per local host)")
	fs.IntVar(&o.workers, "workers", 2, "control worker processes")
	fs.StringVar(&o.listen, "listen", "", "mageflow HTTP server address (default server.listen, 127.0.0.1:8080)")
	fs.BoolVar(&o.demo, "demo", true, "push a demo commit through the webhook and print the release")
	fs.StringVar(&o.demoSource, "demo-source", "./test/fixtures/magento2-app", "the demo app's source tree")
	fs.BoolVar(&o.exitAfter, "exit-after-demo", false, "stop after the demo instead of running until Ctrl-C")
	return e, o
}

// parseCluster parses the flags of `mageflow cluster`.
func parseCluster(args []string, stderr io.Writer) (*env, *clusterOptions, error) {
	e, o := clusterFlags(stderr)
	if err := e.parse(args); err != nil {
		return nil, nil, err
	}
	if o.workers < 1 {
		return nil, nil, usageError{errWorkers}
	}
	return e, o, nil
}

func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e, o, err := parseCluster(args, stderr)
	if err != nil {
		return err
	}
	o.Log = stdout
	if o.temporalOnly {
		o.S3Port = 0
		o.Namespaces = append(o.Namespaces, o.namespaces...)
		o.Namespaces = dedupe(o.Namespaces)
		return runTemporalOnly(ctx, o, stdout)
	}
	cfg, err := e.config(true)
	if err != nil {
		return err
	}
	devAddresses(cfg, o.IP, o.Ports.Frontend, o.Ports.UI, o.listen)
	if err := devPrepare(cfg, stdout); err != nil {
		return err
	}
	for _, b := range []struct{ path, flag string }{{o.workerBin, "--worker-bin"}, {o.agentBin, "--agent-bin"}} {
		if _, err := os.Stat(b.path); err != nil {
			return fmt.Errorf("%s is missing: `make run-cluster` builds it, or pass %s", b.path, b.flag)
		}
	}
	o.Namespaces = dedupe(append([]string{cfg.Temporal.Namespace}, o.namespaces...))
	o.CodecEndpoint = strings.TrimRight(cfg.Server.PublicURL, "/") + "/codec"
	started := time.Now()
	cl, err := cluster.Start(ctx, o.Options)
	if err != nil {
		return err
	}
	defer stopCluster(cl, stdout)
	cfg.Temporal.UIURL = cl.UIURL
	if cl.S3 != nil {
		// Workers, agents and serve (and the demo here) keep artifacts in
		// the S3 server's bucket, the credentials in its 0600 file.
		if err := cl.S3.SetProcessEnv(); err != nil {
			return err
		}
		if o.workerConfig, err = cl.WriteS3Config(cfg); err != nil {
			return err
		}
	}
	return runClusterStack(ctx, e, o, cfg, cl, started, stdout, stderr)
}

// runTemporalOnly runs the cluster without mageflow until ctx ends.
func runTemporalOnly(ctx context.Context, o *clusterOptions, stdout io.Writer) error {
	cl, err := cluster.Start(ctx, o.Options)
	if err != nil {
		return err
	}
	defer stopCluster(cl, stdout)
	if o.readyFile != "" {
		if err := os.WriteFile(o.readyFile, []byte(cl.Frontend+"\n"), 0o644); err != nil {
			return err
		}
		defer os.Remove(o.readyFile)
	}
	fmt.Fprintf(stdout, "cluster ready: frontend %s, Web UI %s; press Ctrl-C to stop\n", cl.Frontend, cl.UIURL)
	return waitCluster(ctx, cl, nil, stdout)
}

func stopCluster(cl *cluster.Cluster, stdout io.Writer) {
	fmt.Fprintln(stdout, "cluster: stopping the Web UI, Temporal services and PostgreSQL …")
	if err := cl.Stop(); err != nil {
		fmt.Fprintf(stdout, "cluster: %v\n", err)
	}
}

// runClusterStack starts the local web tier, the control workers, the host
// agents and `mageflow serve` as processes, runs the demo and waits.
func runClusterStack(ctx context.Context, e *env, o *clusterOptions, cfg *config.Config, cl *cluster.Cluster, started time.Time, stdout, stderr io.Writer) error {
	web, err := startLocalWeb(ctx, cfg, stdout)
	defer func() {
		for _, p := range web {
			_ = p.Stop()
		}
	}()
	if err != nil {
		return err
	}
	procs, err := startMageflowProcs(e, o, cfg, cl)
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Stop(20 * time.Second)
		}
	}()
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://"+cfg.Server.Listen+"/healthz", procs[len(procs)-1]); err != nil {
		return err
	}
	printRunning(stdout, cfg)
	fmt.Fprintf(stdout, "  processes         %d control workers, %d host agents, mageflow serve; logs in %s\n\n", o.workers, len(procs)-o.workers-1, filepath.Join(o.Dir, "log"))
	if o.demo {
		c, err := e.dialQuiet(ctx, cfg, stderr)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := runDevDemos(ctx, cfg, c, nil, o.demoSource, started, stdout); err != nil {
			return err
		}
	}
	if o.exitAfter {
		return nil
	}
	return waitCluster(ctx, cl, procs, stdout)
}

// startMageflowProcs starts the control workers, one agent per local host
// and `mageflow serve` (last), each pointed at the cluster through
// TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE in its own environment.
func startMageflowProcs(e *env, o *clusterOptions, cfg *config.Config, cl *cluster.Cluster) ([]*cluster.Proc, error) {
	cfgPath, err := filepath.Abs(config.Path(*e.configPath))
	if err != nil {
		return nil, err
	}
	if o.workerConfig != "" {
		cfgPath = o.workerConfig
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	envv := append(os.Environ(), "TEMPORAL_ADDRESS="+cl.Frontend, "TEMPORAL_NAMESPACE="+cfg.Temporal.Namespace)
	logDir := filepath.Join(o.Dir, "log")
	var procs []*cluster.Proc
	start := func(name, bin string, args ...string) error {
		cmd := exec.Command(bin, args...)
		cmd.Env = envv
		p, err := cluster.StartProc(name, logDir, cmd)
		if err == nil {
			procs = append(procs, p)
		}
		return err
	}
	host, port, _ := net.SplitHostPort(cfg.Worker.MetricsListen)
	base, _ := strconv.Atoi(port)
	for i := 1; i <= o.workers; i++ {
		metrics := "-"
		if base > 0 {
			metrics = net.JoinHostPort(host, strconv.Itoa(base+i-1))
		}
		if err := start(fmt.Sprintf("mageflow-worker-%d", i), o.workerBin, "--config", cfgPath, "--metrics-listen", metrics); err != nil {
			return procs, err
		}
	}
	for _, h := range localHosts(cfg) {
		if err := start("mageflow-agent-"+h, o.agentBin, "--config", cfgPath, "--host", h); err != nil {
			return procs, err
		}
	}
	err = start("mageflow-serve", self, "serve", "--config", cfgPath, "--listen", cfg.Server.Listen)
	return procs, err
}

// waitHTTP polls url until it answers 200, p exits or 60 s pass.
func waitHTTP(ctx context.Context, url string, p *cluster.Proc) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v): see its log", p.Name, p.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %v", url, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// waitCluster runs until Ctrl-C (nil), a mageflow process exits or the
// cluster's supervisor gives up (a Temporal service that dies is restarted).
func waitCluster(ctx context.Context, cl *cluster.Cluster, procs []*cluster.Proc, stdout io.Writer) error {
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- cl.Supervise(sctx) }()
	// The supervisor has ended before the caller stops the cluster: it
	// must not restart a service Stop is stopping.
	stopSupervisor := func() { cancel(); <-errc }
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "\nstopping …")
			stopSupervisor()
			return nil
		case err := <-errc:
			return err
		case <-tick.C:
		}
		for _, p := range procs {
			if p.Exited() {
				stopSupervisor()
				return fmt.Errorf("%s exited (%v): see its log", p.Name, p.Err())
			}
		}
	}
}

// dedupe drops repeated and empty names, keeping the first order.
func dedupe(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
