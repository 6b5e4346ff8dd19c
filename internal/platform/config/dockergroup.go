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
			add(gp+".docker", fmt.Sprintf(fmtDockerNotDocker, gp, g.Provider), hintDockerNotDocker)
		}
		return
	}
	dp := gp + ".docker"
	if g.Name != "" && !dockerNameRE.MatchString(g.Name) {
		add(gp+".name", fmt.Sprintf("%s.name %q cannot name containers", gp, g.Name), hintDockerName)
	}
	if !dockerNameRE.MatchString(d.Network) {
		add(dp+".network", fmt.Sprintf("%s.network %q is not a Docker network name", dp, d.Network), "e.g. mageflow-fleet")
	}
	if d.Image == "" || strings.ContainsAny(d.Image, " \t") {
		add(dp+".image", fmt.Sprintf("%s.image %q is not an image reference", dp, d.Image), "e.g. "+DefaultInstanceImage)
	}
	if d.Min < 0 || d.Max < 1 || d.Max < d.Min || *d.Desired < d.Min || *d.Desired > d.Max {
		add(dp, fmt.Sprintf(fmtDockerBounds, dp, d.Min, *d.Desired, d.Max), "")
	}
	validateDockerWarmPool(dp, d, add)
	for _, t := range []struct {
		key string
		v   time.Duration
	}{{"launch_hook_timeout", d.LaunchHookTimeout.Duration}, {"terminate_hook_timeout", d.TerminateHookTimeout.Duration}} {
		if t.v < 30*time.Second || t.v > 2*time.Hour {
			add(dp+"."+t.key, fmt.Sprintf("%s.%s %s is out of range", dp, t.key, t.v), hintDockerHookTimeout)
		}
	}
	validateDockerInstance(dp, d, add)
}

// validateDockerWarmPool checks groups.<g>.docker.warm_pool (dp is the
// docker path).
func validateDockerWarmPool(dp string, d *DockerGroup, add func(path, msg, hint string)) {
	w := d.WarmPool
	if w == nil {
		return
	}
	if w.MinSize < 0 || w.MaxPreparedCapacity < 0 {
		add(dp+".warm_pool", fmt.Sprintf("%s.warm_pool sizes must not be negative", dp), "")
	}
	if w.MaxPreparedCapacity != 0 && w.MaxPreparedCapacity < *d.Desired {
		add(dp+".warm_pool", fmt.Sprintf(fmtDockerPrepared, dp, w.MaxPreparedCapacity, *d.Desired), hintDockerPrepared)
	}
	if w.State != "Stopped" && w.State != "Running" && w.State != "Hibernated" {
		add(dp+".warm_pool.state", fmt.Sprintf("%s.warm_pool.state %q is not known", dp, w.State), "Stopped, Running or Hibernated")
	}
}

// validateDockerInstance checks what every instance of a docker group gets:
// its mounts, environment and the shared state directory.
func validateDockerInstance(dp string, d *DockerGroup, add func(path, msg, hint string)) {
	for _, m := range d.Mounts {
		if !validMount(m) {
			add(dp+".mounts", fmt.Sprintf("%s.mounts entry %q is not src:dst[:ro]", dp, m), hintDockerMount)
		}
	}
	for k := range d.Env {
		if !envKeyRe.MatchString(k) {
			add(dp+".env", fmt.Sprintf(fmtDockerEnvKey, dp, k), "letters, digits and _")
		}
	}
	if d.StateDir == "" || !filepath.IsAbs(d.StateDir) {
		add(dp+".state_dir", fmt.Sprintf("%s.state_dir is required", dp), hintDockerStateDir)
	}
}

// validMount reports whether m is "src:dst[:ro|:rw]" with both paths absolute.
func validMount(m string) bool {
	parts := strings.Split(m, ":")
	if len(parts) < 2 || len(parts) > 3 || !filepath.IsAbs(parts[0]) || !filepath.IsAbs(parts[1]) {
		return false
	}
	return len(parts) != 3 || parts[2] == "ro" || parts[2] == "rw"
}
