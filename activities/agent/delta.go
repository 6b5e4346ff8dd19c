package agent

// Delta prepares: a host that already holds a release builds the new one
// from it, hard-linking unchanged files and fetching only the frames that
// hold changed ones (artifact.ApplyDelta). Anything off falls back to the
// full download, with the reason in the result.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/platform/units"
)

// deltaParallel is how many range reads a delta prepare runs at once.
const deltaParallel = 4

// tryDelta builds dst from a release already on the host. It returns the
// transfer and done=true when the release is in place; done=false with
// the fallback reason when the caller must download the whole artifact.
func (h *HostActivities) tryDelta(ctx context.Context, c *resolvedTarget, in PrepareInput, dst string) (Transfer, bool, error) {
	t := Transfer{Mode: TransferFull}
	if in.IndexSHA256 == "" {
		t.FallbackReason = "the release records no per-file index (built before delta deploys)"
		return t, false, nil
	}
	base, reason := deltaBase(c, in.ReleaseID)
	if base == "" {
		t.FallbackReason = reason
		return t, false, nil
	}
	st, key, err := h.artifactStore(ctx, in)
	if err != nil {
		return t, false, err
	}
	size, err := artifactSize(ctx, st, key, in)
	if err != nil {
		return t, false, err
	}
	t.ArtifactSize = size
	recycled, recycle := recycleCandidate(c)
	t.RecycleNote = recycle
	if recycled != "" {
		recycle = filepath.Join(c.releases(), hostops.RecyclePrefix+recycled)
	}
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: "delta from " + base} })
	ds, err := artifact.ApplyDelta(ctx, artifact.DeltaOptions{
		Recycle: recycle, Verified: &h.verified,
		Base: c.releaseDir(base), Dst: dst, Size: size, IndexSHA256: in.IndexSHA256, Parallel: deltaParallel,
		Source: artifact.RangeFunc(func(ctx context.Context, off, n int64) ([]byte, error) {
			return st.GetRange(ctx, key, off, n)
		}),
		LinkAs:     c.linkAs(in),
		Fetch:      c.rewritten(in),
		CheckSpace: func(n int64) error { return h.checkFreeFor(c, in, n, "the "+units.Bytes(n)+" of changed files") },
	})
	stop()
	t.BytesFetched = ds.BytesFetched
	if err == nil {
		t.Mode, t.Base = TransferDelta, base
		t.FilesLinked, t.FilesWritten, t.FilesCopied, t.FilesKnown = ds.FilesLinked, ds.FilesWritten, ds.FilesCopied, ds.BaseFilesKnown
		if ds.Recycled {
			t.Recycled = recycled
		} else if ds.RecycleNote != "" {
			t.RecycleNote = ds.RecycleNote
		}
		hostops.SyncDir(c.releases())
		return t, true, nil
	}
	return t, false, h.deltaFailure(ctx, in, &t, err)
}

// recycleCandidate returns the retired release in Prune's recycle slot
// when the delta may reuse its tree; else "" and, when there is one, why
// not (a process still uses it: a queue consumer or cron job started from
// that release would see its files turn into the new release's).
func recycleCandidate(c *resolvedTarget) (string, string) {
	id, err := hostops.RecycleSlot(c.releases())
	if err != nil {
		return "", fmt.Sprintf("cannot look at the recycle slot: %v", err)
	}
	if id == "" {
		return "", ""
	}
	if what, busy := hostops.InUse(filepath.Join(c.releases(), hostops.RecyclePrefix+id)); busy {
		return "", "retired release " + id + " not reused: " + what
	}
	return id, ""
}

// deltaFailure sorts an error of ApplyDelta: the ones that would fail a
// full download the same way are returned; anything else becomes the
// fallback reason (nil error: download the whole artifact).
func (h *HostActivities) deltaFailure(ctx context.Context, in PrepareInput, t *Transfer, err error) error {
	var nr interface{ NonRetryable() bool }
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.As(err, &nr) && nr.NonRetryable():
		return err // checkFreeFor's disk full
	case errors.Is(err, syscall.ENOSPC):
		return nonRetryable(ErrDiskFull, "host %s ran out of disk preparing release %s: %v; delete old releases or free space", h.Host, in.ReleaseID, err)
	case errors.Is(err, artifact.ErrUnsafeEntry):
		return nonRetryable(ErrArtifactCorrupt, "release %s: %v (nothing was installed)", in.ReleaseID, err)
	}
	var fe *artifact.FallbackError
	if errors.As(err, &fe) {
		t.FallbackReason = fe.Reason
	} else {
		t.FallbackReason = units.FirstLine(err.Error(), 300)
	}
	return nil
}

// deltaBase picks the release a delta starts from: the one current points
// at, else the newest complete one; it must be complete and carry its
// index. "" and why when there is none.
func deltaBase(c *resolvedTarget, id string) (string, string) {
	usable := func(r string) bool {
		if r == "" || r == id || !complete(c.releaseDir(r)) {
			return false
		}
		fi, err := os.Lstat(filepath.Join(c.releaseDir(r), artifact.IndexName))
		return err == nil && fi.Mode().IsRegular()
	}
	if cur, err := hostops.ReadCurrent(c.root, c.app.Name); err == nil && usable(cur) {
		return cur, ""
	}
	rels, err := hostops.ListReleases(c.releases())
	if err != nil {
		return "", fmt.Sprintf("cannot list releases: %v", err)
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].CompletedAt.After(rels[j].CompletedAt) })
	for _, r := range rels {
		if r.Complete && usable(r.ID) {
			return r.ID, ""
		}
	}
	return "", "no complete release with a per-file index on the host to start from"
}

// linkAs says what a base file must look like to be linked into the new
// release: what finish gives it (deploy_user and hardened modes on an
// owned host, the agent's own ids and the index's mode otherwise). Files
// below writable paths are never linked: PHP may write them in the base.
func (c *resolvedTarget) linkAs(in PrepareInput) func(string, uint32) (uint32, uint32, uint32, bool) {
	writable := c.inReleaseWritable()
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	if c.owned {
		uid, gid = uint32(c.users.Deploy.UID), uint32(c.users.Deploy.GID)
	}
	return func(p string, mode uint32) (uint32, uint32, uint32, bool) {
		if c.owned {
			mode = uint32(hostops.CodeMode(fs.FileMode(mode&0o777), false))
		}
		return uid, gid, mode, !below(writable, p)
	}
}

// rewritten names the files finish rewrites or PHP may write: they always
// come from the artifact.
func (c *resolvedTarget) rewritten(in PrepareInput) func(string) bool {
	own := []string{filepath.ToSlash(hostops.ReleaseMarkerPath(c.app.Type)), "pub/static/deployed_version.txt", hostops.CompleteMarker}
	writable := c.inReleaseWritable()
	return func(p string) bool {
		for _, o := range own {
			if p == o {
				return true
			}
		}
		return below(writable, p)
	}
}

// inReleaseWritable are the environment's writable paths inside the
// release (not in shared/).
func (c *resolvedTarget) inReleaseWritable() []string {
	var out []string
	if c.env == nil {
		return nil
	}
	for _, w := range c.env.Writable {
		w = path.Clean(filepath.ToSlash(w))
		if !underShared(c.app.SharedPaths(), w) {
			out = append(out, w)
		}
	}
	return out
}

// below reports whether p is one of dirs or lies below one.
func below(dirs []string, p string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}
