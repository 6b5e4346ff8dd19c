// Package agentapp runs a host agent: it polls the host's own task queue
// and runs only the host activities (activities/agent): prepare, switch,
// reload, probes, pruning, hardening and, on a balancer, the pool's
// membership. bin/mageflow-agent is this package and what it needs; it
// links no AWS EC2 or Auto Scaling SDK, no Docker client, no dashboard and
// no CLI, because it runs as root on every app server.
package agentapp

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/host/lbconf"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
)

// Options configures Run.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Client, when set, is used instead of dialing (`mageflow dev` shares
	// one client between its worker, agents and server).
	Client client.Client
	// Host is the host's name from the config's hosts: section, or the
	// instance id with Group.
	Host string
	// Group: the host is an instance of this autoscaling group.
	Group string
}

// Register puts a host's activities on its agent worker; lb is nil unless
// the host balances a group.
func Register(w worker.Registry, host *agent.HostActivities, lb *agent.LBActivities) {
	w.RegisterActivity(host)
	w.RegisterActivity(agent.NewHardenActivities(host))
	if lb != nil {
		w.RegisterActivity(lb)
	}
}

// NewLBActivities builds the balancer activities of host for every group
// whose balancer.host it is (nil when it balances none), writes missing
// includes (never touching nginx) and validates the settings.
func NewLBActivities(cfg *config.Config, host string) (*agent.LBActivities, error) {
	ups := map[string]agent.LBUpstream{}
	for name, g := range cfg.Groups {
		if g == nil || g.Balancer.Host != host {
			continue
		}
		b := g.Balancer
		ups[name] = agent.LBUpstream{File: b.File, Name: b.Upstream, Port: b.Port, VerifyURL: b.VerifyURL, Keepalive: b.Keepalive}
	}
	if len(ups) == 0 {
		return nil, nil
	}
	h := cfg.Hosts[host]
	lb := &agent.LBActivities{Host: host, Upstreams: ups}
	if h != nil {
		lb.Nginx = lbconf.Nginx{Binary: h.Nginx.Binary, Prefix: h.Nginx.Prefix, ConfFile: h.Nginx.Conf, PIDFile: h.Nginx.PIDFile, ErrorLog: h.Nginx.ErrorLog}
	}
	if err := lb.Validate(); err != nil {
		return nil, fmt.Errorf("balancer settings of %s: %w", host, err)
	}
	if err := lb.EnsureIncludes(); err != nil {
		return nil, err
	}
	return lb, nil
}

// NewHostActivities wires a host agent from config. With group set, the
// host is an autoscaling instance configured by the group's host template.
func NewHostActivities(ctx context.Context, cfg *config.Config, host, group string) (*agent.HostActivities, error) {
	if _, err := cfg.HostForAgent(host, group); err != nil {
		return nil, fmt.Errorf("%w; declared hosts: %v", err, hostNames(cfg))
	}
	st, err := store.Configured(ctx, cfg.Artifacts)
	if err != nil {
		return nil, fmt.Errorf("open artifact store: %w", err)
	}
	return &agent.HostActivities{Host: host, Config: cfg, Store: st, Secrets: secrets.Area{Dir: cfg.Secrets.Dir}}, nil
}

func hostNames(cfg *config.Config) []string {
	var n []string
	for h := range cfg.Hosts {
		n = append(n, h)
	}
	sort.Strings(n)
	return n
}

// NewWorker builds the host's agent worker on its own task queue.
func NewWorker(ctx context.Context, opt Options, c client.Client) (worker.Worker, string, error) {
	w, _, queue, err := newWorker(ctx, opt, c)
	return w, queue, err
}

func newWorker(ctx context.Context, opt Options, c client.Client) (worker.Worker, *agent.HostActivities, string, error) {
	host, err := NewHostActivities(ctx, opt.Config, opt.Host, opt.Group)
	if err != nil {
		return nil, nil, "", err
	}
	lb, err := NewLBActivities(opt.Config, opt.Host)
	if err != nil {
		return nil, nil, "", err
	}
	queue := agent.HostTaskQueue(opt.Host)
	w := worker.New(c, queue, WorkerOptions())
	Register(w, host, lb)
	return w, host, queue, nil
}

// Run runs the agent until ctx is cancelled. It serves no metrics: the
// control worker owns the metrics port of a host they share.
func Run(ctx context.Context, opt Options) error {
	logger := opt.Logger
	if logger == nil {
		logger = slog.Default()
	}
	c := opt.Client
	if c == nil {
		dc, _, err := tclient.DataConverter(opt.Config)
		if err != nil {
			return err
		}
		copts, err := tclient.Options(opt.Config, logger, dc, nil)
		if err != nil {
			return err
		}
		if c, err = tclient.Dial(ctx, copts); err != nil {
			return err
		}
		defer c.Close()
	}
	w, host, queue, err := newWorker(ctx, opt, c)
	if err != nil {
		return err
	}
	// The spares and hashes the previous agent's memory held, rebuilt in
	// the background; a spare tree half staged when the agent stops is
	// removed.
	wctx, cancel := context.WithCancel(ctx)
	warm := make(chan struct{})
	go func() { defer close(warm); agent.WarmUp(wctx, host) }()
	defer func() { cancel(); <-warm; agent.StopSpares(host) }()
	logger.Info("agent polling", "taskQueue", queue, "namespace", opt.Config.Temporal.Namespace, "host", opt.Host, "group", opt.Group)
	stop := make(chan any)
	go func() { <-ctx.Done(); close(stop) }()
	return w.Run(stop)
}
