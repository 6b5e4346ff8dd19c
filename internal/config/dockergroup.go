package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// dockerNameRE is what Docker accepts as a network name and what the docker
// fleet accepts as a group name (it becomes part of container names).
var dockerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// validateDockerGroup checks groups.<g>.docker (and that only docker groups
// have one), the way CreateAutoScalingGroup and PutLifecycleHook would
// refuse bad values.
func validateDockerGroup(gp string, g *Group, add func(path, msg, hint string)) {
	d := g.Docker
	if g.Provider != "docker" {
		if d != nil {
			add(gp+".docker", fmt.Sprintf("%s.docker is set but the provider is %q", gp, g.Provider), "docker: applies to provider: docker only; remove it")
		}
		return
	}
	dp := gp + ".docker"
	if g.Name != "" && !dockerNameRE.MatchString(g.Name) {
		add(gp+".name", fmt.Sprintf("%s.name %q cannot name containers", gp, g.Name), "lower-case letters, digits, '.', '_' and '-'")
	}
	if !dockerNameRE.MatchString(d.Network) {
		add(dp+".network", fmt.Sprintf("%s.network %q is not a Docker network name", dp, d.Network), "e.g. mageflow-fleet")
	}
	if d.Image == "" || strings.ContainsAny(d.Image, " \t") {
		add(dp+".image", fmt.Sprintf("%s.image %q is not an image reference", dp, d.Image), "e.g. "+DefaultInstanceImage)
	}
	if d.Min < 0 || d.Max < 1 || d.Max < d.Min || *d.Desired < d.Min || *d.Desired > d.Max {
		add(dp, fmt.Sprintf("%s needs 0 <= min (%d) <= desired (%d) <= max (%d) and max >= 1", dp, d.Min, *d.Desired, d.Max), "")
	}
	if w := d.WarmPool; w != nil {
		if w.MinSize < 0 || w.MaxPreparedCapacity < 0 {
			add(dp+".warm_pool", fmt.Sprintf("%s.warm_pool sizes must not be negative", dp), "")
		}
		if w.MaxPreparedCapacity != 0 && w.MaxPreparedCapacity < *d.Desired {
			add(dp+".warm_pool", fmt.Sprintf("%s.warm_pool.max_prepared_capacity %d is below the desired capacity %d", dp, w.MaxPreparedCapacity, *d.Desired), "it caps group plus pool; leave it out to use max")
		}
		if w.State != "Stopped" && w.State != "Running" && w.State != "Hibernated" {
			add(dp+".warm_pool.state", fmt.Sprintf("%s.warm_pool.state %q is not known", dp, w.State), "Stopped, Running or Hibernated")
		}
	}
	for _, t := range []struct {
		key string
		v   time.Duration
	}{{"launch_hook_timeout", d.LaunchHookTimeout.Duration}, {"terminate_hook_timeout", d.TerminateHookTimeout.Duration}} {
		if t.v < 30*time.Second || t.v > 2*time.Hour {
			add(dp+"."+t.key, fmt.Sprintf("%s.%s %s is out of range", dp, t.key, t.v), "between 30s and 2h, as Auto Scaling's heartbeat timeout")
		}
	}
	for _, m := range d.Mounts {
		parts := strings.Split(m, ":")
		if len(parts) < 2 || len(parts) > 3 || !filepath.IsAbs(parts[0]) || !filepath.IsAbs(parts[1]) || (len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw") {
			add(dp+".mounts", fmt.Sprintf("%s.mounts entry %q is not src:dst[:ro]", dp, m), "e.g. ./var/mageflow:/etc/mageflow:ro (dst absolute)")
		}
	}
	for k := range d.Env {
		if !envKeyRe.MatchString(k) {
			add(dp+".env", fmt.Sprintf("%s.env key %q is not an environment variable name", dp, k), "letters, digits and _")
		}
	}
	if d.StateDir == "" || !filepath.IsAbs(d.StateDir) {
		add(dp+".state_dir", fmt.Sprintf("%s.state_dir is required", dp), "a directory every process acting on the group shares")
	}
}
