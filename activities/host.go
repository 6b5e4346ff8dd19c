package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/internal/config"
	"github.com/mageflow/mageflow/internal/hostops"
	"github.com/mageflow/mageflow/internal/magento"
	"github.com/mageflow/mageflow/internal/phpfpm"
	"github.com/mageflow/mageflow/internal/release"
	"github.com/mageflow/mageflow/internal/secrets"
	"github.com/mageflow/mageflow/internal/store"
)

// HostActivities run on a host's agent (`mageflow-worker --agent --host
// NAME`, task queue workflows.HostTaskQueue(NAME)): every file-system and
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
}

func (h *HostActivities) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Leftovers of a killed Prepare (.tmp-* directories, incomplete releases)
// older than this are removed by Prune; younger ones may belong to a
// Prepare still running.
const staleAfter = time.Hour

// MaintenanceBypassHeader carries the maintenance_bypass secret; nginx lets
// requests with the right value through the maintenance page.
const MaintenanceBypassHeader = "X-Mageflow-Bypass"

// hostCtx is what every host activity resolves first.
type hostCtx struct {
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
func (h *HostActivities) resolve(t HostTarget) (*hostCtx, error) {
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
	c := &hostCtx{host: hc, app: app, root: filepath.Clean(hc.Root)}
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

func (c *hostCtx) releases() string { return hostops.ReleasesDir(c.root, c.app.Name) }
func (c *hostCtx) shared() string   { return hostops.SharedDir(c.root, c.app.Name) }
func (c *hostCtx) releaseDir(id string) string {
	return hostops.ReleaseDir(c.root, c.app.Name, id)
}
func (c *hostCtx) isMagento2() bool { return c.app.Type == "magento2" }
func (c *hostCtx) isMagento() bool  { return c.app.Type == "magento2" || c.app.Type == "magento1" }

// envFile is the release-relative path of the environment's Magento config
// file installed from env_php.
func (c *hostCtx) envFile() string {
	switch c.app.Type {
	case "magento2":
		return "app/etc/env.php"
	case "magento1":
		return "app/etc/local.xml"
	}
	return ""
}

// sharedWritable are the shared paths PHP must write.
func (c *hostCtx) sharedWritable() []string {
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
func (h *HostActivities) cli(c *hostCtx, dir string) magento.CLI {
	cl := magento.CLI{PHP: h.PHP, Dir: dir}
	if c.owned && os.Geteuid() == 0 {
		cl.Credential = &syscall.Credential{Uid: uint32(c.users.PHP.UID), Gid: uint32(c.users.PHP.GID)}
	}
	return cl
}

// heartbeatWhile records current() every HeartbeatEvery until stop.
func (h *HostActivities) heartbeatWhile(ctx context.Context, current func() any) (stop func()) {
	return heartbeatWhile(ctx, h.HeartbeatEvery, current)
}

// HostProgress is the heartbeat detail of long host activities.
type HostProgress struct {
	Step  string
	Bytes int64 `json:",omitempty"`
	Total int64 `json:",omitempty"`
}

// Prepare downloads, verifies and extracts a release, links shared paths,
// installs env.php and applies config — everything before the switch.
//
// Steps, each safe to repeat: (1) a release with .mageflow-complete is
// done; (2) a release directory without it was extracted and verified by
// an attempt that died later, so only the remaining steps run; (3)
// otherwise the artifact is streamed from the store through sha256 into
// releases/.tmp-<id>-*, and renamed to releases/<id> only once the digest
// matched. .mageflow-complete is written last.
func (h *HostActivities) Prepare(ctx context.Context, in PrepareInput) (*PrepareResult, error) {
	start := time.Now()
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return nil, err
	}
	if err := validRelease(in.ReleaseID); err != nil {
		return nil, err
	}
	logger := activity.GetLogger(ctx)
	rels, dst := c.releases(), c.releaseDir(in.ReleaseID)
	for _, d := range []string{rels, c.shared()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if complete(dst) {
		free, _ := hostops.FreeBytes(rels)
		return &PrepareResult{ReleaseDir: dst, AlreadyPrepared: true, FreeBytes: free, Seconds: time.Since(start).Seconds()}, nil
	}

	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		if err := h.download(ctx, c, in, dst); err != nil {
			return nil, err
		}
		logger.Info("release extracted", "release", in.ReleaseID, "dir", dst)
	} else if err != nil {
		return nil, err
	} else {
		logger.Info("release already extracted by an earlier attempt; finishing it", "release", in.ReleaseID)
	}

	if err := h.finish(ctx, c, in, dst); err != nil {
		return nil, err
	}
	free, _ := hostops.FreeBytes(rels)
	return &PrepareResult{ReleaseDir: dst, FreeBytes: free, Seconds: time.Since(start).Seconds()}, nil
}

// finish is everything after extraction; every step converges when
// repeated. .mageflow-complete is written last.
func (h *HostActivities) finish(ctx context.Context, c *hostCtx, in PrepareInput, dst string) error {
	codeOwner := hostops.NoChange
	if c.owned {
		codeOwner = c.users.Deploy
	}
	// env.php from the secret area, into shared/ (never returned or logged).
	envFile := c.envFile()
	if envFile != "" {
		target := filepath.Join(c.shared(), envFile)
		switch {
		case c.env != nil && c.env.EnvPHP != "":
			val, err := h.Secrets.Read(c.env.EnvPHP)
			if err != nil {
				return nonRetryable(ErrConfig, "apps.%s.environments.%s.env_php: %v", c.app.Name, in.Env, err)
			}
			// A temporary copy left by a killed attempt holds the secret:
			// remove it before writing anew.
			if olds, _ := filepath.Glob(filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")); len(olds) > 0 {
				for _, o := range olds {
					_ = os.Remove(o)
				}
			}
			// Rewritten every time: the secret is the source of truth, and
			// mode and owner follow the current host config.
			if err := hostops.WriteFileBeneath(c.shared(), envFile, val, 0o640, codeOwner); err != nil {
				return fmt.Errorf("install %s: %w", target, err)
			}
		default:
			if _, err := os.Stat(target); err != nil {
				return nonRetryable(ErrConfig, "%s does not exist and apps.%s.environments.%s.env_php is not set: set env_php to a secret reference holding %s, or put the file in %s", target, c.app.Name, in.Env, filepath.Base(envFile), filepath.Dir(target))
			}
		}
	}
	// Shared paths.
	for _, p := range SharedPaths(c.app) {
		isFile := p == envFile
		if !isFile {
			if fi, err := os.Stat(filepath.Join(c.shared(), p)); err == nil {
				isFile = !fi.IsDir()
			} else if fi, err := os.Lstat(filepath.Join(dst, p)); err == nil && fi.Mode().IsRegular() {
				isFile = true
			}
		}
		owner := codeOwner
		if slices.Contains(c.sharedWritable(), p) {
			owner = c.users.PHP
		}
		if err := hostops.LinkShared(dst, c.shared(), p, isFile, owner); err != nil {
			return linkRefusal(err, "link shared path")
		}
	}
	// Static markers, written beneath the release without following links:
	// a pub/static committed as a symlink (or swapped in by a local user)
	// is refused, never written through.
	marker := hostops.ReleaseMarkerPath(c.app.Type)
	if err := hostops.WriteFileBeneath(dst, marker, []byte(in.ReleaseID+"\n"), 0o644, hostops.NoChange); err != nil {
		return linkRefusal(err, "write %s into release %s", marker, in.ReleaseID)
	}
	if in.ContentVersion != "" && c.isMagento2() {
		if err := hostops.WriteFileBeneath(dst, "pub/static/deployed_version.txt", []byte(in.ContentVersion), 0o644, hostops.NoChange); err != nil {
			return linkRefusal(err, "write pub/static/deployed_version.txt into release %s", in.ReleaseID)
		}
	}
	// Ownership.
	if c.owned {
		var writable []string
		if c.env != nil {
			writable = c.env.Writable
		}
		var inRelease []string
		for _, w := range append(c.sharedWritable(), writable...) {
			w = path.Clean(filepath.ToSlash(w))
			if underShared(SharedPaths(c.app), w) {
				if err := hostops.SharedWritable(c.shared(), w, c.users); err != nil {
					return linkRefusal(err, "make shared %s writable for php_user", w)
				}
				continue
			}
			inRelease = append(inRelease, w)
		}
		stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: "ownership"} })
		err := hostops.ApplyOwnership(dst, c.users, inRelease)
		stop()
		if err != nil {
			return linkRefusal(err, "set ownership of %s (hosts.%s.deploy_user/php_user)", dst, h.Host)
		}
	}
	// Config values, from the secret area, through bin/magento.
	if c.env != nil && c.env.Config != "" && c.isMagento2() {
		raw, err := h.Secrets.Read(c.env.Config)
		if err != nil {
			return nonRetryable(ErrConfig, "apps.%s.environments.%s.config: %v", c.app.Name, in.Env, err)
		}
		settings, err := magento.ParseConfig(raw)
		if err != nil {
			return nonRetryable(ErrConfig, "apps.%s.environments.%s.config (%s): %v", c.app.Name, in.Env, c.env.Config, err)
		}
		stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: "config:set"} })
		err = h.cli(c, dst).ApplyConfig(ctx, settings, c.env.SensitiveConfig)
		stop()
		if err != nil {
			return fmt.Errorf("apply config of environment %s: %w", in.Env, err)
		}
		activity.GetLogger(ctx).Info("config applied", "paths", len(settings))
	}
	done, _ := json.Marshal(map[string]any{"release": in.ReleaseID, "sha256": in.SHA256, "prepared_at": time.Now().UTC()})
	if err := hostops.WriteFileBeneath(dst, hostops.CompleteMarker, append(done, '\n'), 0o644, codeOwner); err != nil {
		return err
	}
	return nil
}

