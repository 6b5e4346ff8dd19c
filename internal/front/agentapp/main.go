package agentapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/mageflow/mageflow/internal/platform/config"
)

// Flags are mageflow-agent's command line.
type Flags struct {
	Config, LogLevel, Host, Group string
	ServeWeb                      bool
}

// errHost is the usage error of a command line without --host.
var errHost = errors.New("--host NAME is required: the host's name from the config's hosts: section (or the instance id, with --group), e.g. mageflow-agent --host web1")

// ErrUsage marks a command line that cannot run (exit 2).
type ErrUsage struct{ error }

// Unwrap returns the usage problem.
func (e ErrUsage) Unwrap() error { return e.error }

// ParseFlags reads mageflow-agent's arguments. flag.ErrHelp comes back for
// -h; other errors are ErrUsage.
func ParseFlags(args []string, stderr io.Writer) (*Flags, error) {
	f := &Flags{}
	fs := flag.NewFlagSet("mageflow-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.Config, "config", "", "config file (default ./mageflow.yaml, or $MAGEFLOW_CONFIG)")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn, error")
	fs.StringVar(&f.Host, "host", "", "this host's name from the config's hosts: section (or the instance id, with --group)")
	fs.StringVar(&f.Group, "group", "", "the host is an instance of this autoscaling group (groups: section)")
	fs.BoolVar(&f.ServeWeb, "serve-web", false, "also run the host's nginx + php-fpm (docker fleet instances); the web tier keeps serving while the agent reconnects to Temporal")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, ErrUsage{err}
	}
	if fs.NArg() > 0 {
		return nil, ErrUsage{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return nil, ErrUsage{fmt.Errorf("--log-level %q: use debug, info, warn or error", f.LogLevel)}
	}
	if f.Host == "" {
		return nil, ErrUsage{errHost}
	}
	return f, nil
}

// Main is mageflow-agent: it parses args, loads the config and runs the
// host's agent until ctx ends. It returns the exit code.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	f, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mageflow-agent: %v\n", err)
		return 2
	}
	return RunFlags(ctx, f, "mageflow-agent", stderr)
}

// RunFlags loads the config and runs the agent f describes (also behind
// `mageflow-worker --agent`); name prefixes its messages.
func RunFlags(ctx context.Context, f *Flags, name string, stderr io.Writer) int {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(f.LogLevel))
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	cfg, err := config.Load(config.Path(f.Config), f.Config == "" && os.Getenv(config.EnvFile) == "")
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	opts := Options{Config: cfg, Logger: logger, Host: f.Host, Group: f.Group}
	if f.ServeWeb {
		return serveAndRun(ctx, opts, name, stderr)
	}
	if err := Run(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

// restartDelay is how long a --serve-web agent waits before running again
// after Run failed (Temporal not reachable yet).
const restartDelay = 5 * time.Second

// serveAndRun starts the host's web tier, then runs the agent, restarting
// it after a failure: an app server keeps serving while its agent is down,
// as nginx and php-fpm would under systemd.
func serveAndRun(ctx context.Context, opts Options, name string, stderr io.Writer) int {
	procs, err := ServeWeb(ctx, opts.Config, opts.Host, opts.Group)
	if err != nil {
		fmt.Fprintf(stderr, "%s: --serve-web: %v\n", name, err)
		return 1
	}
	defer func() {
		for _, p := range procs {
			_ = p.Stop()
		}
	}()
	opts.Logger.Info("serving web", "host", opts.Host, "group", opts.Group)
	runUntilDone(ctx, func(ctx context.Context) error { return Run(ctx, opts) }, restartDelay, opts.Logger)
	return 0
}

// runUntilDone runs run again, delay after each failure, until ctx ends.
func runUntilDone(ctx context.Context, run func(context.Context) error, delay time.Duration, logger *slog.Logger) {
	for {
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		logger.Error("agent stopped; restarting", "error", err, "after", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}
