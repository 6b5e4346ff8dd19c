package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/host/magento"
	"github.com/mageflow/mageflow/internal/host/phpfpm"
	"github.com/mageflow/mageflow/internal/platform/config"
)

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
func (h *HostActivities) shell(ctx context.Context, what, command string, c *resolvedTarget) error {
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
func currentDir(c *resolvedTarget) (string, string, error) {
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
