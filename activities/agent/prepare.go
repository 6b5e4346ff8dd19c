package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/host/magento"
)

// Prepare downloads, verifies and extracts a release, links shared paths,
// installs env.php and applies config — everything before the switch.
//
// Steps, each safe to repeat: (1) a release with .mageflow-complete is
// done; (2) a release directory without it was placed and verified by an
// attempt that died later, so only the remaining steps run; (3) otherwise
// a delta from a release on the host (unchanged files hard-linked after
// their sha256 is checked, changed ones from their frames, each checked)
// or, failing that, the whole artifact streamed from the store through
// sha256 into releases/.tmp-<id>-*, is renamed to releases/<id> only once
// complete and verified. .mageflow-complete is written last.
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

	var tr Transfer
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		if tr, err = h.place(ctx, c, in, dst); err != nil {
			return nil, err
		}
		logger.Info("release placed", "release", in.ReleaseID, "dir", dst, "mode", tr.Mode, "base", tr.Base,
			"fallback", tr.FallbackReason, "bytesFetched", tr.BytesFetched)
	} else if err != nil {
		return nil, err
	} else {
		logger.Info("release already extracted by an earlier attempt; finishing it", "release", in.ReleaseID)
	}

	if err := h.finish(ctx, c, in, dst); err != nil {
		return nil, err
	}
	free, _ := hostops.FreeBytes(rels)
	return &PrepareResult{ReleaseDir: dst, FreeBytes: free, Seconds: time.Since(start).Seconds(), Transfer: tr}, nil
}

// place puts the release at dst: from a release already on the host and
// the changed files' frames when it can, else by downloading the whole
// artifact.
func (h *HostActivities) place(ctx context.Context, c *resolvedTarget, in PrepareInput, dst string) (Transfer, error) {
	h.spares.settle(c.releases(), spareWait)
	tr, done, err := h.tryDelta(ctx, c, in, dst)
	if err != nil || done {
		return tr, err
	}
	n, err := h.download(ctx, c, in, dst)
	tr.Mode, tr.BytesFetched, tr.ArtifactSize = TransferFull, tr.BytesFetched+n, n
	return tr, err
}

// finish is everything after extraction; every step converges when
// repeated. .mageflow-complete is written last.
func (h *HostActivities) finish(ctx context.Context, c *resolvedTarget, in PrepareInput, dst string) error {
	codeOwner := hostops.NoChange
	if c.owned {
		codeOwner = c.users.Deploy
	}
	if err := h.installEnv(c, in, codeOwner); err != nil {
		return err
	}
	if err := linkShared(c, dst, codeOwner); err != nil {
		return err
	}
	if err := writeMarkers(c, in, dst); err != nil {
		return err
	}
	if c.owned {
		if err := h.applyOwnership(ctx, c, dst); err != nil {
			return err
		}
	}
	if c.env != nil && c.env.Config != "" && c.isMagento2() {
		if err := h.applyConfig(ctx, c, in, dst); err != nil {
			return err
		}
	}
	return markComplete(in, dst, codeOwner)
}

// installEnv puts env.php from the secret area into shared/ (never
// returned or logged), or checks an operator-placed one is there.
func (h *HostActivities) installEnv(c *resolvedTarget, in PrepareInput, codeOwner hostops.Owner) error {
	envFile := c.envFile()
	if envFile == "" {
		return nil
	}
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
	return nil
}

// linkShared links the app's shared paths into the release.
func linkShared(c *resolvedTarget, dst string, codeOwner hostops.Owner) error {
	envFile := c.envFile()
	for _, p := range c.app.SharedPaths() {
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
	return nil
}

// writeMarkers writes the static markers beneath the release without
// following links: a pub/static committed as a symlink (or swapped in by a
// local user) is refused, never written through.
func writeMarkers(c *resolvedTarget, in PrepareInput, dst string) error {
	marker := hostops.ReleaseMarkerPath(c.app.Type)
	if err := hostops.WriteFileBeneath(dst, marker, []byte(in.ReleaseID+"\n"), 0o644, hostops.NoChange); err != nil {
		return linkRefusal(err, "write %s into release %s", marker, in.ReleaseID)
	}
	if in.ContentVersion != "" && c.isMagento2() {
		if err := hostops.WriteFileBeneath(dst, "pub/static/deployed_version.txt", []byte(in.ContentVersion), 0o644, hostops.NoChange); err != nil {
			return linkRefusal(err, "write pub/static/deployed_version.txt into release %s", in.ReleaseID)
		}
	}
	return nil
}

// applyOwnership hands the release to deploy_user and makes the writable
// paths (in shared/ or in the release) writable for php_user.
func (h *HostActivities) applyOwnership(ctx context.Context, c *resolvedTarget, dst string) error {
	var writable []string
	if c.env != nil {
		writable = c.env.Writable
	}
	var inRelease []string
	for _, w := range append(c.sharedWritable(), writable...) {
		w = path.Clean(filepath.ToSlash(w))
		if underShared(c.app.SharedPaths(), w) {
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
	return nil
}

// applyConfig sets the environment's config values, from the secret area,
// through bin/magento.
func (h *HostActivities) applyConfig(ctx context.Context, c *resolvedTarget, in PrepareInput, dst string) error {
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
	return nil
}

// markComplete writes .mageflow-complete, the last step: a release with it
// is prepared.
func markComplete(in PrepareInput, dst string, codeOwner hostops.Owner) error {
	done, _ := json.Marshal(map[string]any{"release": in.ReleaseID, "sha256": in.SHA256, "prepared_at": time.Now().UTC()})
	return hostops.WriteFileBeneath(dst, hostops.CompleteMarker, append(done, '\n'), 0o644, codeOwner)
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
