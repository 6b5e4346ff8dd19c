// Package workerapp runs the mageflow control worker: it registers every
// workflow and central activity on the control task queue and serves
// Prometheus metrics (the SDK's and mageflow's own). bin/mageflow-worker and
// `mageflow dev` both run it.
package workerapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/gitmeta"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/metrics"
	"github.com/mageflow/mageflow/internal/platform/secrets"
	"github.com/mageflow/mageflow/workflows"
)

// Options configures Run.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Client, when set, is used instead of dialing (the dev command shares
	// one client between worker and server).
	Client client.Client
	// MetricsListen overrides config worker.metrics_listen; "-" disables.
	MetricsListen string
}

// Register puts every workflow and control activity on w. Tests use it
// too, so the worker under test is the worker that ships.
func Register(w worker.Registry, acts *activities.BuildActivities, deploy *activities.DeployActivities) {
	w.RegisterWorkflowWithOptions(workflows.BuildRelease, workflow.RegisterOptions{Name: "BuildRelease"})
	w.RegisterWorkflowWithOptions(workflows.ResolveRef, workflow.RegisterOptions{Name: "ResolveRef"})
	w.RegisterWorkflowWithOptions(workflows.ZeroDowntimeDeploy, workflow.RegisterOptions{Name: "ZeroDowntimeDeploy"})
	w.RegisterWorkflowWithOptions(workflows.ScheduledBuild, workflow.RegisterOptions{Name: "ScheduledBuild"})
	w.RegisterWorkflowWithOptions(workflows.ScaleOutReadiness, workflow.RegisterOptions{Name: "ScaleOutReadiness"})
	w.RegisterWorkflowWithOptions(workflows.WarmPoolImageRefresh, workflow.RegisterOptions{Name: "WarmPoolImageRefresh"})
	w.RegisterWorkflowWithOptions(workflows.MagentoM1EOLHardening, workflow.RegisterOptions{Name: "MagentoM1EOLHardening"})
	w.RegisterWorkflowWithOptions(workflows.ScheduledHarden, workflow.RegisterOptions{Name: "ScheduledHarden"})
	w.RegisterActivity(acts)
	w.RegisterActivity(deploy)
	w.RegisterActivity(&activities.FleetActivities{Config: deploy.Config, Store: deploy.Store, Client: deploy.Client, Fleet: deploy.Fleet})
}

// NewBuildActivities wires the build activities from config.
func NewBuildActivities(ctx context.Context, cfg *config.Config, reg prometheus.Registerer) (*activities.BuildActivities, error) {
	st, err := store.Configured(ctx, cfg.Artifacts)
	if err != nil {
		return nil, fmt.Errorf("open artifact store: %w", err)
	}
	var m *metrics.Build
	if reg != nil {
		m = metrics.NewBuild(reg)
	}
	return &activities.BuildActivities{
		Config: cfg, Git: gitmeta.NewCache(cfg.Git.CacheDir), Store: st,
		Secrets: secrets.Area{Dir: cfg.Secrets.Dir}, Metrics: m, NewRunner: activities.DefaultRunner,
	}, nil
}

// Run runs the worker until ctx is cancelled.
func Run(ctx context.Context, opt Options) error {
	cfg, logger := opt.Config, opt.Logger
	if logger == nil {
		logger = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	c := opt.Client
	if c == nil {
		dialed, closeClient, err := dial(ctx, cfg, logger, reg)
		if err != nil {
			return err
		}
		defer closeClient()
		c = dialed
	}
	w, queue, err := newWorker(ctx, opt, c, reg, logger)
	if err != nil {
		return err
	}
	listen := cfg.Worker.MetricsListen
	if opt.MetricsListen != "" {
		listen = opt.MetricsListen
	}
	if listen != "-" {
		closeMetrics, err := serveMetrics(listen, reg, logger)
		if err != nil {
			return err
		}
		defer closeMetrics()
	}
	logger.Info("worker polling", "taskQueue", queue, "namespace", cfg.Temporal.Namespace)
	stop := make(chan any)
	go func() { <-ctx.Done(); close(stop) }()
	return w.Run(stop)
}

// dial connects the worker with SDK metrics in reg; closeFn closes the
// client, then the metrics scope.
func dial(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg *prometheus.Registry) (c client.Client, closeFn func(), err error) {
	dc, _, err := tclient.DataConverter(cfg)
	if err != nil {
		return nil, nil, err
	}
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  tallyprom.NewReporter(tallyprom.Options{Registerer: reg}),
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, time.Second)
	copts, err := tclient.Options(cfg, logger, dc, sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)))
	if err == nil {
		c, err = tclient.Dial(ctx, copts)
	}
	if err != nil {
		closer.Close()
		return nil, nil, err
	}
	return c, func() { c.Close(); closer.Close() }, nil
}

// newWorker builds the control worker, which also starts the local docker
// fleets; it returns the task queue the worker polls.
func newWorker(ctx context.Context, opt Options, c client.Client, reg prometheus.Registerer, logger *slog.Logger) (worker.Worker, string, error) {
	cfg := opt.Config
	acts, err := NewBuildActivities(ctx, cfg, reg)
	if err != nil {
		return nil, "", err
	}
	queue := cfg.Temporal.TaskQueue
	w := worker.New(c, queue, WorkerOptions(cfg))
	Register(w, acts, &activities.DeployActivities{Config: cfg, Store: acts.Store, Client: c, Fleet: activities.OpenFleet})
	if err := startFleet(ctx, cfg, c, logger); err != nil {
		return nil, "", err
	}
	return w, queue, nil
}

// WorkerOptions are the control worker's SDK options, tuned with
// test/benchscale (docs/benchmarks.md, "Scale"):
//
//   - Pollers scale with the server's backlog hints (SDK poller
//     autoscaling, starting at 8) instead of the SDK's fixed 2. With 2, a
//     burst of new workflows (100 deploys, a push to many apps) waited for
//     its first workflow task: p50 6.8 s for 40 deploys on the cluster. A
//     fixed 8 for both kinds moved the wait from one queue to the other
//     (first workflow task p50 7.9 s, activities fine); autoscaling kept
//     both near a second and gave the fastest runs on both servers.
//   - controlActivitySlots + the builds' own slots for activities: a build
//     waiting for a free build slot (worker.max_concurrent_builds) holds an
//     activity slot, so with 8 + 2 slots ten queued builds starved every
//     short activity (records, plans, agent checks) behind them.
func WorkerOptions(cfg *config.Config) worker.Options {
	return worker.Options{
		MaxConcurrentActivityExecutionSize: controlActivitySlots + cfg.Worker.MaxConcurrentBuilds,
		WorkflowTaskPollerBehavior:         worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{InitialNumberOfPollers: 8}),
		ActivityTaskPollerBehavior:         worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{InitialNumberOfPollers: 8}),
	}
}

// controlActivitySlots is how many activities besides running builds the
// control worker runs at once: short I/O (catalog records, plans, agent
// checks) and builds queued for a build slot, which only wait.
const controlActivitySlots = 200

// serveMetrics serves reg's Prometheus metrics on listen until closeFn.
func serveMetrics(listen string, reg *prometheus.Registry, logger *slog.Logger) (closeFn func(), err error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint %s: %w (another worker running? set worker.metrics_listen or --metrics-listen)", listen, err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "error", err)
		}
	}()
	logger.Info("worker metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { srv.Close() }, nil
}
