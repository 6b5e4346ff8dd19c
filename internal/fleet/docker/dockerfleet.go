// Package dockerfleet implements fleet.Provider with Docker containers on one
// machine: a model of an EC2 Auto Scaling group, so `make run`, the e2e tests
// and the benchmarks exercise the same scaling workflows mageflow runs on AWS.
//
// What is modelled, and how (docs/fleet-docker.md has the full list of what
// matches AWS and what does not):
//
//   - A group is containers from an image on a bridge network the provider
//     creates if missing. Instance IDs look like EC2's (i-0123456789), the
//     container is named mageflow-<group>-<id>, the private IP is the
//     container's address on the network.
//   - A launch template version is an image; versions are numbered 1, 2, 3…
//     and kept for rollback. CreateImage is `docker commit`.
//   - The warm pool is stopped containers (paused ones for Hibernated, running
//     ones for Running), started on scale-out as AWS starts pooled instances.
//   - Lifecycle hooks hold instances in Pending:Wait, Warmed:Pending:Wait and
//     Terminating:Wait until CompleteLifecycleAction or the hook's timeout
//     applies its default result; heartbeats extend the timeout.
//
// Like Auto Scaling, the API is asynchronous: Provider methods only change
// the group's recorded state (plus quick docker calls such as a commit), and
// Reconcile — run by Run in a loop, in whichever process owns the fleet —
// does the slow work: launching, starting, stopping, removing containers,
// applying hook timeouts and sending lifecycle notifications. State is one
// JSON file per group under Options.StateDir, guarded by flock, so a control
// worker, the CLI and tests in other processes share one fleet.
package dockerfleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/mageflow/mageflow/internal/fleet"
)

// Labels put on every container, network and image the provider creates, so
// an operator (and DeleteGroup) can find them with `docker ps --filter`.
const (
	LabelGroup    = "org.mageflow.fleet.group"
	LabelInstance = "org.mageflow.fleet.instance"
	LabelVersion  = "org.mageflow.fleet.version"
)

// DefaultNetwork is used when Options.Network is empty.
const DefaultNetwork = "mageflow-fleet"

// DefaultHookTimeout is a hook's timeout when its spec leaves it zero: Auto
// Scaling's default HeartbeatTimeout (one hour).
const DefaultHookTimeout = time.Hour

// maxHookTimeout is Auto Scaling's upper bound of HeartbeatTimeout (7200 s).
const maxHookTimeout = 2 * time.Hour

// Options configures a Provider.
type Options struct {
	// StateDir holds one JSON file (and one lock file) per group. Every
	// process that shares the fleet must use the same directory.
	StateDir string
	// Network is the bridge network instances join; created if missing.
	// Default DefaultNetwork.
	Network string
	// Notify receives every new lifecycle action (what EventBridge delivers
	// on AWS). An error is retried on the next Reconcile; nil sends nothing.
	Notify func(ctx context.Context, a fleet.LifecycleAction) error
	// Docker is the engine client; default: from the environment
	// (DOCKER_HOST), with API version negotiation.
	Docker *client.Client
	// Now is the clock; default time.Now. Tests may move it forward to
	// expire hooks without sleeping.
	Now func() time.Time
}

// Provider is the docker fleet.Provider.
type Provider struct {
	opts   Options
	docker *client.Client
	ownCli bool
}

var _ fleet.Provider = (*Provider)(nil)

