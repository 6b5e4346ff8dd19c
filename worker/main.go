// Command mageflow-worker runs the control worker: every mageflow workflow
// and the central activities (git, builds, artifact store). Later issues run
// the same binary as a host agent with --agent --host NAME.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mageflow/mageflow/internal/config"
	"github.com/mageflow/mageflow/internal/workerapp"
)

func main() {
	fs := flag.NewFlagSet("mageflow-worker", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file (default ./mageflow.yaml, or $MAGEFLOW_CONFIG)")
	metrics := fs.String("metrics-listen", "", "Prometheus /metrics address (default worker.metrics_listen; - disables)")
	level := fs.String("log-level", "info", "debug, info, warn, error")
	agent := fs.Bool("agent", false, "run as a host agent (polls the host's own task queue, runs host activities)")
	host := fs.String("host", "", "with --agent: this host's name from the config's hosts: section (or the instance id, with --group)")
	group := fs.String("group", "", "with --agent: the host is an instance of this autoscaling group (groups: section)")
	serveWeb := fs.Bool("serve-web", false, "with --agent: also run the host's nginx + php-fpm (docker fleet instances); the web tier keeps serving while the agent reconnects to Temporal")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "mageflow-worker: --log-level %q: use debug, info, warn or error\n", *level)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	p := config.Path(*cfgPath)
	cfg, err := config.Load(p, *cfgPath == "" && os.Getenv(config.EnvFile) == "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "mageflow-worker: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *agent != (*host != "") {
		fmt.Fprintln(os.Stderr, "mageflow-worker: --agent and --host NAME go together, e.g. mageflow-worker --agent --host web1")
		os.Exit(2)
	}
	if *agent && *metrics == "" {
		*metrics = "-" // agents share hosts with the control worker's port
	}
	opts := workerapp.Options{Config: cfg, Logger: logger, MetricsListen: *metrics, AgentHost: *host, AgentGroup: *group}
	if *serveWeb {
		if !*agent {
			fmt.Fprintln(os.Stderr, "mageflow-worker: --serve-web needs --agent --host NAME")
			os.Exit(2)
		}
		os.Exit(serveAndRun(ctx, opts, logger))
	}
	if err := workerapp.Run(ctx, opts); err != nil {
		fmt.Fprintf(os.Stderr, "mageflow-worker: %v\n", err)
		os.Exit(1)
	}
}

// serveAndRun starts the host's web tier, then runs the agent, restarting
// it after a failure (Temporal not reachable yet): an app server keeps
// serving while its agent is down, as nginx and php-fpm would under systemd.
func serveAndRun(ctx context.Context, opts workerapp.Options, logger *slog.Logger) int {
	procs, err := workerapp.ServeWeb(ctx, opts.Config, opts.AgentHost, opts.AgentGroup)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mageflow-worker: --serve-web: %v\n", err)
		return 1
	}
	defer func() {
		for _, p := range procs {
			_ = p.Stop()
		}
	}()
	logger.Info("serving web", "host", opts.AgentHost, "group", opts.AgentGroup)
	for {
		err := workerapp.Run(ctx, opts)
		if ctx.Err() != nil {
			return 0
		}
		logger.Error("agent stopped; restarting in 5s", "error", err)
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(5 * time.Second):
		}
	}
}
