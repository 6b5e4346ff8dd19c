package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities/internal/heartbeat"
	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/host/magento"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
)

// HostActivities run on a host's agent (`mageflow-agent --host NAME`,
// task queue HostTaskQueue(NAME)): every file-system and
// process step of a deploy, so the control side needs no SSH access. Paths
// are derived from the agent's own config (hosts.NAME.root), never taken
// from workflow input.
//
// Every method is idempotent and safe to run again after the agent was
// killed at any point: work happens under temporary names and is published
// by rename, and each step checks whether an earlier attempt already did it.
type HostActivities struct {
	Host    string
	Config  *config.Config
	Store   store.Store
	Secrets secrets.Area

	// PHP is the php-cli binary that runs bin/magento (default "php").
	PHP string
	// HeartbeatEvery is how often long steps heartbeat (default 10s).
	HeartbeatEvery time.Duration
	// HTTP is the client of Warm and Health (default: no redirects, no
	// keep-alive, per-request timeouts of WarmTimeout / HealthTimeout).
	HTTP *http.Client
	// WarmTimeout bounds one warm-up request (default 60s: a cold page may
	// compile templates); HealthTimeout one health request (default 15s).
	WarmTimeout   time.Duration
	HealthTimeout time.Duration
	// Now is the clock Prune judges leftovers' age by (tests move it).
	Now func() time.Time

	spares   spares                  // background work after Prune (spare.go)
	verified artifact.VerifiedInodes // base files hashed by it
}

func (h *HostActivities) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// MaintenanceBypassHeader carries the maintenance_bypass secret; nginx lets
// requests with the right value through the maintenance page.
const MaintenanceBypassHeader = "X-Mageflow-Bypass"

// resolvedTarget is what every host activity resolves first: the
// HostTarget of its input checked against, and filled in from, the agent's
// own config (not to be confused with workflows' hostCtx, which builds the
// activity context of a host's task queue).
type resolvedTarget struct {
	host  *config.Host
	app   *config.App
	env   *config.Environment // nil when the input names none
	root  string
	users hostops.Users
	owned bool // deploy_user and php_user are set
}

func nonRetryable(typ string, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), typ, nil)
}

// resolve checks the input is meant for this agent and derives everything
// from the agent's config.
func (h *HostActivities) resolve(t HostTarget) (*resolvedTarget, error) {
	if t.Host != h.Host {
		return nil, nonRetryable(ErrInvalidInput, "this agent serves host %q but the activity is for host %q: the task queue is wired to the wrong agent; check `--host` of the agent polling %s", h.Host, t.Host, HostTaskQueue(t.Host))
	}
	if h.Config == nil {
		return nil, nonRetryable(ErrConfig, "agent has no configuration")
	}
	hc := h.Config.Hosts[h.Host]
	if hc == nil {
		return nil, nonRetryable(ErrConfig, "host %q is not declared under hosts: in the agent's config %s; add it and restart the agent", h.Host, h.Config.File)
	}
	if hc.Root == "" || !filepath.IsAbs(hc.Root) {
		return nil, nonRetryable(ErrConfig, "hosts.%s.root %q must be an absolute path", h.Host, hc.Root)
	}
	app, err := h.Config.App(t.App)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error()+" (the agent reads its own config file: update it and restart the agent)", ErrConfig, nil)
	}
	c := &resolvedTarget{host: hc, app: app, root: filepath.Clean(hc.Root)}
	if t.Env != "" {
		c.env = app.Environments[t.Env]
		if c.env == nil {
			return nil, nonRetryable(ErrConfig, "environment %q of app %s is not in the agent's config %s; the agent's config must match the control side's", t.Env, t.App, h.Config.File)
		}
	}
	users, ok, err := hostops.LookupUsers(hc.DeployUser, hc.PHPUser)
	if err != nil {
		return nil, nonRetryable(ErrConfig, "hosts.%s: %v", h.Host, err)
	}
	c.users, c.owned = users, ok
	return c, nil
}

func validRelease(id string) error {
	if !release.ValidID(id) {
		return nonRetryable(ErrInvalidInput, "invalid release id %q: want <build>-<commit>, e.g. 12-3f9a2c1", id)
	}
	return nil
}

func (c *resolvedTarget) releases() string { return hostops.ReleasesDir(c.root, c.app.Name) }

func (c *resolvedTarget) shared() string { return hostops.SharedDir(c.root, c.app.Name) }

func (c *resolvedTarget) releaseDir(id string) string {
	return hostops.ReleaseDir(c.root, c.app.Name, id)
}

func (c *resolvedTarget) isMagento2() bool { return c.app.Type == "magento2" }

func (c *resolvedTarget) isMagento() bool {
	return c.app.Type == "magento2" || c.app.Type == "magento1"
}

// envFile is the release-relative path of the environment's Magento config
// file installed from env_php.
func (c *resolvedTarget) envFile() string {
	switch c.app.Type {
	case "magento2":
		return "app/etc/env.php"
	case "magento1":
		return "app/etc/local.xml"
	}
	return ""
}

// sharedWritable are the shared paths PHP must write.
func (c *resolvedTarget) sharedWritable() []string {
	switch c.app.Type {
	case "magento2":
		return []string{"var", "pub/media"}
	case "magento1":
		return []string{"var", "media"}
	}
	return nil
}

func complete(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, hostops.CompleteMarker))
	return err == nil && fi.Mode().IsRegular()
}

// cli runs bin/magento in dir, as the PHP user on a hardened host so what it
// writes into var/ stays writable by php-fpm.
func (h *HostActivities) cli(c *resolvedTarget, dir string) magento.CLI {
	cl := magento.CLI{PHP: h.PHP, Dir: dir}
	if c.owned && os.Geteuid() == 0 {
		cl.Credential = &syscall.Credential{Uid: uint32(c.users.PHP.UID), Gid: uint32(c.users.PHP.GID)}
	}
	return cl
}

// heartbeatWhile records current() every HeartbeatEvery until stop.
func (h *HostActivities) heartbeatWhile(ctx context.Context, current func() any) (stop func()) {
	return heartbeat.While(ctx, h.HeartbeatEvery, current)
}

// HostProgress is the heartbeat detail of long host activities.
type HostProgress struct {
	Step  string
	Bytes int64 `json:",omitempty"`
	Total int64 `json:",omitempty"`
}

// requireComplete refuses to act on a release Prepare did not finish.
func requireComplete(c *resolvedTarget, id string) (string, error) {
	dir := c.releaseDir(id)
	if !complete(dir) {
		return "", nonRetryable(ErrInvalidInput, "release %s is not prepared on this host (%s has no %s); run Prepare first", id, dir, hostops.CompleteMarker)
	}
	return dir, nil
}
