package workerapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/mageflow/mageflow/internal/front/agentapp"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// Flags are mageflow-worker's command line.
type Flags struct {
	Config, MetricsListen, LogLevel string
	Agent, ServeWeb                 bool
	Host, Group                     string
}

// Usage errors of mageflow-worker.
var (
	errAgentHost = errors.New("--agent and --host NAME go together, e.g. mageflow-worker --agent --host web1")
	errServeWeb  = errors.New("--serve-web needs --agent --host NAME")
)

// errUsage marks a command line that cannot run (exit 2).
type errUsage struct{ error }

// ParseFlags reads mageflow-worker's arguments. flag.ErrHelp comes back
// for -h; other errors are usage errors.
func ParseFlags(args []string, stderr io.Writer) (*Flags, error) {
	f := &Flags{}
	fs := flag.NewFlagSet("mageflow-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.Config, "config", "", "config file (default ./mageflow.yaml, or $MAGEFLOW_CONFIG)")
	fs.StringVar(&f.MetricsListen, "metrics-listen", "", "Prometheus /metrics address (default worker.metrics_listen; - disables)")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn, error")
	fs.BoolVar(&f.Agent, "agent", false, "run as a host agent (polls the host's own task queue, runs host activities)")
	fs.StringVar(&f.Host, "host", "", "with --agent: this host's name from the config's hosts: section (or the instance id, with --group)")
	fs.StringVar(&f.Group, "group", "", "with --agent: the host is an instance of this autoscaling group (groups: section)")
	fs.BoolVar(&f.ServeWeb, "serve-web", false, "with --agent: also run the host's nginx + php-fpm (docker fleet instances); the web tier keeps serving while the agent reconnects to Temporal")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage{err}
	}
	if fs.NArg() > 0 {
		return nil, errUsage{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return nil, errUsage{fmt.Errorf("--log-level %q: use debug, info, warn or error", f.LogLevel)}
	}
	if f.Agent != (f.Host != "") {
		return nil, errUsage{errAgentHost}
	}
	if f.ServeWeb && !f.Agent {
		return nil, errUsage{errServeWeb}
	}
	if f.Agent && f.MetricsListen == "" {
		f.MetricsListen = "-" // agents share hosts with the control worker's port
	}
	return f, nil
}

// Main is mageflow-worker: it parses args, loads the config and runs the
// control worker or a host agent until ctx ends. It returns the exit code.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	f, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mageflow-worker: %v\n", err)
		return 2
	}
	if f.Agent {
		return agentapp.RunFlags(ctx, &agentapp.Flags{Config: f.Config, LogLevel: f.LogLevel, Host: f.Host, Group: f.Group, ServeWeb: f.ServeWeb}, "mageflow-worker --agent", stderr)
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(f.LogLevel))
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	cfg, err := config.Load(config.Path(f.Config), f.Config == "" && os.Getenv(config.EnvFile) == "")
	if err != nil {
		fmt.Fprintf(stderr, "mageflow-worker: %v\n", err)
		return 1
	}
	if err := Run(ctx, Options{Config: cfg, Logger: logger, MetricsListen: f.MetricsListen}); err != nil {
		fmt.Fprintf(stderr, "mageflow-worker: %v\n", err)
		return 1
	}
	return 0
}