// linkRefusal wraps an error of a step inside the release: a symlink where
// the agent refuses one (*hostops.LinkError, planted by the artifact or a
// local user) will not go away by retrying, so it fails the step for good;
// anything else (a full disk) is retried.
func linkRefusal(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	var le *hostops.LinkError
	if errors.As(err, &le) {
		return nonRetryable(ErrInvalidInput, "%s: %v", msg, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// underShared reports whether the writable path w is a shared path or lies
// below one: it is then made writable in shared/, not in the release.
func underShared(shared []string, w string) bool {
	for _, s := range shared {
		if w == s || strings.HasPrefix(w, s+"/") {
			return true
		}
	}
	return false
}

// requireComplete refuses to act on a release Prepare did not finish.
func requireComplete(c *hostCtx, id string) (string, error) {
	dir := c.releaseDir(id)
	if !complete(dir) {
		return "", nonRetryable(ErrInvalidInput, "release %s is not prepared on this host (%s has no %s); run Prepare first", id, dir, hostops.CompleteMarker)
	}
	return dir, nil
}

// UpgradeStatus asks Magento whether the release needs setup:upgrade or
// app:config:import.
func (h *HostActivities) UpgradeStatus(ctx context.Context, in ReleaseRef) (*UpgradeDecision, error) {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return nil, err
	}
	if err := validRelease(in.ReleaseID); err != nil {
		return nil, err
	}
	dir, err := requireComplete(c, in.ReleaseID)
	if err != nil {
		return nil, err
	}
	if c.app.Type == "magento1" {
		return m1UpgradeDecision(c, dir)
	}
	if !c.isMagento2() {
		// Other app types have no database schema to check.
		return &UpgradeDecision{}, nil
	}
	st, err := h.cli(c, dir).UpgradeStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w (check the database is reachable with the environment's env.php)", in.ReleaseID, err)
	}
	return &UpgradeDecision{Needed: st.Needed, Reasons: st.Reasons}, nil
}

// SetMaintenance turns the nginx-level maintenance flag on or off. The
// flag is written under a temporary name and renamed, so nginx sees it
// whole or not at all; turning it on again keeps the original time.
func (h *HostActivities) SetMaintenance(ctx context.Context, in MaintenanceInput) error {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return err
	}
	flag := hostops.MaintenanceFlag(c.root, c.app.Name)
	if !in.On {
		if err := os.Remove(flag); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove maintenance flag %s: %w", flag, err)
		}
		hostops.SyncDir(filepath.Dir(flag))
		return nil
	}
	if _, err := os.Stat(flag); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(flag), 0o755); err != nil {
		return err
	}
	reason := strings.TrimSpace(in.Reason)
	if reason == "" {
		reason = "deploy"
	}
	body := fmt.Sprintf("%s\nsince %s\n", reason, time.Now().UTC().Format(time.RFC3339))
	if err := hostops.WriteFileAtomic(flag, []byte(body), 0o644, hostops.NoChange); err != nil {
		return fmt.Errorf("write maintenance flag %s: %w", flag, err)
	}
	return nil
}

