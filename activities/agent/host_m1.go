package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/host/magento"
	"github.com/mageflow/mageflow/internal/host/phpfpm"
)

// m1UpgradeDecision compares the module versions the new release declares
// with the running release's: a changed or new module means setup scripts
// will run on the next request, which must happen inside maintenance.
func m1UpgradeDecision(c *resolvedTarget, dir string) (*UpgradeDecision, error) {
	next, err := magento.M1ModuleVersions(dir)
	if err != nil {
		return nil, err
	}
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return nil, err
	}
	if cur == "" {
		return &UpgradeDecision{Needed: true, Reasons: []string{"first deploy: the setup scripts of every module may run"}}, nil
	}
	running, err := magento.M1ModuleVersions(c.releaseDir(cur))
	if err != nil {
		return nil, err
	}
	changes := magento.M1VersionChanges(running, next)
	return &UpgradeDecision{Needed: len(changes) > 0, Reasons: changes}, nil
}

// m1RunSetup sends one request through the new release's index.php
// straight to the PHP-FPM pool (not through nginx, which still serves the
// old release), so Magento 1 runs its pending setup scripts inside the
// maintenance window, before any host switches.
func (h *HostActivities) m1RunSetup(ctx context.Context, c *resolvedTarget, dir, id string) error {
	sock := c.host.PHPFPM.Socket
	if sock == "" {
		return nonRetryable(ErrConfig, "hosts.%s.php_fpm.socket is not set: Magento 1 runs its setup scripts through one request to index.php, sent to the pool's FastCGI socket", h.Host)
	}
	host := envHost(c)
	if host == "" {
		host = "localhost"
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: "magento1 setup request"} })
	defer stop()
	resp, err := phpfpm.Do(rctx, sock, map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET",
		"SCRIPT_FILENAME": filepath.Join(dir, "index.php"), "SCRIPT_NAME": "/index.php",
		"DOCUMENT_ROOT": dir, "REQUEST_URI": "/", "QUERY_STRING": "",
		"HTTP_HOST": host, "SERVER_NAME": host, "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
	})
	if err != nil {
		return fmt.Errorf("magento 1 setup request to %s: %w", sock, err)
	}
	if resp.Status >= 500 {
		return nonRetryable(ErrUpgradeFailed, "release %s: the setup request through index.php answered %d: %s\nThe site stays in maintenance; fix the setup script, then deploy again", id, resp.Status, magento.Tail(string(resp.Body)+resp.Stderr, 10))
	}
	return nil
}
