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
	"github.com/mageflow/mageflow/internal/platform/ctxio"
	"golang.org/x/sys/unix"
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

// ErrTooLarge is returned (wrapped) by Extract when the archive unpacks to
// more than ExtractOptions.MaxBytes: a decompression bomb, or an artifact
// other than the one the build measured.
var ErrTooLarge = errors.New("artifact unpacks to more than the size its build recorded")

// ExtractOptions control Extract.
type ExtractOptions struct {
	// MaxBytes bounds the uncompressed tar stream, normally the
	// Result.TarSize its build recorded. Extraction stops with ErrTooLarge
	// as soon as one more byte is decompressed, so at most MaxBytes (plus
	// directory and inode overhead) reach the disk. Zero or less means no
	// limit.
	MaxBytes int64
}

// Extract unpacks the artifact read from r into the new directory dst.
//
// It extracts into a temporary directory next to dst and renames it to dst
// only once every entry is written, so a release directory either is
// complete or does not exist: a deploy can never switch a symlink to a
// half-extracted release. dst must not exist yet.
//
// Entries are confined to dst: absolute names, names with "..", writes
// through symlinks, hard links, devices and FIFOs are refused with
// ErrUnsafeEntry, and all file operations go through an os.Root so the
// kernel enforces the confinement too. Symlinks are resolved, not judged
// by their text: each one is followed through the links already extracted
// when it is created, and all of them again once the archive is complete
// (a later link can change where an earlier one leads); one that leads
// outside dst, has an absolute target or loops is refused with
// ErrUnsafeEntry naming it and where it leads. File
// permission bits are kept; setuid, setgid and sticky bits and ownership
// are dropped, because a deploy agent running as root must not create
// setuid binaries from an artifact. release.json is extracted like any
// other file.
func Extract(ctx context.Context, r io.Reader, dst string, opt ExtractOptions) error {
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
	if err := extractInto(ctx, r, tmp, opt.MaxBytes); err != nil {
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

func extractInto(ctx context.Context, r io.Reader, dir string, maxBytes int64) error {
	root, err := openDirStack(dir)
	if err != nil {
		return err
	}
	defer root.close()
	d, err := newDecoder(r)
	if err != nil {
		return err
	}
	defer d.Close()

	pool := startWriterPool(ctx, dir)
	x := &extractor{ctx: ctx, root: root, links: linkSet{}, buf: copyBufPool.Get().(*[]byte), pool: pool}
	defer copyBufPool.Put(x.buf)
	err = x.readAll(d, maxBytes)
	if werr := pool.wait(); err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	// Every link again, now that all are known: a link created later
	// can change where an earlier one leads.
	if name, to, err := x.links.escapes(); err != nil {
		return unsafeLink(name, x.links[name], to, err)
	}
	// Directory modes and mtimes last, deepest first: a read-only
	// directory must not stop its children from being created, and
	// creating children would bump the mtime.
	for i := len(x.dirs) - 1; i >= 0; i-- {
		dh := x.dirs[i]
		if err := root.setDir(dh.name, uint32(dh.mode), dh.mtime); err != nil {
			return err
		}
	}
	return nil
}

// readAll reads the archive and creates its entries (small files through
// the writer pool).
func (x *extractor) readAll(d io.Reader, maxBytes int64) error {
	var stream io.Reader = d
	if maxBytes > 0 {
		stream = &limitReader{r: d, left: maxBytes, max: maxBytes}
	}
	tr := tar.NewReader(stream)
	for {
		if err := x.ctx.Err(); err != nil {
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
	return nil
}

type dirAttr struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

type extractor struct {
	ctx   context.Context
	root  *dirStack
	pool  *writerPool
	links linkSet
	dirs  []dirAttr
	buf   *[]byte
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
	// No entry may be written through a symlink created earlier: links
	// are only ever resolved by linkSet, never by the kernel on our
	// behalf, and linkSet assumes link paths contain no links.
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if _, ok := x.links[p]; ok {
			return unsafeEntry(hdr.Name, "path goes through the symlink "+p)
		}
	}
	perm := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if _, ok := x.links[name]; ok {
			return unsafeEntry(hdr.Name, "directory entry replaces a symlink")
		}
		if _, err := x.root.open(name, true); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirAttr{name: name, mode: perm, mtime: hdr.ModTime})
		return nil
	case tar.TypeReg:
		return x.file(name, hdr, perm, tr)
	case tar.TypeSymlink:
		return x.symlink(name, hdr)
	default:
		return unsafeEntry(hdr.Name, fmt.Sprintf("entry type %q (hard link, device, FIFO or unknown) is not allowed in a release", hdr.Typeflag))
	}
}

// symlink creates the link name after checking where it leads, through
// the links extracted so far.
func (x *extractor) symlink(name string, hdr *tar.Header) error {
	t := hdr.Linkname
	if t == "" || len(t) > maxLinkTarget || strings.ContainsRune(t, 0) {
		return unsafeEntry(hdr.Name, fmt.Sprintf("symlink target %q is empty, too long or not a path", t))
	}
	if _, dup := x.links[name]; dup {
		return unsafeEntry(hdr.Name, "duplicate entry")
	}
	x.links[name] = t
	if to, err := x.links.resolve(name); err != nil {
		return unsafeLink(hdr.Name, t, to, err)
	}
	if err := x.root.symlink(t, name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return unsafeEntry(hdr.Name, "duplicate entry")
		}
		return fmt.Errorf("artifact: create symlink %s: %w", name, err)
	}
	return nil
}

