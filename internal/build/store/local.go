package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mageflow/mageflow/internal/platform/ctxio"
)

// Local is a Store in a directory, for single-host setups and tests. Keys
// map to files under the directory.
//
// Writes go to a temporary file in the key's directory, are fsynced, and
// are published with a hard link, which fails if the key already exists:
// two workers putting the same key at once cannot both win, and a reader
// never sees a partial file. Overwrites are published with rename.
type Local struct {
	dir string
}

var _ Store = (*Local)(nil)

// NewLocal opens (creating it if needed) a local store in dir.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store: resolve %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("store: create local store directory: %w", err)
	}
	return &Local{dir: abs}, nil
}

func (l *Local) path(key string) string { return filepath.Join(l.dir, filepath.FromSlash(key)) }

// URI implements Store.
func (l *Local) URI(key string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(l.path(key))}).String()
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key, localPath, sum string, opt PutOptions) (string, bool, error) {
	if err := ValidKey(key); err != nil {
		return "", false, err
	}
	sum, err := validSHA256(sum)
	if err != nil {
		return "", false, err
	}
	uri := l.URI(key)
	dst := l.path(key)
	// Cheap pre-check so a retry does not copy a large file for nothing.
	if !opt.Overwrite {
		if have, err := l.existingSHA(key); err == nil {
			return uri, have == sum, l.sameOrConflict(key, uri, have, sum, true)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", false, err
		}
	}
	src, err := os.Open(localPath)
	if err != nil {
		return "", false, fmt.Errorf("store: open artifact to upload: %w", err)
	}
	defer src.Close()
	h := sha256.New()
	tmp, err := l.writeTemp(dst, io.TeeReader(ctxio.Reader(ctx, src), h))
	if err != nil {
		return "", false, err
	}
	defer os.Remove(tmp) // no-op once linked or renamed away
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return "", false, fmt.Errorf("store: %s has sha256 %s but the caller declared %s; the file changed after it was written, rebuild it", localPath, got, sum)
	}
	existed, err := l.publish(key, uri, tmp, sum, opt.Overwrite, true, func() (string, error) { return l.existingSHA(key) })
	if err != nil || existed {
		return uri, existed, err
	}
	if err := l.writeAtomic(dst+SHA256Suffix, sidecarContent(key, sum)); err != nil {
		return "", false, err
	}
	return uri, false, nil
}

// PutBytes implements Store.
func (l *Local) PutBytes(ctx context.Context, key string, data []byte, opt PutOptions) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	uri := l.URI(key)
	sum := shaBytes(data)
	existing := func() (string, error) {
		b, err := os.ReadFile(l.path(key))
		if err != nil {
			return "", err
		}
		return shaBytes(b), nil
	}
	tmp, err := l.writeTemp(l.path(key), bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	_, err = l.publish(key, uri, tmp, sum, opt.Overwrite, false, existing)
	return uri, err
}

// publish moves the finished temporary file tmp to key. Without overwrite
// it links, and on "exists" compares digests: same content is a no-op
// (existed=true), different is ErrConflict. sidecar tells whether key
// is an artifact with a .sha256 sidecar to repair if missing.
func (l *Local) publish(key, uri, tmp, sum string, overwrite, sidecar bool, existing func() (string, error)) (bool, error) {
	dst := l.path(key)
	if overwrite {
		if err := os.Rename(tmp, dst); err != nil {
			return false, fmt.Errorf("store: publish %s: %w", uri, err)
		}
		syncDir(filepath.Dir(dst))
		return false, nil
	}
	err := os.Link(tmp, dst)
	if err == nil {
		syncDir(filepath.Dir(dst))
		return false, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("store: publish %s (the local store needs a filesystem with hard links): %w", uri, err)
	}
	have, herr := existing()
	if herr != nil {
		return false, fmt.Errorf("store: read existing %s: %w", uri, herr)
	}
	return have == sum, l.sameOrConflict(key, uri, have, sum, sidecar)
}

func (l *Local) sameOrConflict(key, uri, have, want string, sidecar bool) error {
	if have != want {
		return conflict(uri, have, want)
	}
	if sidecar {
		// Repair a sidecar lost to a crash between publish and sidecar
		// write (or not yet written by a concurrent Put of the same key:
		// the content is identical, and the write is atomic).
		if _, err := os.Stat(l.path(key) + SHA256Suffix); errors.Is(err, fs.ErrNotExist) {
			return l.writeAtomic(l.path(key)+SHA256Suffix, sidecarContent(key, have))
		}
	}
	return nil
}

// existingSHA returns the digest of the artifact at key: from its sidecar
// when there is a readable one, else by hashing the file (the sidecar is
// missing after a crash between the two writes, or briefly while another
// worker's Put of the same key is finishing).
func (l *Local) existingSHA(key string) (string, error) {
	p := l.path(key)
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("store: %s is not a regular file; move it out of the store directory", p)
	}
	if b, err := os.ReadFile(p + SHA256Suffix); err == nil {
		if s := parseSidecar(b); s != "" {
			return s, nil
		}
	}
	s, _, err := hashFile(p)
	return s, err
}

// writeTemp writes r to a new fsynced temporary file next to dst and
// returns its path.
func (l *Local) writeTemp(dst string, r io.Reader) (string, error) {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("store: create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("store: create temporary file in %s: %w", dir, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("store: write %s: %w", dst, err)
	}
	return f.Name(), nil
}

func (l *Local) writeAtomic(dst string, data []byte) error {
	tmp, err := l.writeTemp(dst, bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: write %s: %w", dst, err)
	}
	return nil
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if _, err := l.Stat(ctx, key); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: %s: %w", l.URI(key), ErrNotFound)
	}
	return f, err
}

// GetRange implements Store.
func (l *Local) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := checkRange(l.URI(key), off, n); err != nil {
		return nil, err
	}
	rc, err := l.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	f, ok := rc.(*os.File)
	if !ok {
		return nil, fmt.Errorf("store: %s: not a file", l.URI(key))
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("store: read %d bytes at %d of %s: %w", n, off, l.URI(key), err)
	}
	return b, nil
}

// Stat implements Store.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	p := l.path(key)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) || err == nil && !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("store: %s: %w", l.URI(key), ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("store: stat %s: %w", p, err)
	}
	info := Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}
	if b, err := os.ReadFile(p + SHA256Suffix); err == nil {
		info.SHA256 = parseSidecar(b)
	}
	return info, nil
}

// List implements Store.
func (l *Local) List(ctx context.Context, prefix string) ([]Info, error) {
	if strings.Contains(prefix, "..") || strings.HasPrefix(prefix, "/") {
		return nil, fmt.Errorf("store: invalid list prefix %q", prefix)
	}
	// Walk only the directory the prefix is certainly inside.
	base := l.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		base = l.path(path.Clean(prefix[:i]))
	}
	var out []Info
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == base {
				return filepath.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != base {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // temporary file
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(l.dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// syncDir makes a link or rename durable; errors are ignored because not
// every filesystem supports fsync on directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
