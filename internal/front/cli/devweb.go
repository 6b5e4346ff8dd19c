package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mageflow/mageflow/internal/front/agentapp"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
)

// startLocalWeb serves every local host that has nginx.listen with real
// nginx and php-fpm (from Debian packages): the host's <root>/<app>/current
// of the first app deployed to it. The processes stop with ctx.
func startLocalWeb(ctx context.Context, cfg *config.Config, stdout io.Writer) ([]*webstack.Proc, error) {
	area := secrets.Area{Dir: cfg.Secrets.Dir}
	var procs []*webstack.Proc
	for _, name := range localHosts(cfg) {
		h := cfg.Hosts[name]
		if h.Nginx.Listen == "" {
			continue
		}
		app := agentapp.AppOn(cfg, name, "")
		if app == "" {
			continue
		}
		for _, dir := range []string{h.Root, filepath.Join(h.Root, app)} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return procs, err
			}
		}
		if h.PHPFPM.Config == "" || h.PHPFPM.Socket == "" || h.PHPFPM.PIDFile == "" {
			return procs, fmt.Errorf("host %s: `mageflow dev` runs its php-fpm and needs php_fpm.config, socket and pid_file", name)
		}
		pool := webstack.Pool{Name: name, Dir: filepath.Dir(h.PHPFPM.Config), Socket: h.PHPFPM.Socket, PIDFile: h.PHPFPM.PIDFile}
		if pool.Dir != filepath.Dir(h.PHPFPM.Socket) {
			return procs, fmt.Errorf("host %s: keep php_fpm.config and socket in one directory for `mageflow dev`", name)
		}
		fpm, err := webstack.StartPHPFPM(ctx, pool)
		if err != nil {
			return procs, fmt.Errorf("host %s php-fpm: %w", name, err)
		}
		procs = append(procs, fpm)
		var bypass string
		if ref := h.Nginx.MaintenanceBypass; ref != "" {
			if err := seedSecret(area, ref, func() string { return randomHex(16) }); err != nil {
				return procs, err
			}
			b, err := area.Read(ref)
			if err != nil {
				return procs, err
			}
			bypass = string(b)
		}
		site, err := webstack.RenderHost(webstack.HostSite{
			Host: name, App: app, Root: h.Root, Listen: h.Nginx.Listen, FastCGI: pool.SocketPath(),
			BypassSecret: bypass, MaintenanceAllow: h.Nginx.MaintenanceAllow,
		})
		if err != nil {
			return procs, err
		}
		ngx, err := webstack.StartNginx(ctx, filepath.Join(filepath.Dir(pool.Dir), "nginx"), site)
		if err != nil {
			return procs, fmt.Errorf("host %s nginx: %w", name, err)
		}
		procs = append(procs, ngx)
		fmt.Fprintf(stdout, "host %s serves %s's current release on http://%s (nginx + php-fpm)\n", name, app, h.Nginx.Listen)
	}
	return procs, nil
}

// seedSecret creates a missing file: secret with value(); env: secrets are
// the operator's to set.
func seedSecret(area secrets.Area, ref string, value func() string) error {
	if !strings.HasPrefix(ref, "file:") {
		return nil
	}
	if _, err := area.Read(ref); err == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(area.Dir, strings.TrimPrefix(ref, "file:"))); err == nil {
		return nil // exists but unreadable (permissions): Read's error will say so
	}
	return area.Write(strings.TrimPrefix(ref, "file:"), []byte(value()))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
