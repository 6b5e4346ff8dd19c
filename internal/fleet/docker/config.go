package dockerfleet

import (
	"fmt"
	"sort"
	"sync"

	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// Hook names of groups made from mageflow.yaml.
const (
	LaunchHookName    = "mageflow-launch"
	TerminateHookName = "mageflow-terminate"
	// AgentPath is where the instance image's entrypoint expects the agent.
	AgentPath = "/opt/mageflow/mageflow-agent"
)

// SpecFromConfig is the spec of a provider: docker group from mageflow.yaml
// (defaults applied by config.Load): launch hook mageflow-launch (ABANDON
// on expiry: an instance nobody vouched for never serves), terminate hook
// mageflow-terminate (CONTINUE on expiry: a stuck drain does not keep a
// container forever), the agent mounted at AgentPath when docker.agent is
// set.
func SpecFromConfig(g *config.Group) (GroupSpec, error) {
	d := g.Docker
	if g.Provider != "docker" || d == nil {
		return GroupSpec{}, fmt.Errorf("dockerfleet: group %s is not a docker group (provider %q)", g.Name, g.Provider)
	}
	s := GroupSpec{
		Name: g.Name, Min: d.Min, Max: d.Max, Image: d.Image,
		LaunchHook:    &Hook{Name: LaunchHookName, Timeout: d.LaunchHookTimeout.Duration, Default: fleet.Abandon},
		TerminateHook: &Hook{Name: TerminateHookName, Timeout: d.TerminateHookTimeout.Duration, Default: fleet.Continue},
		Mounts:        append([]string(nil), d.Mounts...),
	}
	if d.Desired != nil {
		s.Desired = *d.Desired
	}
	if w := d.WarmPool; w != nil {
		s.WarmPool = &fleet.WarmPoolConfig{MinSize: w.MinSize, MaxPreparedCapacity: w.MaxPreparedCapacity, State: fleet.PoolState(w.State), ReuseOnScaleIn: w.ReuseOnScaleIn}
	}
	keys := make([]string, 0, len(d.Env))
	for k := range d.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.Env = append(s.Env, k+"="+d.Env[k])
	}
	if d.Agent != "" {
		s.Mounts = append(s.Mounts, d.Agent+":"+AgentPath+":ro")
	}
	return s, s.Validate()
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*Provider{}
)

// Open returns a Provider on stateDir and network without notifications,
// shared by every caller in the process: activities open a group's provider
// on every call, and one engine connection serves them all. Groups are not
// created here; the process running Run (with Notify) ensures them.
func Open(stateDir, network string) (*Provider, error) {
	key := stateDir + "\x00" + network
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if p := shared[key]; p != nil {
		return p, nil
	}
	p, err := New(Options{StateDir: stateDir, Network: network})
	if err != nil {
		return nil, err
	}
	shared[key] = p
	return p, nil
}
