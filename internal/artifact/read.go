package artifact

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ErrUnsafeEntry is returned (wrapped) by Extract for an archive entry that
// could write outside the destination or create something a release must
// not contain. mageflow never writes such entries, so seeing one means the
// artifact was not produced by mageflow or was tampered with.
var ErrUnsafeEntry = errors.New("unsafe archive entry")

// ErrChecksumMismatch is returned (wrapped) by VerifyFile and Verify.
var ErrChecksumMismatch = errors.New("artifact checksum mismatch")

// MaxManifestSize bounds release.json so a corrupt or hostile header cannot
// make ReadManifest allocate gigabytes.
const MaxManifestSize = 16 << 20

// decoderMaxWindow bounds the memory a hostile frame header can make the
// decoder reserve. Our writer never uses more than 8 MiB; 64 MiB leaves
// room for artifacts recompressed with `zstd --long`.
const decoderMaxWindow = 64 << 20

func newDecoder(r io.Reader) (*zstd.Decoder, error) {
	d, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(decoderMaxWindow))
	if err != nil {
		return nil, fmt.Errorf("artifact: open zstd stream: %w", err)
	}
	return d, nil
}

// ReadManifest returns the content of release.json, the first entry of an
// artifact, decompressing only the head of the stream.
func ReadManifest(r io.Reader) ([]byte, error) {
	d, err := newDecoder(r)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	tr := tar.NewReader(d)
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("artifact: read first entry (is this a mageflow .tar.zst artifact?): %w", err)
	}
	if hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("artifact: first entry is %q, want %s; the file is not a mageflow artifact", hdr.Name, ManifestName)
	}
	if hdr.Size > MaxManifestSize {
		return nil, fmt.Errorf("artifact: %s is %d bytes, more than the %d allowed; the artifact is corrupt", ManifestName, hdr.Size, MaxManifestSize)
	}
	b := make([]byte, hdr.Size)
	if _, err := io.ReadFull(tr, b); err != nil {
		return nil, fmt.Errorf("artifact: read %s: %w", ManifestName, err)
	}
	return b, nil
}

