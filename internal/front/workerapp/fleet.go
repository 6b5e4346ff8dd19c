package workerapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// ControllerInterval is how often the docker fleet's controller looks for
// work. Its passes are cheap (one state file per group and a container
// inspect per instance that must change) and a scale-out waits for the
// next pass, so it is short: it is most of what a warm-pool scale-out
// spends before the instance starts.
const ControllerInterval = 250 * time.Millisecond

// startFleet runs the controller of the docker fleet provider in the
// control worker when the config declares docker groups: it launches,
// starts, stops and removes containers as Auto Scaling would, applies hook
// timeouts, and reports every new lifecycle action by starting its
// ScaleOutReadiness run — the same workflow id an EventBridge event gets on
// AWS, so a controller restarted after a crash re-reports pending actions
// into the runs already handling them. The controller stops with ctx.
//
// Several processes may run it on one state directory (every `mageflow
// dev` and control worker): the provider serialises passes with a file
// lock per group and the workflow ids make notifications idempotent.
func startFleet(ctx context.Context, cfg *config.Config, c client.Client, logger *slog.Logger) error {
	type target struct {
		opts  dockerfleet.Options
		specs []dockerfleet.GroupSpec
		names []string
	}
	targets := map[string]*target{}
	var keys []string
	for key, g := range cfg.Groups {
		if g != nil && g.Provider == "docker" {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	notify := (&start.Fleet{Client: c, Config: cfg}).Notify
	var order []string
	for _, key := range keys {
		opts, spec, err := dockerGroup(cfg, key)
		if err != nil {
			return fmt.Errorf("docker group %s: %w", key, err)
		}
		id := opts.StateDir + "\x00" + opts.Network
		t := targets[id]
		if t == nil {
			opts.Notify = notify
			t = &target{opts: opts}
			targets[id] = t
			order = append(order, id)
		}
		t.names = append(t.names, cfg.Groups[key].Name)
		if spec != nil {
			t.specs = append(t.specs, *spec)
		}
	}
	for _, id := range order {
		t := targets[id]
		p, err := dockerfleet.New(t.opts)
		if err != nil {
			return err
		}
		for _, s := range t.specs {
			if err := p.EnsureGroup(ctx, s); err != nil {
				p.Close()
				return fmt.Errorf("%w (fix the group in %s)", err, cfg.File)
			}
		}
		logger.Info("docker fleet controller", "groups", t.names, "stateDir", t.opts.StateDir, "network", t.opts.Network)
		go func() {
			defer p.Close()
			if err := p.Run(ctx, ControllerInterval); err != nil && !errors.Is(err, context.Canceled) {
				logger.Error("docker fleet controller stopped", "error", err)
			}
		}()
	}
	return nil
}

// dockerGroup is a docker group's provider options (without Notify) and
// the spec to ensure: the config's (dockerfleet.SpecFromConfig) plus what
// every instance's agent needs to run as this worker does — the same
// config file, artifact store, codec key and secrets, mounted read-only at
// the same paths, and the Temporal server this worker uses (TEMPORAL_*
// take precedence over the file's temporal: section; `mageflow dev
// --fleet` serves Temporal on the network's gateway).
func dockerGroup(cfg *config.Config, key string) (dockerfleet.Options, *dockerfleet.GroupSpec, error) {
	g := cfg.Groups[key]
	if g.Docker == nil {
		return dockerfleet.Options{}, nil, fmt.Errorf("no docker settings (load the config with config.Load)")
	}
	spec, err := dockerfleet.SpecFromConfig(g)
	if err != nil {
		return dockerfleet.Options{}, nil, err
	}
	env := map[string]bool{}
	for _, e := range spec.Env {
		k, _, _ := strings.Cut(e, "=")
		env[k] = true
	}
	setEnv := func(k, v string) {
		if !env[k] && v != "" {
			spec.Env = append(spec.Env, k+"="+v)
			env[k] = true
		}
	}
	// The config is mounted at its absolute path: a relative one (mageflow
	// dev --config mageflow.fleet.yaml) means nothing inside a container.
	file := cfg.File
	if file != "" {
		if abs, err := filepath.Abs(file); err == nil {
			file = abs
		}
		setEnv(config.EnvFile, file)
	}
	setEnv("TEMPORAL_ADDRESS", cfg.Temporal.Address)
	setEnv("TEMPORAL_NAMESPACE", cfg.Temporal.Namespace)
	mounted := map[string]bool{}
	for _, m := range spec.Mounts {
		_, rest, _ := strings.Cut(m, ":")
		dst, _, _ := strings.Cut(rest, ":")
		mounted[dst] = true
	}
	ro := func(p string) {
		if p == "" || !filepath.IsAbs(p) {
			return
		}
		for dst := range mounted {
			if p == dst || strings.HasPrefix(p, strings.TrimRight(dst, "/")+"/") {
				return // already inside a mount
			}
		}
		if _, err := os.Stat(p); err != nil {
			return // nothing to share yet (a missing secrets dir)
		}
		spec.Mounts = append(spec.Mounts, p+":"+p+":ro")
		mounted[p] = true
	}
	ro(file)
	if cfg.Artifacts.S3 == nil {
		ro(cfg.Artifacts.Dir)
	}
	if !cfg.Codec.Disabled {
		ro(cfg.Codec.KeyFile)
	}
	ro(cfg.Secrets.Dir)
	return dockerfleet.Options{StateDir: g.Docker.StateDir, Network: g.Docker.Network}, &spec, spec.Validate()
}