// New checks the engine answers and the state directory is usable, and
// creates the network if missing.
func New(opts Options) (*Provider, error) {
	if opts.StateDir == "" {
		return nil, errors.New("dockerfleet: Options.StateDir is empty: name a directory every process sharing the fleet can write")
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("dockerfleet: state dir: %w", err)
	}
	if opts.Network == "" {
		opts.Network = DefaultNetwork
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Provider{opts: opts, docker: opts.Docker}
	if p.docker == nil {
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("dockerfleet: docker client: %w", err)
		}
		p.docker, p.ownCli = cli, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := p.docker.Ping(ctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("dockerfleet: Docker engine not reachable at %s: start it (systemctl start docker) (%v)", p.docker.DaemonHost(), err)
	}
	if err := p.ensureNetwork(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close releases the engine connection if New opened it.
func (p *Provider) Close() error {
	if p.ownCli {
		return p.docker.Close()
	}
	return nil
}

// Network is the network instances join.
func (p *Provider) Network() string { return p.opts.Network }

func (p *Provider) ensureNetwork(ctx context.Context) error {
	if _, err := p.docker.NetworkInspect(ctx, p.opts.Network, network.InspectOptions{}); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("dockerfleet: inspect network %s: %w", p.opts.Network, err)
	}
	_, err := p.docker.NetworkCreate(ctx, p.opts.Network, network.CreateOptions{
		Driver: "bridge", Labels: map[string]string{LabelGroup: ""},
	})
	if err != nil && !cerrdefs.IsConflict(err) && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("dockerfleet: create network %s: %w", p.opts.Network, err)
	}
	return nil
}

// Gateway returns the network's gateway address: the host as instances see
// it, where host services (Temporal, the artifact store, the balancer) must
// listen to be reachable from instances.
func (p *Provider) Gateway(ctx context.Context) (string, error) {
	n, err := p.docker.NetworkInspect(ctx, p.opts.Network, network.InspectOptions{})
	if err != nil {
		return "", fmt.Errorf("dockerfleet: inspect network %s: %w", p.opts.Network, err)
	}
	for _, c := range n.IPAM.Config {
		if c.Gateway != "" && !strings.Contains(c.Gateway, ":") {
			return c.Gateway, nil
		}
	}
	return "", fmt.Errorf("dockerfleet: network %s has no IPv4 gateway; recreate it as a bridge network", p.opts.Network)
}

// Hook is a lifecycle hook: Timeout is its HeartbeatTimeout (default one
// hour, at most two), Default the result applied when it expires (default
// ABANDON, as on AWS).
type Hook struct {
	Name    string
	Timeout time.Duration
	Default fleet.Result
}

// GroupSpec is a group's configuration, the model's stand-in for an Auto
// Scaling group, its launch template and its hooks.
type GroupSpec struct {
	Name               string
	Min, Max, Desired  int
	Image              string                // launch template version 1
	WarmPool           *fleet.WarmPoolConfig // nil: none
	LaunchHook         *Hook
	TerminateHook      *Hook
	Env                []string          // KEY=VALUE; "{{ID}}" becomes the instance id
	Mounts             []string          // "src:dst[:ro]" bind mounts
	Cmd                []string          // overrides the image's CMD; "{{ID}}" as in Env
	Labels             map[string]string // extra container labels
	StopTimeoutSeconds int               // grace before SIGKILL when stopping; default 10
}

var (
	groupNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	imageNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// Validate checks a spec the way CreateAutoScalingGroup would.
func (s GroupSpec) Validate() error {
	var problems []string
	if !groupNameRE.MatchString(s.Name) {
		problems = append(problems, fmt.Sprintf("name %q must be lower-case letters, digits, '.', '_' or '-'", s.Name))
	}
	if s.Min < 0 || s.Max < s.Min || s.Desired < s.Min || s.Desired > s.Max {
		problems = append(problems, fmt.Sprintf("need 0 <= min (%d) <= desired (%d) <= max (%d)", s.Min, s.Desired, s.Max))
	}
	if s.Image == "" {
		problems = append(problems, "image is required (launch template version 1)")
	}
	if w := s.WarmPool; w != nil {
		if w.MinSize < 0 || w.MaxPreparedCapacity < 0 {
			problems = append(problems, fmt.Sprintf("warm pool sizes %+v must not be negative", *w))
		}
		if !validPoolState(w.State) {
			problems = append(problems, fmt.Sprintf("warm pool state %q is not Stopped, Running or Hibernated", w.State))
		}
	}
	for _, h := range []*Hook{s.LaunchHook, s.TerminateHook} {
		if h == nil {
			continue
		}
		if h.Name == "" {
			problems = append(problems, "a hook needs a name")
		}
		if h.Timeout < 0 || h.Timeout > maxHookTimeout {
			problems = append(problems, fmt.Sprintf("hook %s timeout %s must be between 0 (default 1h) and 2h", h.Name, h.Timeout))
		}
		if h.Default != "" && h.Default != fleet.Continue && h.Default != fleet.Abandon {
			problems = append(problems, fmt.Sprintf("hook %s default result %q is neither CONTINUE nor ABANDON", h.Name, h.Default))
		}
	}
	for _, m := range s.Mounts {
		if _, err := parseMount(m); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			problems = append(problems, fmt.Sprintf("env entry %q is not KEY=VALUE", e))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("dockerfleet: group %s: %s", s.Name, strings.Join(problems, "; "))
	}
	return nil
}

func validPoolState(s fleet.PoolState) bool {
	return s == "" || s == fleet.PoolStopped || s == fleet.PoolRunning || s == fleet.PoolHibernated
}

// newInstanceID returns an EC2-looking id: "i-" and 10 hex digits.
func newInstanceID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return "i-" + hex.EncodeToString(b)
}

// ContainerName is the container of an instance.
func ContainerName(group, id string) string { return "mageflow-" + group + "-" + id }

// ImageRepo is the repository CreateImage commits a group's images to.
func ImageRepo(group string) string { return "mageflow/fleet-" + group }

func expand(list []string, id string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ReplaceAll(s, "{{ID}}", id)
	}
	return out
}