// StopJobs stops cron and queue consumers (hosts.NAME.jobs_stop).
func (h *HostActivities) StopJobs(ctx context.Context, in HostTarget) error {
	c, err := h.resolve(in)
	if err != nil {
		return err
	}
	return h.shell(ctx, "jobs_stop", c.host.JobsStop, c)
}

// StartJobs starts them again (hosts.NAME.jobs_start).
func (h *HostActivities) StartJobs(ctx context.Context, in HostTarget) error {
	c, err := h.resolve(in)
	if err != nil {
		return err
	}
	return h.shell(ctx, "jobs_start", c.host.JobsStart, c)
}

// shell runs an operator's command with sh -c (no-op when unset). The
// commands must be idempotent themselves (systemctl stop/start are).
func (h *HostActivities) shell(ctx context.Context, what, command string, c *hostCtx) error {
	if strings.TrimSpace(command) == "" {
		return nil
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = hostops.AppDir(c.root, c.app.Name)
	if _, err := os.Stat(cmd.Dir); err != nil {
		cmd.Dir = "/"
	}
	cmd.Env = append(os.Environ(), "MAGEFLOW_APP="+c.app.Name, "MAGEFLOW_HOST="+h.Host)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: what} })
	out, err := cmd.CombinedOutput()
	stop()
	if err != nil {
		return fmt.Errorf("hosts.%s.%s (%s) failed: %v:\n%s", h.Host, what, command, err, magento.Tail(string(out), 15))
	}
	return nil
}

