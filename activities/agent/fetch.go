package agent

// Fetching and unpacking a release artifact on a host: the part of Prepare
// that turns a stored artifact into releases/<id>.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/platform/ctxio"
	"github.com/mageflow/mageflow/internal/platform/units"
)

// countingReader counts bytes for heartbeats.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// artifactStore is the store and key of the artifact of in: the agent's
// own store when the URI is one of its keys, else a store opened on the
// URI's directory (same S3 settings).
func (h *HostActivities) artifactStore(ctx context.Context, in PrepareInput) (store.Store, string, error) {
	key := catalog.ArtifactKey(in.App, in.ReleaseID)
	st := h.Store
	if st != nil && (in.ArtifactURI == "" || st.URI(key) == in.ArtifactURI) {
		return st, key, nil
	}
	if in.ArtifactURI == "" {
		return nil, "", nonRetryable(ErrConfig, "no artifact URI given and the agent has no artifact store configured")
	}
	base, name := path.Split(in.ArtifactURI)
	var s3 store.S3Config
	if h.Config != nil && h.Config.Artifacts.S3 != nil {
		x := h.Config.Artifacts.S3
		s3 = store.S3Config{Region: x.Region, Endpoint: x.Endpoint, PathStyle: x.PathStyle}
	}
	o, err := store.Open(ctx, strings.TrimSuffix(base, "/"), s3)
	if err != nil {
		return nil, "", nonRetryable(ErrConfig, "open the artifact store of %s: %v", in.ArtifactURI, err)
	}
	return o, name, nil
}

// artifactSize is the artifact's size as the release recorded it, or as
// the store says for releases that did not.
func artifactSize(ctx context.Context, st store.Store, key string, in PrepareInput) (int64, error) {
	if in.Size > 0 {
		return in.Size, nil
	}
	info, err := st.Stat(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("artifact %s: %w", in.ArtifactURI, err)
	}
	return info.Size, nil
}

// openArtifact opens the artifact of in for a full download.
func (h *HostActivities) openArtifact(ctx context.Context, in PrepareInput) (io.ReadCloser, int64, error) {
	st, key, err := h.artifactStore(ctx, in)
	if err != nil {
		return nil, 0, err
	}
	size, err := artifactSize(ctx, st, key, in)
	if err != nil {
		return nil, 0, err
	}
	rc, err := st.Get(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, 0, nonRetryable(ErrInvalidInput, "artifact %s is not in the store: %v; rebuild the release", in.ArtifactURI, err)
		}
		return nil, 0, fmt.Errorf("open artifact %s: %w", in.ArtifactURI, err)
	}
	return rc, size, nil
}

// fallbackUnpackRatio bounds the unpacked size of a release whose build did
// not record it (built before mageflow recorded TarSize): 64 times the
// compressed size. A Magento tree compresses 5-10× with zstd, so no real
// release comes near it, while a decompression bomb (thousands of times
// smaller than what it unpacks to) is stopped after 64× its size.
const fallbackUnpackRatio = 64

// fallbackFreeRatio is the free-space check for such a release: the
// compressed copy plus an unpacked tree of about twice its size.
const fallbackFreeRatio = 3

// replacedArtifactHint ends the errors for a stored artifact that is not
// the one the release recorded.
const replacedArtifactHint = "the stored artifact is corrupt or was replaced; rebuild the release (nothing was installed)"

// artifactTempName is the private copy of the artifact inside the work
// directory, verified before anything is extracted from it.
const artifactTempName = "artifact.tar.zst"

// download puts the artifact of in at dst: it copies it from the store
// into a private file while hashing it (never more bytes than the release
// recorded), checks the sha256, and only then extracts that file, bounded
// by the unpacked size the build recorded, into a work directory that is
// renamed to dst once complete. Nothing reaches the release tree before
// the digest matched.
func (h *HostActivities) download(ctx context.Context, c *resolvedTarget, in PrepareInput, dst string) (int64, error) {
	rels := c.releases()
	want := strings.ToLower(strings.TrimSpace(in.SHA256))
	if b, err := hex.DecodeString(want); err != nil || len(b) != sha256.Size {
		return 0, nonRetryable(ErrInvalidInput, "release %s: sha256 %q is not a hex digest", in.ReleaseID, in.SHA256)
	}
	// Opening reads nothing yet: the disk check below still comes before
	// the download.
	rc, size, err := h.openArtifact(ctx, in)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	unpacked := in.UncompressedSize
	if unpacked <= 0 {
		unpacked = fallbackUnpackRatio * size
	}
	if err := h.checkFree(c, in, size); err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp(rels, hostops.TmpPrefix+in.ReleaseID+"-")
	if err != nil {
		return 0, fmt.Errorf("create a work directory in %s: %w", rels, err)
	}
	defer os.RemoveAll(tmp) // after a successful rename it holds nothing
	f, err := h.fetchVerified(ctx, rc, in, filepath.Join(tmp, artifactTempName), size, want)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tree := filepath.Join(tmp, "tree")
	if err := h.extract(ctx, in, f, size, tree, unpacked); err != nil {
		return 0, err
	}
	if b, err := os.ReadFile(filepath.Join(tree, artifact.ManifestName)); err == nil {
		var m release.Meta
		if json.Unmarshal(b, &m) == nil && m.ID != "" && m.ID != in.ReleaseID {
			return 0, nonRetryable(ErrArtifactCorrupt, "artifact %s holds release %s, not %s; the catalog points at the wrong artifact", in.ArtifactURI, m.ID, in.ReleaseID)
		}
	}
	if err := os.Rename(tree, dst); err != nil {
		return 0, fmt.Errorf("move release into place at %s: %w", dst, err)
	}
	hostops.SyncDir(rels)
	return size, nil
}