// unsafeLink is the error for the link name -> target that leads to
// resolved, outside the release, or loops (err).
func unsafeLink(name, target, resolved string, err error) error {
	if errors.Is(err, errLinkLoop) {
		return unsafeEntry(name, fmt.Sprintf("symlink -> %q %v", target, err))
	}
	return unsafeEntry(name, fmt.Sprintf("symlink -> %q resolves to %q, outside the release", target, resolved))
}

// limitReader passes on at most max bytes of r and fails with ErrTooLarge
// when r has more.
type limitReader struct {
	r         io.Reader
	left, max int64
}

func (l *limitReader) Read(b []byte) (int, error) {
	if l.left <= 0 {
		// The limit is reached: the stream must end here.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w (%d bytes); the artifact is not the one that was built, or is a decompression bomb: rebuild the release", ErrTooLarge, l.max)
		}
		return 0, err
	}
	if int64(len(b)) > l.left {
		b = b[:l.left]
	}
	n, err := l.r.Read(b)
	l.left -= int64(n)
	return n, err
}

func (x *extractor) file(name string, hdr *tar.Header, perm fs.FileMode, tr io.Reader) error {
	if hdr.Size <= smallFile && x.pool != nil {
		data := make([]byte, hdr.Size)
		if _, err := io.ReadFull(ctxio.Reader(x.ctx, tr), data); err != nil {
			if ctxErr := x.ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("artifact: read %s (corrupt or truncated artifact? verify its sha256): %w", name, err)
		}
		return x.pool.submit(fileJob{name: name, hdrName: hdr.Name, perm: uint32(perm), mtime: hdr.ModTime, data: data})
	}
	// O_EXCL: a duplicate entry must not silently replace (or, via a
	// symlink of the same name, redirect) an earlier one.
	fd, err := x.root.createFile(name)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return unsafeEntry(hdr.Name, "duplicate entry")
		}
		return fmt.Errorf("artifact: create %s: %w", name, err)
	}
	if _, err = copyToFd(fd, ctxio.Reader(x.ctx, tr), *x.buf); err != nil {
		_ = unix.Close(fd)
		if ctxErr := x.ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("artifact: write %s: %w", name, err)
	}
	return x.root.finishFile(fd, name, uint32(perm), hdr.ModTime)
}