// RunUpgrade runs setup:upgrade --keep-generated and app:config:import in
// the release, once per environment. Both are safe to run again.
func (h *HostActivities) RunUpgrade(ctx context.Context, in ReleaseRef) error {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return err
	}
	if err := validRelease(in.ReleaseID); err != nil {
		return err
	}
	dir, err := requireComplete(c, in.ReleaseID)
	if err != nil {
		return err
	}
	if c.app.Type == "magento1" {
		return h.m1RunSetup(ctx, c, dir, in.ReleaseID)
	}
	if !c.isMagento2() {
		return nil
	}
	var step atomic.Value
	step.Store("setup:upgrade")
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: step.Load().(string)} })
	defer stop()
	cl := h.cli(c, dir)
	for _, args := range [][]string{{"setup:upgrade", "--keep-generated"}, {"app:config:import"}} {
		step.Store(args[0])
		if _, err := cl.Must(ctx, nil, args...); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ce *magento.CommandError
			if errors.As(err, &ce) {
				return nonRetryable(ErrUpgradeFailed, "release %s on %s: %v\nThe site stays in maintenance on the old code; fix the cause, then deploy again (or roll back and turn maintenance off)", in.ReleaseID, h.Host, err)
			}
			return err
		}
	}
	return nil
}

// Switch points current at the release by atomic rename of a temporary
// symlink.
func (h *HostActivities) Switch(ctx context.Context, in ReleaseRef) (*SwitchResult, error) {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return nil, err
	}
	if err := validRelease(in.ReleaseID); err != nil {
		return nil, err
	}
	if _, err := requireComplete(c, in.ReleaseID); err != nil {
		return nil, err
	}
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return nil, nonRetryable(ErrConfig, "%v", err)
	}
	statePath := filepath.Join(hostops.AppDir(c.root, c.app.Name), hostops.SwitchStateName)
	if cur == in.ReleaseID {
		// Done already (a retry, or a deploy of what runs): answer what
		// the switch that did it answered.
		var st SwitchResult
		if b, err := os.ReadFile(statePath); err == nil && json.Unmarshal(b, &st) == nil && st.Current == in.ReleaseID {
			return &st, nil
		}
		res := &SwitchResult{Current: cur, Previous: cur, SwitchedAt: time.Now()}
		if fi, err := os.Lstat(hostops.CurrentLink(c.root, c.app.Name)); err == nil {
			res.SwitchedAt = fi.ModTime()
		}
		return res, nil
	}
	res := &SwitchResult{Previous: cur, Current: in.ReleaseID, SwitchedAt: time.Now()}
	b, _ := json.Marshal(res)
	if err := hostops.WriteFileAtomic(statePath, b, 0o644, hostops.NoChange); err != nil {
		return nil, err
	}
	if err := hostops.SwitchCurrent(c.root, c.app.Name, in.ReleaseID); err != nil {
		return nil, fmt.Errorf("switch %s to %s: %w", hostops.CurrentLink(c.root, c.app.Name), in.ReleaseID, err)
	}
	activity.GetLogger(ctx).Info("switched", "from", cur, "to", in.ReleaseID)
	return res, nil
}

