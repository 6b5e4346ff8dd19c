package activities

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

	"github.com/mageflow/mageflow/internal/artifact"
	"github.com/mageflow/mageflow/internal/catalog"
	"github.com/mageflow/mageflow/internal/hostops"
	"github.com/mageflow/mageflow/internal/release"
	"github.com/mageflow/mageflow/internal/store"
	"github.com/mageflow/mageflow/internal/units"
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

// openArtifact opens the artifact at uri: through the agent's own store
// when the URI is one of its keys, else through a store opened on the URI's
// directory (same S3 settings).
func (h *HostActivities) openArtifact(ctx context.Context, in PrepareInput) (io.ReadCloser, int64, error) {
	key := catalog.ArtifactKey(in.App, in.ReleaseID)
	st := h.Store
	if st == nil || (in.ArtifactURI != "" && st.URI(key) != in.ArtifactURI) {
		if in.ArtifactURI == "" {
			return nil, 0, nonRetryable(ErrConfig, "no artifact URI given and the agent has no artifact store configured")
		}
		base, name := path.Split(in.ArtifactURI)
		var s3 store.S3Config
		if h.Config != nil && h.Config.Artifacts.S3 != nil {
			x := h.Config.Artifacts.S3
			s3 = store.S3Config{Region: x.Region, Endpoint: x.Endpoint, PathStyle: x.PathStyle}
		}
		o, err := store.Open(ctx, strings.TrimSuffix(base, "/"), s3)
		if err != nil {
			return nil, 0, nonRetryable(ErrConfig, "open the artifact store of %s: %v", in.ArtifactURI, err)
		}
		st, key = o, name
	}
	size := in.Size
	if size <= 0 {
		info, err := st.Stat(ctx, key)
		if err != nil {
			return nil, 0, fmt.Errorf("artifact %s: %w", in.ArtifactURI, err)
		}
		size = info.Size
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

func (h *HostActivities) download(ctx context.Context, c *hostCtx, in PrepareInput, dst string) error {
	rels := c.releases()
	want := strings.ToLower(strings.TrimSpace(in.SHA256))
	if b, err := hex.DecodeString(want); err != nil || len(b) != sha256.Size {
		return nonRetryable(ErrInvalidInput, "release %s: sha256 %q is not a hex digest", in.ReleaseID, in.SHA256)
	}
	// Opening reads nothing yet: the disk check below still comes before
	// the download.
	rc, size, err := h.openArtifact(ctx, in)
	if err != nil {
		return err
	}
	defer rc.Close()
	free, err := hostops.FreeBytes(rels)
	if err != nil {
		return err
	}
	need := max(uint64(max(c.host.MinFreeBytes, 0)), 3*uint64(size))
	if free < need {
		keep := "keep_releases"
		if c.env != nil {
			keep = fmt.Sprintf("apps.%s.environments.%s.keep_releases (now %d)", c.app.Name, in.Env, c.env.KeepReleases)
		}
		return nonRetryable(ErrDiskFull, "host %s: only %s free on the file system of %s, %s needed for release %s (max of hosts.%s.min_free_bytes and 3× the %s artifact); delete old releases under %s (lower %s, then the next deploy prunes), or free space on that disk",
			h.Host, units.Bytes(int64(free)), rels, units.Bytes(int64(need)), in.ReleaseID, h.Host, units.Bytes(size), rels, keep)
	}
	tmp, err := os.MkdirTemp(rels, hostops.TmpPrefix+in.ReleaseID+"-")
	if err != nil {
		return fmt.Errorf("create a work directory in %s: %w", rels, err)
	}
	defer os.RemoveAll(tmp) // after a successful rename it holds nothing
	cr := &countingReader{r: rc}
	sum := sha256.New()
	tee := io.TeeReader(cr, sum)
	stop := h.heartbeatWhile(ctx, func() any {
		return HostProgress{Step: "download and extract", Bytes: cr.n.Load(), Total: size}
	})
	tree := filepath.Join(tmp, "tree")
	xerr := artifact.Extract(ctx, tee, tree)
	if ctx.Err() == nil {
		// The tar end marker may come before the end of the stream:
		// read the rest so the digest covers every byte.
		_, _ = io.Copy(io.Discard, tee)
	}
	stop()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	got := hex.EncodeToString(sum.Sum(nil))
	if got != want {
		return nonRetryable(ErrChecksum, "artifact %s of release %s has sha256 %s, the release says %s: the stored artifact is corrupt or was replaced; rebuild the release (nothing was installed)", in.ArtifactURI, in.ReleaseID, got, want)
	}
	if xerr != nil {
		if errors.Is(xerr, syscall.ENOSPC) {
			return nonRetryable(ErrDiskFull, "host %s ran out of disk extracting release %s into %s: %v; delete old releases or free space", h.Host, in.ReleaseID, rels, xerr)
		}
		if errors.Is(xerr, artifact.ErrUnsafeEntry) {
			return nonRetryable(ErrArtifactCorrupt, "release %s: %v", in.ReleaseID, xerr)
		}
		return fmt.Errorf("extract release %s: %w", in.ReleaseID, xerr)
	}
	if b, err := os.ReadFile(filepath.Join(tree, artifact.ManifestName)); err == nil {
		var m release.Meta
		if json.Unmarshal(b, &m) == nil && m.ID != "" && m.ID != in.ReleaseID {
			return nonRetryable(ErrArtifactCorrupt, "artifact %s holds release %s, not %s; the catalog points at the wrong artifact", in.ArtifactURI, m.ID, in.ReleaseID)
		}
	}
	if err := os.Rename(tree, dst); err != nil {
		return fmt.Errorf("move release into place at %s: %w", dst, err)
	}
	hostops.SyncDir(rels)
	return nil
}
