package config

import (
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// applyDefaults fills every unset value and makes relative paths absolute,
// relative to base (the config file's directory). validate runs after it,
// so it sees the values mageflow will use.
func (c *Config) applyDefaults(base string) {
	c.serviceDefaults()
	c.absolutePaths(base)
	if c.Apps == nil {
		c.Apps = map[string]*App{}
	}
	c.hostDefaults(base)
	for name, a := range c.Apps {
		if a != nil {
			a.defaults(name, base)
		}
	}
}

// setDefault sets *s to v when it is empty.
func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

// absPath makes *p, when set, an absolute clean path; a relative one is
// taken relative to base.
func absPath(base string, p *string) {
	if *p != "" && !filepath.IsAbs(*p) {
		*p = filepath.Clean(filepath.Join(base, *p))
	}
	if a, err := filepath.Abs(*p); err == nil && *p != "" {
		*p = a
	}
}

// relPath joins a relative path to base; URLs and absolute paths are kept.
func relPath(base string, p *string) {
	if *p != "" && !filepath.IsAbs(*p) && !strings.Contains(*p, "://") {
		*p = filepath.Clean(filepath.Join(base, *p))
	}
}

// serviceDefaults fills the temporal, artifacts, secrets, codec, server,
// worker and git sections.
func (c *Config) serviceDefaults() {
	setDefault(&c.Temporal.Address, "127.0.0.1:7233")
	setDefault(&c.Temporal.Namespace, "default")
	setDefault(&c.Temporal.TaskQueue, "mageflow")
	setDefault(&c.Temporal.UIURL, "http://127.0.0.1:8233")
	if c.Artifacts.S3 == nil {
		setDefault(&c.Artifacts.Dir, "./var/artifacts")
	}
	setDefault(&c.Secrets.Dir, "./var/secrets")
	setDefault(&c.Codec.KeyFile, "./var/codec.key")
	setDefault(&c.Codec.KeyEnv, "MAGEFLOW_CODEC_KEY")
	setDefault(&c.Server.Listen, "127.0.0.1:8080")
	if c.Server.PublicURL == "" {
		c.Server.PublicURL = "http://" + c.Server.Listen
	}
	if c.Server.MaxBody == 0 {
		c.Server.MaxBody = 5 << 20
	}
	setDefault(&c.Worker.MetricsListen, "127.0.0.1:9464")
	setDefault(&c.Worker.WorkDir, "./var/work")
	if c.Worker.MaxConcurrentBuilds == 0 {
		c.Worker.MaxConcurrentBuilds = 2
	}
	setDefault(&c.Git.CacheDir, "./var/git")
}

// absolutePaths makes the service directories absolute.
func (c *Config) absolutePaths(base string) {
	absPath(base, &c.Artifacts.Dir)
	absPath(base, &c.Secrets.Dir)
	absPath(base, &c.Worker.WorkDir)
	absPath(base, &c.Git.CacheDir)
	if c.Codec.KeyFile != "" {
		absPath(base, &c.Codec.KeyFile)
	}
}

// hostDefaults fills the groups' defaults and resolves the paths of every
// host, declared or a group's instance template. Worker.WorkDir must
// already be absolute (docker groups keep their state under it).
func (c *Config) hostDefaults(base string) {
	rel := func(p *string) { relPath(base, p) }
	hosts := make([]*Host, 0, len(c.Hosts)+len(c.Groups))
	for _, h := range c.Hosts {
		hosts = append(hosts, h)
	}
	for _, g := range c.Groups {
		if g != nil {
			setDefault(&g.Host.URL, "http://127.0.0.1")
			hosts = append(hosts, &g.Host)
			rel(&g.Balancer.File)
			if g.Provider == "docker" {
				g.dockerDefaults(c.Worker.WorkDir, rel)
			}
		}
	}
	for _, h := range hosts {
		if h == nil {
			continue
		}
		for _, p := range []*string{&h.Root, &h.PHPFPM.PIDFile, &h.PHPFPM.Config,
			&h.Nginx.Prefix, &h.Nginx.Conf, &h.Nginx.PIDFile, &h.Nginx.ErrorLog} {
			rel(p)
		}
		if !strings.Contains(h.PHPFPM.Socket, ":") {
			rel(&h.PHPFPM.Socket)
		}
	}
}

// defaults fills an app's build and webhook defaults and resolves a local
// repository path against base.
func (a *App) defaults(name, base string) {
	a.Name = name
	setDefault(&a.Build.Builder, "docker")
	if a.Build.Jobs == 0 {
		a.Build.Jobs = 4
	}
	if a.Build.Timeout.Duration == 0 {
		a.Build.Timeout.Duration = 2 * time.Hour
	}
	if a.Webhook != nil {
		setDefault(&a.Webhook.Provider, "github")
	}
	// A local repository path is relative to the config file too.
	// "github.com/o/r" is left as written so validate refuses it.
	if isLocalPath(a.Repo) && !filepath.IsAbs(a.Repo) && schemelessHost(a.Repo, base) == "" {
		a.Repo = filepath.Clean(filepath.Join(base, a.Repo))
	}
}

func isLocalPath(repo string) bool {
	return repo != "" && !strings.Contains(repo, "://") && !scpLike.MatchString(repo)
}

var scpLike = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:`)

// dockerDefaults fills a docker group's defaults; workDir is already
// absolute, rel makes paths relative to the config file absolute.
func (g *Group) dockerDefaults(workDir string, rel func(*string)) {
	if g.Docker == nil {
		g.Docker = &DockerGroup{}
	}
	d := g.Docker
	setDefault(&d.Image, DefaultInstanceImage)
	setDefault(&d.Network, DefaultFleetNetwork)
	setDefault(&d.StateDir, filepath.Join(workDir, "fleet"))
	rel(&d.StateDir)
	rel(&d.Agent)
	if d.Max == 0 {
		d.Max = 4
	}
	if d.Desired == nil {
		one := min(max(1, d.Min), d.Max)
		d.Desired = &one
	}
	if d.LaunchHookTimeout.Duration == 0 {
		d.LaunchHookTimeout.Duration = DefaultLaunchHookTimeout
	}
	if d.TerminateHookTimeout.Duration == 0 {
		d.TerminateHookTimeout.Duration = DefaultTerminateHookTimeout
	}
	if w := d.WarmPool; w != nil && w.State == "" {
		w.State = "Stopped"
	}
	for i := range d.Mounts {
		if src, rest, ok := strings.Cut(d.Mounts[i], ":"); ok && src != "" && !filepath.IsAbs(src) {
			rel(&src)
			d.Mounts[i] = src + ":" + rest
		}
	}
}