// currentDir is the resolved directory of the live release.
func currentDir(c *hostCtx) (string, string, error) {
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return "", "", nonRetryable(ErrConfig, "%v", err)
	}
	if cur == "" {
		return "", "", nonRetryable(ErrInvalidInput, "%s does not exist: nothing is deployed on this host yet", hostops.CurrentLink(c.root, c.app.Name))
	}
	return cur, c.releaseDir(cur), nil
}

// FlushCache flushes Magento's caches from the current release.
func (h *HostActivities) FlushCache(ctx context.Context, in ReleaseRef) error {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return err
	}
	_, dir, err := currentDir(c)
	if err != nil {
		return err
	}
	switch c.app.Type {
	case "magento2":
		if _, err := h.cli(c, dir).Must(ctx, nil, "cache:flush"); err != nil {
			return fmt.Errorf("flush cache on %s: %w", h.Host, err)
		}
	case "magento1":
		// Magento 1 has no CLI; its file caches live in the shared var/.
		for _, d := range []string{"var/cache", "var/full_page_cache"} {
			if err := os.RemoveAll(filepath.Join(c.shared(), d)); err != nil {
				return fmt.Errorf("flush %s: %w", d, err)
			}
		}
	}
	return nil
}

// ReloadPHP reloads php-fpm gracefully or resets OPcache over FastCGI.
func (h *HostActivities) ReloadPHP(ctx context.Context, in HostTarget) (*PHPResult, error) {
	c, err := h.resolve(in)
	if err != nil {
		return nil, err
	}
	f := c.host.PHPFPM
	if !c.isMagento() && f == (config.PHPFPM{}) {
		return &PHPResult{Method: "none", Detail: fmt.Sprintf("app type %s does not run on php-fpm", c.app.Type)}, nil
	}
	opt := phpfpm.Options{
		Service: f.Service, PIDFile: f.PIDFile, Config: f.Config, Socket: f.Socket,
		ScriptDir: hostops.AppDir(c.root, c.app.Name),
		Progress:  func(s string) { activity.RecordHeartbeat(ctx, HostProgress{Step: s}) },
	}
	if c.owned {
		opt.ScriptGID = c.users.PHP.GID
	}
	if err := os.MkdirAll(opt.ScriptDir, 0o755); err != nil {
		return nil, err
	}
	res, err := phpfpm.Reload(ctx, opt)
	if err != nil {
		if errors.Is(err, phpfpm.ErrUnsafe) {
			return nil, nonRetryable(ErrUnsafeReload, "host %s: %v", h.Host, err)
		}
		return nil, fmt.Errorf("host %s: %w", h.Host, err)
	}
	return &PHPResult{Method: res.Method, Detail: res.Detail}, nil
}

func (h *HostActivities) client() *http.Client {
	if h.HTTP != nil {
		return h.HTTP
	}
	return &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		// A redirect is an answer: following it would leave the host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func joinURL(base, p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return strings.TrimRight(base, "/") + p
}

// envHost is the environment URL's host, sent as Host header when talking
// to a host directly so nginx picks the right server block.
func envHost(c *hostCtx) string {
	if c.env == nil || c.env.URL == "" {
		return ""
	}
	if u, err := url.Parse(c.env.URL); err == nil {
		return u.Host
	}
	return ""
}

type probe struct {
	status int
	body   string
	err    error
}

