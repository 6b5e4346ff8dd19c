package agentapp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
)

// Defaults of an instance's web stack when the host template leaves the
// php-fpm paths empty (the docker fleet's instance image has no systemd).
const (
	instanceWebDir = "/run/mageflow"
	instanceListen = "80"
)

// ServeWeb starts nginx and php-fpm for an agent's host, rendered by
// internal/host/webstack as `mageflow dev` does for local hosts, so the host's
// config (php_fpm.pid_file, socket, config) is exactly what the agent's
// ReloadPHP and maintenance steps act on. It serves the first app (by name)
// with an environment on the host or its group, on nginx.listen (default
// port 80). A docker fleet instance runs it with `mageflow-agent
// --serve-web`; a real server keeps its own nginx and php-fpm instead.
//
// Empty php_fpm paths get defaults under /run/mageflow/php-fpm, written back
// into the host template so the agent started afterwards uses the same.
func ServeWeb(ctx context.Context, cfg *config.Config, host, group string) ([]*webstack.Proc, error) {
	h := cfg.Hosts[host]
	if group != "" {
		key, ok := cfg.GroupKey(group)
		if !ok {
			return nil, fmt.Errorf("group %q is not declared under groups: in %s", group, cfg.File)
		}
		group, h = key, &cfg.Groups[key].Host
	}
	if h == nil {
		return nil, fmt.Errorf("host %q is not declared under hosts: in %s", host, cfg.File)
	}
	app := AppOn(cfg, host, group)
	if app == "" {
		return nil, fmt.Errorf("--serve-web: no app has an environment on host %q or group %q: nothing to serve", host, group)
	}
	fpmDir := filepath.Join(instanceWebDir, "php-fpm")
	if h.PHPFPM.Config == "" && h.PHPFPM.Socket == "" && h.PHPFPM.PIDFile == "" && h.PHPFPM.Service == "" {
		h.PHPFPM.Config = filepath.Join(fpmDir, "php-fpm.conf")
		h.PHPFPM.Socket = filepath.Join(fpmDir, "php-fpm.sock")
		h.PHPFPM.PIDFile = filepath.Join(fpmDir, "php-fpm.pid")
	}
	if h.PHPFPM.Config == "" || h.PHPFPM.Socket == "" || h.PHPFPM.PIDFile == "" {
		return nil, fmt.Errorf("--serve-web runs php-fpm itself and needs php_fpm.config, socket and pid_file (or none of them) in the host config")
	}
	pool := webstack.Pool{Name: "mageflow", Dir: filepath.Dir(h.PHPFPM.Config), Socket: h.PHPFPM.Socket, PIDFile: h.PHPFPM.PIDFile}
	if pool.Dir != filepath.Dir(h.PHPFPM.Socket) {
		return nil, fmt.Errorf("--serve-web: keep php_fpm.config and socket in one directory")
	}
	for _, dir := range []string{h.Root, filepath.Join(h.Root, app)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	var bypass string
	if ref := h.Nginx.MaintenanceBypass; ref != "" {
		b, err := secrets.Area{Dir: cfg.Secrets.Dir}.Read(ref)
		if err != nil {
			return nil, fmt.Errorf("maintenance bypass secret: %w", err)
		}
		bypass = string(b)
	}
	listen := h.Nginx.Listen
	if listen == "" {
		listen = instanceListen
	}
	site, err := webstack.RenderHost(webstack.HostSite{
		Host: host, App: app, Root: h.Root, Listen: listen, FastCGI: pool.SocketPath(),
		BypassSecret: bypass, MaintenanceAllow: h.Nginx.MaintenanceAllow,
	})
	if err != nil {
		return nil, err
	}
	fpm, err := webstack.StartPHPFPM(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("php-fpm: %w", err)
	}
	ngx, err := webstack.StartNginx(ctx, filepath.Join(filepath.Dir(pool.Dir), "nginx"), site)
	if err != nil {
		_ = fpm.Stop()
		return nil, fmt.Errorf("nginx: %w", err)
	}
	return []*webstack.Proc{fpm, ngx}, nil
}

// AppOn is the first app (by name, then environment name) with an
// environment on the host, or on the group when group is set.
func AppOn(cfg *config.Config, host, group string) string {
	for _, a := range cfg.AppNames() {
		envs := cfg.Apps[a].Environments
		names := make([]string, 0, len(envs))
		for n := range envs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			e := envs[n]
			if e == nil {
				continue
			}
			if group != "" && e.Group == group {
				return a
			}
			for _, h := range e.Hosts {
				if h == host {
					return a
				}
			}
		}
	}
	return ""
}