// diskFullMsg is the error of checkFree: host, free, releases dir,
// needed, release, host, what is needed, releases dir, keep_releases.
const diskFullMsg = "host %s: only %s free on the file system of %s, %s needed for release %s (max of hosts.%s.min_free_bytes and %s); delete old releases under %s (lower %s, then the next deploy prunes), or free space on that disk"

// checkFree refuses a release the file system of releases/ cannot hold:
// the compressed copy plus the unpacked tree the build recorded (or
// fallbackFreeRatio× the artifact for a release that did not record it),
// and never less than hosts.<host>.min_free_bytes.
func (h *HostActivities) checkFree(c *resolvedTarget, in PrepareInput, size int64) error {
	need, what := fallbackFreeRatio*size, fmt.Sprintf("%d× the %s artifact", fallbackFreeRatio, units.Bytes(size))
	if in.UncompressedSize > 0 {
		need, what = size+in.UncompressedSize, fmt.Sprintf("the %s artifact plus the %s it unpacks to", units.Bytes(size), units.Bytes(in.UncompressedSize))
	}
	return h.checkFreeFor(c, in, need, what)
}

// checkFreeFor refuses a release when the file system of releases/ has
// less than need bytes (what: how need was counted) or less than
// hosts.<host>.min_free_bytes free.
func (h *HostActivities) checkFreeFor(c *resolvedTarget, in PrepareInput, need int64, what string) error {
	rels := c.releases()
	free, err := hostops.FreeBytes(rels)
	if err != nil {
		return err
	}
	want := max(uint64(max(c.host.MinFreeBytes, 0)), uint64(max(need, 0)))
	if free >= want {
		return nil
	}
	keep := "keep_releases"
	if c.env != nil {
		keep = fmt.Sprintf("apps.%s.environments.%s.keep_releases (now %d)", c.app.Name, in.Env, c.env.KeepReleases)
	}
	return nonRetryable(ErrDiskFull, diskFullMsg, h.Host, units.Bytes(int64(free)), rels, units.Bytes(int64(want)), in.ReleaseID, h.Host, what, rels, keep)
}

// fetchVerified copies the artifact from rc into the new private file
// path (0600, O_EXCL) while hashing it, refusing it as soon as more than
// size bytes arrive, and checks the digest. It returns the file, open and
// rewound, only when the digest matched.
func (h *HostActivities) fetchVerified(ctx context.Context, rc io.Reader, in PrepareInput, path string, size int64, want string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create the download file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
		}
	}()
	cr := &countingReader{r: ctxio.Reader(ctx, rc)}
	stop := h.heartbeatWhile(ctx, func() any {
		return HostProgress{Step: "download", Bytes: cr.n.Load(), Total: size}
	})
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), io.LimitReader(cr, size+1))
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return nil, nonRetryable(ErrDiskFull, "host %s ran out of disk downloading release %s into %s: %v; delete old releases or free space", h.Host, in.ReleaseID, path, err)
		}
		return nil, fmt.Errorf("download artifact %s: %w", in.ArtifactURI, err)
	}
	if n > size {
		return nil, nonRetryable(ErrChecksum, "artifact %s of release %s is larger than the %d bytes the release recorded: "+replacedArtifactHint, in.ArtifactURI, in.ReleaseID, size)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return nil, nonRetryable(ErrChecksum, "artifact %s of release %s has sha256 %s (%d bytes), the release says %s (%d bytes): "+replacedArtifactHint, in.ArtifactURI, in.ReleaseID, got, n, want, size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind %s: %w", path, err)
	}
	ok = true
	return f, nil
}

// extract unpacks the verified artifact f into tree, refusing more than
// maxBytes of unpacked stream.
func (h *HostActivities) extract(ctx context.Context, in PrepareInput, f io.Reader, size int64, tree string, maxBytes int64) error {
	cr := &countingReader{r: f}
	stop := h.heartbeatWhile(ctx, func() any {
		return HostProgress{Step: "extract", Bytes: cr.n.Load(), Total: size}
	})
	err := artifact.Extract(ctx, cr, tree, artifact.ExtractOptions{MaxBytes: maxBytes})
	stop()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, syscall.ENOSPC):
		return nonRetryable(ErrDiskFull, "host %s ran out of disk extracting release %s into %s: %v; delete old releases or free space", h.Host, in.ReleaseID, filepath.Dir(tree), err)
	case errors.Is(err, artifact.ErrUnsafeEntry), errors.Is(err, artifact.ErrTooLarge):
		return nonRetryable(ErrArtifactCorrupt, "release %s: %v (nothing was installed)", in.ReleaseID, err)
	}
	return fmt.Errorf("extract release %s: %w", in.ReleaseID, err)
}