func (h *HostActivities) get(ctx context.Context, timeout time.Duration, u, host string, hdr map[string]string, bodyLimit int64) probe {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return probe{err: err}
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("User-Agent", "mageflow-agent")
	req.Header.Set("Cache-Control", "no-cache")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.client().Do(req)
	if err != nil {
		return probe{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return probe{status: resp.StatusCode, body: string(b)}
}

// Warm requests the warm-up paths on this host directly (Host header: the
// environment's host), so the first visitor does not pay for cold caches.
// Any path not answering below 400 is reported in the error.
func (h *HostActivities) Warm(ctx context.Context, in WarmInput) error {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return err
	}
	if c.host.URL == "" {
		return nonRetryable(ErrConfig, "hosts.%s.url is not set: the agent needs it to warm and health-check this host", h.Host)
	}
	timeout := h.WarmTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	var hdr map[string]string
	if in.BypassMaintain && c.host.Nginx.MaintenanceBypass != "" {
		v, err := h.Secrets.Read(c.host.Nginx.MaintenanceBypass)
		if err != nil {
			return nonRetryable(ErrConfig, "hosts.%s.nginx.maintenance_bypass: %v", h.Host, err)
		}
		hdr = map[string]string{MaintenanceBypassHeader: string(v)}
	}
	var done atomic.Int64
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: "warm", Bytes: done.Load(), Total: int64(len(in.Paths))} })
	defer stop()
	var failed []string
	for _, p := range in.Paths {
		r := h.get(ctx, timeout, joinURL(c.host.URL, p), envHost(c), hdr, 0)
		done.Add(1)
		switch {
		case r.err != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", p, r.err))
		case r.status >= 400:
			failed = append(failed, fmt.Sprintf("%s: HTTP %d", p, r.status))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("warm-up of %s: %d of %d paths failed: %s", c.host.URL, len(failed), len(in.Paths), strings.Join(failed, "; "))
	}
	return nil
}

// Health checks the paths answer 200 and serve the expected release.
// Failures are returned, not raised: the workflow decides between rolling
// back and waiting.
func (h *HostActivities) Health(ctx context.Context, in HealthInput) (*HealthResult, error) {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return nil, err
	}
	base, hostHeader := in.BaseURL, ""
	if base == "" {
		if c.host.URL == "" {
			return nil, nonRetryable(ErrConfig, "hosts.%s.url is not set: the agent needs it to health-check this host", h.Host)
		}
		base, hostHeader = c.host.URL, envHost(c)
	}
	hdr := map[string]string{}
	var secret string
	if in.BypassMaintain {
		ref := c.host.Nginx.MaintenanceBypass
		if ref == "" {
			return nil, nonRetryable(ErrConfig, "hosts.%s.nginx.maintenance_bypass is not set, so health checks cannot pass the maintenance page; set it to a secret reference (the same the nginx config uses)", h.Host)
		}
		v, err := h.Secrets.Read(ref)
		if err != nil {
			return nil, nonRetryable(ErrConfig, "hosts.%s.nginx.maintenance_bypass: %v", h.Host, err)
		}
		secret = string(v)
		hdr[MaintenanceBypassHeader] = secret
	}
	timeout := h.HealthTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	paths := in.Paths
	if len(paths) == 0 {
		paths = []string{"/"}
	}
	res := &HealthResult{}
	fail := func(format string, args ...any) {
		res.Failures = append(res.Failures, magento.Redact(fmt.Sprintf(format, args...), secret))
	}
	for _, p := range paths {
		r := h.get(ctx, timeout, joinURL(base, p), hostHeader, hdr, 0)
		switch {
		case r.err != nil:
			fail("GET %s: %v", joinURL(base, p), r.err)
		case r.status != http.StatusOK:
			fail("GET %s: HTTP %d, want 200", joinURL(base, p), r.status)
		}
	}
	if in.ExpectRelease != "" {
		u := joinURL(base, "/"+hostops.ReleaseMarker)
		r := h.get(ctx, timeout, u, hostHeader, hdr, 256)
		switch {
		case r.err != nil:
			fail("GET %s: %v", u, r.err)
		case r.status != http.StatusOK:
			fail("GET %s: HTTP %d, want 200 with %q", u, r.status, in.ExpectRelease)
		case strings.TrimSpace(r.body) != in.ExpectRelease:
			fail("%s serves release %q, want %q", base, strings.TrimSpace(r.body), in.ExpectRelease)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, nil
}

// Prune removes old releases, never current or the protected ones.
//
// Complete releases are ordered by when Prepare finished them (the mtime
// of .mageflow-complete); the newest Keep stay, and so do current, the
// release current replaced (from the last switch) and Protect. Leftovers
// of killed attempts — .tmp-* work directories and releases without the
// complete marker — are removed once untouched for an hour. Removal renames
// first and never follows symlinks.
func (h *HostActivities) Prune(ctx context.Context, in PruneInput) (*PruneResult, error) {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return nil, err
	}
	keep := in.Keep
	if keep <= 0 && c.env != nil {
		keep = c.env.KeepReleases
	}
	if keep <= 0 {
		keep = 5
	}
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return nil, nonRetryable(ErrConfig, "%v", err)
	}
	protect := map[string]bool{cur: true}
	for _, p := range in.Protect {
		protect[p] = true
	}
	var st SwitchResult
	if b, err := os.ReadFile(filepath.Join(hostops.AppDir(c.root, c.app.Name), hostops.SwitchStateName)); err == nil && json.Unmarshal(b, &st) == nil {
		protect[st.Previous] = true
	}
	rels, err := hostops.ListReleases(c.releases())
	if err != nil {
		return nil, err
	}
	var done []hostops.Release
	now := h.now()
	res := &PruneResult{}
	remove := func(name string) error {
		if err := hostops.RemoveTree(c.releases(), name); err != nil {
			return fmt.Errorf("remove %s: %w", filepath.Join(c.releases(), name), err)
		}
		res.Removed = append(res.Removed, name)
		return nil
	}
	for _, r := range rels {
		switch {
		case r.Complete:
			done = append(done, r)
		case !protect[r.ID] && now.Sub(r.ChangedAt) > staleAfter:
			if err := remove(r.ID); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(done, func(i, j int) bool {
		if !done[i].CompletedAt.Equal(done[j].CompletedAt) {
			return done[i].CompletedAt.After(done[j].CompletedAt)
		}
		return done[i].ID > done[j].ID
	})
	for i, r := range done {
		if i < keep || protect[r.ID] {
			continue
		}
		if err := remove(r.ID); err != nil {
			return nil, err
		}
		activity.RecordHeartbeat(ctx, HostProgress{Step: "prune " + r.ID})
	}
	temps, err := hostops.ListTemps(c.releases())
	if err != nil {
		return nil, err
	}
	for _, t := range temps {
		if now.Sub(t.ChangedAt) > staleAfter {
			if err := hostops.RemoveTree(c.releases(), t.ID); err != nil {
				return nil, fmt.Errorf("remove %s: %w", t.ID, err)
			}
		}
	}
	return res, nil
}

// State reports current and the releases on disk that Prepare finished,
// oldest first.
func (h *HostActivities) State(ctx context.Context, in HostTarget) (*HostState, error) {
	c, err := h.resolve(in)
	if err != nil {
		return nil, err
	}
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return nil, nonRetryable(ErrConfig, "%v", err)
	}
	rels, err := hostops.ListReleases(c.releases())
	if err != nil {
		return nil, err
	}
	var done []hostops.Release
	for _, r := range rels {
		if r.Complete {
			done = append(done, r)
		}
	}
	sort.Slice(done, func(i, j int) bool {
		if !done[i].CompletedAt.Equal(done[j].CompletedAt) {
			return done[i].CompletedAt.Before(done[j].CompletedAt)
		}
		return done[i].ID < done[j].ID
	})
	st := &HostState{Current: cur}
	for _, r := range done {
		st.Releases = append(st.Releases, r.ID)
	}
	return st, nil
}