// Verify reads r to the end and checks that its sha256 is wantSHA256
// (hex, case-insensitive).
func Verify(r io.Reader, wantSHA256 string) error {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("artifact: read for checksum: %w", err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if !strings.EqualFold(got, strings.TrimSpace(wantSHA256)) {
		return fmt.Errorf("%w: got sha256 %s, want %s; the copy is corrupt or incomplete: delete it and fetch the artifact again", ErrChecksumMismatch, got, wantSHA256)
	}
	return nil
}

// VerifyFile checks the sha256 of the file at path.
func VerifyFile(path, wantSHA256 string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	defer f.Close()
	if err := Verify(f, wantSHA256); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Extract unpacks the artifact read from r into the new directory dst.
//
// It extracts into a temporary directory next to dst and renames it to dst
// only once every entry is written, so a release directory either is
// complete or does not exist: a deploy can never switch a symlink to a
// half-extracted release. dst must not exist yet.
//
// Entries are confined to dst: absolute names, names with "..", symlinks
// whose target leaves dst, writes through symlinks, hard links, devices
// and FIFOs are refused with ErrUnsafeEntry, and all file operations go
// through an os.Root so the kernel enforces the confinement too. File
// permission bits are kept; setuid, setgid and sticky bits and ownership
// are dropped, because a deploy agent running as root must not create
// setuid binaries from an artifact. release.json is extracted like any
// other file.
func Extract(ctx context.Context, r io.Reader, dst string) error {
	dst = filepath.Clean(dst)
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("artifact: extract destination %s already exists; remove it first or extract into a new directory", dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("artifact: extract destination: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".extract-*")
	if err != nil {
		return fmt.Errorf("artifact: create temporary directory next to %s: %w", dst, err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := extractInto(ctx, r, tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("artifact: chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("artifact: move extracted release into place at %s: %w", dst, err)
	}
	done = true
	return nil
}

func extractInto(ctx context.Context, r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	defer root.Close()
	d, err := newDecoder(r)
	if err != nil {
		return err
	}
	defer d.Close()

	x := &extractor{ctx: ctx, root: root, symlinks: map[string]bool{}, buf: copyBufPool.Get().(*[]byte)}
	defer copyBufPool.Put(x.buf)
	tr := tar.NewReader(d)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("artifact: read archive (corrupt or truncated artifact? verify its sha256): %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
	// Directory modes and mtimes last, deepest first: a read-only
	// directory must not stop its children from being created, and
	// creating children would bump the mtime.
	for i := len(x.dirs) - 1; i >= 0; i-- {
		dh := x.dirs[i]
		if err := root.Chmod(dh.name, dh.mode); err != nil {
			return fmt.Errorf("artifact: chmod %s: %w", dh.name, err)
		}
		if err := root.Chtimes(dh.name, dh.mtime, dh.mtime); err != nil {
			return fmt.Errorf("artifact: set mtime of %s: %w", dh.name, err)
		}
	}
	return nil
}

type dirAttr struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

type extractor struct {
	ctx      context.Context
	root     *os.Root
	symlinks map[string]bool
	dirs     []dirAttr
	buf      *[]byte
}

func unsafeEntry(name, why string) error {
	return fmt.Errorf("artifact: %w %q: %s; refusing to extract an artifact not produced by mageflow", ErrUnsafeEntry, name, why)
}

func (x *extractor) entry(hdr *tar.Header, tr io.Reader) error {
	name := strings.TrimSuffix(hdr.Name, "/")
	if name == "" || strings.HasPrefix(name, "/") || !filepath.IsLocal(name) || strings.Contains(name, "\\") {
		return unsafeEntry(hdr.Name, "name is absolute, empty or leaves the destination")
	}
	if name != path.Clean(name) {
		return unsafeEntry(hdr.Name, "name is not in canonical form")
	}
	// No entry may be written through a symlink created earlier: the
	// lexical target check below only holds for the link's own
	// directory, and a link such as "a" -> "." would make "a/../x" style
	// targets escape.
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if x.symlinks[p] {
			return unsafeEntry(hdr.Name, "path goes through the symlink "+p)
		}
	}
	perm := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if x.symlinks[name] {
			return unsafeEntry(hdr.Name, "directory entry replaces a symlink")
		}
		if err := x.root.MkdirAll(name, 0o755); err != nil {
			return fmt.Errorf("artifact: create directory %s: %w", name, err)
		}
		x.dirs = append(x.dirs, dirAttr{name: name, mode: perm, mtime: hdr.ModTime})
		return nil
	case tar.TypeReg:
		return x.file(name, hdr, perm, tr)
	case tar.TypeSymlink:
		t := hdr.Linkname
		if t == "" || path.IsAbs(t) || !filepath.IsLocal(path.Join(path.Dir(name), t)) {
			return unsafeEntry(hdr.Name, fmt.Sprintf("symlink target %q points outside the release", t))
		}
		if err := x.mkParent(name); err != nil {
			return err
		}
		if err := x.root.Symlink(t, name); err != nil {
			return fmt.Errorf("artifact: create symlink %s: %w", name, err)
		}
		x.symlinks[name] = true
		return nil
	default:
		return unsafeEntry(hdr.Name, fmt.Sprintf("entry type %q (hard link, device, FIFO or unknown) is not allowed in a release", hdr.Typeflag))
	}
}

func (x *extractor) mkParent(name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("artifact: create directory %s: %w", dir, err)
		}
	}
	return nil
}

func (x *extractor) file(name string, hdr *tar.Header, perm fs.FileMode, tr io.Reader) error {
	if err := x.mkParent(name); err != nil {
		return err
	}
	// O_EXCL: a duplicate entry must not silently replace (or, via a
	// symlink of the same name, redirect) an earlier one.
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return unsafeEntry(hdr.Name, "duplicate entry")
		}
		return fmt.Errorf("artifact: create %s: %w", name, err)
	}
	_, err = io.CopyBuffer(f, &ctxReader{ctx: x.ctx, r: tr}, *x.buf)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctxErr := x.ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("artifact: write %s: %w", name, err)
	}
	if err := x.root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
		return fmt.Errorf("artifact: set mtime of %s: %w", name, err)
	}
	return nil
}