// Discard removes a prepared release that is not current (cleanup after a
// cancelled deploy), with any work directory of it.
func (h *HostActivities) Discard(ctx context.Context, in ReleaseRef) error {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return err
	}
	if err := validRelease(in.ReleaseID); err != nil {
		return err
	}
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return nonRetryable(ErrConfig, "%v", err)
	}
	if cur == in.ReleaseID {
		return nonRetryable(ErrInvalidInput, "release %s is current on host %s; switch to another release before discarding it", in.ReleaseID, h.Host)
	}
	if err := hostops.RemoveTree(c.releases(), in.ReleaseID); err != nil {
		return fmt.Errorf("discard release %s: %w", in.ReleaseID, err)
	}
	temps, err := hostops.ListTemps(c.releases())
	if err != nil {
		return err
	}
	for _, t := range temps {
		if strings.HasPrefix(t.ID, hostops.TmpPrefix+in.ReleaseID+"-") {
			if err := hostops.RemoveTree(c.releases(), t.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// m1UpgradeDecision compares the module versions the new release declares
// with the running release's: a changed or new module means setup scripts
// will run on the next request, which must happen inside maintenance.
func m1UpgradeDecision(c *hostCtx, dir string) (*UpgradeDecision, error) {
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
func (h *HostActivities) m1RunSetup(ctx context.Context, c *hostCtx, dir, id string) error {
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
