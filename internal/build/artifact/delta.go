package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// RangeReader reads byte ranges of an artifact: ReadAt over the local
// store's file, or Range GETs against S3. ReadRange is called from several
// goroutines at once and must return exactly n bytes.
type RangeReader interface {
	ReadRange(ctx context.Context, off, n int64) ([]byte, error)
}

// RangeFunc adapts a function (an S3 Range GET) to RangeReader.
type RangeFunc func(ctx context.Context, off, n int64) ([]byte, error)

// ReadRange calls f.
func (f RangeFunc) ReadRange(ctx context.Context, off, n int64) ([]byte, error) {
	return f(ctx, off, n)
}

// ReaderAtRange adapts an io.ReaderAt (an *os.File) to RangeReader.
type ReaderAtRange struct{ R io.ReaderAt }

// ReadRange reads n bytes at off.
func (r ReaderAtRange) ReadRange(_ context.Context, off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := r.R.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}

// ErrDeltaFallback is matched (errors.Is) by every error of ApplyDelta
// after which the caller must prepare the release with a full download and
// Extract instead. The *FallbackError carries the reason for the deploy
// record. Nothing was installed: Dst does not exist.
var ErrDeltaFallback = errors.New("delta prepare not possible, use the full artifact")

// FallbackError is why a delta prepare gave up.
type FallbackError struct {
	// Reason is one sentence for the activity result and deploy record.
	Reason string
	Err    error
}

func (e *FallbackError) Error() string {
	if e.Err == nil {
		return "artifact: delta prepare: " + e.Reason
	}
	return "artifact: delta prepare: " + e.Reason + ": " + e.Err.Error()
}

// Unwrap lets errors.Is match ErrDeltaFallback and the cause.
func (e *FallbackError) Unwrap() []error { return []error{ErrDeltaFallback, e.Err} }

func fallback(err error, format string, a ...any) error {
	return &FallbackError{Reason: fmt.Sprintf(format, a...), Err: err}
}

// DeltaOptions control ApplyDelta.
type DeltaOptions struct {
	// Base is a complete release directory on this host (not a symlink
	// to one: resolve `current` first), extracted by Extract or
	// ApplyDelta, holding its IndexName.
	Base string
	// Dst is the new release directory; it must not exist.
	Dst string
	// Source reads the new artifact; Size and IndexSHA256 come from the
	// release meta (release.Artifact).
	Source      RangeReader
	Size        int64
	IndexSHA256 string
	// Parallel is how many range reads run at once; zero means 4.
	Parallel int
	// VerifyWorkers is how many goroutines hash and link base files
	// and create directories and symlinks; zero means 2 to 4, by
	// GOMAXPROCS.
	VerifyWorkers int
	// LinkAs says what an unchanged base file must look like to be
	// hard-linked: the owner and mode the host's preparation gives the
	// file at path (indexMode is the mode the new index records), and
	// whether it may be linked at all (false: always copy, e.g. below a
	// path the PHP user may write). Nil: the agent's own uid and gid and
	// the index's mode, as Extract leaves a file.
	LinkAs func(path string, indexMode uint32) (uid, gid, mode uint32, ok bool)
	// Fetch, when set, names files the host rewrites in a prepared
	// release (markers) or lets PHP write (writable paths): they always
	// come from the artifact, never from the base, whose copy may differ
	// from its index by design.
	Fetch func(path string) bool
	// CheckSpace, when set, is called once the two indexes are compared,
	// before any file is written, with the bytes of the changed and new
	// files (what the delta writes; linked files cost no space). Its
	// error is returned as is (e.g. a non-retryable "disk full").
	CheckSpace func(newBytes int64) error
	// Recycle, when set, is the directory of a retired release (one
	// Prune set aside: never current, never a rollback target, used by
	// no process) on the same file system. ApplyDelta takes it over as
	// the new tree and reconciles it to the new index (recycle.go)
	// instead of creating every directory anew. It is consumed whether
	// or not the delta succeeds. Nothing in it is trusted: the result
	// is the same tree a delta without it builds.
	Recycle string
	// Verified, when set, holds base files hashed earlier (verified.go):
	// one whose inode is unchanged since is not read again.
	Verified *VerifiedInodes
}

// DeltaStats say what ApplyDelta did.
type DeltaStats struct {
	FilesLinked  int // hard-linked from the base release
	FilesCopied  int // copied from the base (mode differs or link refused)
	FilesWritten int // decompressed from fetched frames
	Dirs         int
	Symlinks     int
	// BaseBytesVerified is the content of base files hashed before use.
	BaseBytesVerified int64
	// BaseFilesKnown counts base files not read again: hashed earlier
	// (DeltaOptions.Verified) and unchanged since.
	BaseFilesKnown int
	FramesFetched  int
	// BytesFetched counts every byte read from Source: trailer, index
	// frames and data frames.
	BytesFetched int64
	// NewBytes is what was written to disk (not linked).
	NewBytes int64
	// Recycled says the tree of DeltaOptions.Recycle was reused;
	// RecycleNote says why not when it was offered and was not.
	// EntriesRemoved counts what the reconcile removed from it.
	Recycled       bool
	RecycleNote    string
	EntriesRemoved int
}

// ApplyDelta creates the release Dst from the base release Base and only
// the frames of the new artifact that hold changed or new files.
//
// The new index is fetched through its trailer and must match
// IndexSHA256; the base's index is read from Base/IndexName. A file whose
// type, size and sha256 are unchanged is hard-linked from Base after its
// content is hashed again through the very fd that is linked (via
// /proc/self/fd, so the inode linked is the inode verified); when its
// mode or owner differ it is copied instead, so no existing inode is ever
// modified and no older release can change. Every other file is
// decompressed from its frames and checked against its sha256 before the
// release appears. Links are resolved with the same resolver as Extract
// and refused (ErrUnsafeEntry) if one leads out.
//
// Why hash every linked base file instead of trusting size and mtime:
// releases are routinely hot-fixed in place, and every release carries
// the same mtime, so only the content tells. It costs one read of the
// base (page-cached on a live host) spread over VerifyWorkers cores.
//
// Like Extract, it builds a temporary directory next to Dst and renames
// it into place only when complete. Errors matching ErrDeltaFallback mean
// "do a full prepare instead" and carry the reason.
func ApplyDelta(ctx context.Context, opt DeltaOptions) (DeltaStats, error) {
	var st DeltaStats
	dst := filepath.Clean(opt.Dst)
	if _, err := os.Lstat(dst); err == nil {
		return st, fmt.Errorf("artifact: delta destination %s already exists; remove it first or use a new directory", dst)
	}
	if opt.IndexSHA256 == "" {
		return st, fallback(nil, "the release records no index digest (built before delta deploys)")
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".delta-*")
	if err != nil {
		return st, fmt.Errorf("artifact: create temporary directory next to %s: %w", dst, err)
	}
	d := &delta{opt: opt, tmp: tmp, st: &st}
	done := false
	defer func() {
		if !done {
			d.discard()
		}
	}()
	if opt.Recycle != "" {
		// Claimed and walked (locked, listed) while the indexes are read.
		st.RecycleNote = claimRecycled(opt.Recycle, tmp)
		if st.Recycled = st.RecycleNote == ""; st.Recycled {
			d.walk = startWalk(ctx, tmp, d.workers())
		}
	}
	// The two indexes are read and parsed at once (~0.2 s each for
	// 60,000 entries): the base's from disk, the new one over the network.
	var baseIx *Index
	var baseErr error
	baseDone := make(chan struct{})
	go func() {
		defer close(baseDone)
		baseIx, baseErr = readBaseIndex(opt.Base)
	}()
	newIx, raw, fetched, err := fetchIndex(ctx, opt.Source, opt.Size, opt.IndexSHA256)
	st.BytesFetched = fetched
	<-baseDone
	if baseErr != nil {
		return st, baseErr
	}
	if err != nil {
		return st, err
	}
	if err := checkIndexLinks(newIx); err != nil {
		return st, err
	}
	d.base, d.ix = baseIx, newIx
	if err := d.run(ctx, raw); err != nil {
		return st, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return st, fmt.Errorf("artifact: chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return st, fmt.Errorf("artifact: move release into place at %s: %w", dst, err)
	}
	done = true
	return st, nil
}

// readBaseIndex reads Base/IndexName without following links.
func readBaseIndex(base string) (*Index, error) {
	if fi, err := os.Lstat(base); err != nil || !fi.IsDir() {
		return nil, fallback(err, "base release %s is missing or not a directory", base)
	}
	s, err := openDirStack(base)
	if err != nil {
		return nil, fallback(err, "cannot open base release %s", base)
	}
	defer s.close()
	fd, err := unix.Openat(s.fds[0], IndexName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fallback(err, "base release %s has no index %s (extracted before delta deploys?)", base, IndexName)
	}
	f := os.NewFile(uintptr(fd), IndexName)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() > maxIndexSize {
		return nil, fallback(err, "base index %s/%s is not a regular file of at most %d bytes", base, IndexName, maxIndexSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIndexSize))
	if err != nil {
		return nil, fallback(err, "read base index %s/%s", base, IndexName)
	}
	ix, err := parseIndexCached(b, sha256.Sum256(b))
	if err != nil {
		return nil, fallback(err, "base index %s/%s is not valid", base, IndexName)
	}
	return ix, nil
}

// fetchIndex reads the trailer and the index frames of the artifact and
// returns the parsed index, its bytes and how many bytes it fetched.
func fetchIndex(ctx context.Context, src RangeReader, size int64, want string) (*Index, []byte, int64, error) {
	if size < trailerSize {
		return nil, nil, 0, fallback(nil, "artifact of %d bytes is too small to hold an index", size)
	}
	tb, err := src.ReadRange(ctx, size-trailerSize, trailerSize)
	if err != nil {
		return nil, nil, 0, fallback(err, "read the artifact's index trailer")
	}
	fetched := int64(len(tb))
	off, n, err := parseTrailer(tb, size)
	if err != nil {
		return nil, nil, fetched, fallback(err, "artifact index trailer")
	}
	comp, err := src.ReadRange(ctx, off, n)
	fetched += int64(len(comp))
	if err != nil || int64(len(comp)) != n {
		return nil, nil, fetched, fallback(err, "read the artifact's index frames")
	}
	raw, err := indexMember(comp)
	if err != nil {
		return nil, nil, fetched, fallback(err, "decode the artifact's index")
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != want {
		return nil, nil, fetched, fallback(ErrChecksumMismatch, "the artifact's index has sha256 %s, the release records %s: the artifact was replaced or is corrupt", got, want)
	}
	ix, err := parseIndexCached(raw, sum)
	if err != nil {
		return nil, nil, fetched, err
	}
	if len(ix.Frames) == 0 || ix.Frames[len(ix.Frames)-1].Off+ix.Frames[len(ix.Frames)-1].Len != off {
		return nil, nil, fetched, fallback(nil, "the index's frame table does not end where the index starts")
	}
	return ix, raw, fetched, nil
}

// indexMember decompresses the index frames (at most maxIndexSize plus
// tar overhead) and returns the content of the IndexName tar member.
func indexMember(comp []byte) ([]byte, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxIndexSize+1<<20), zstd.WithDecoderMaxWindow(decoderMaxWindow), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	plain, err := dec.DecodeAll(comp, nil)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(bytes.NewReader(plain))
	h, err := tr.Next()
	if err != nil {
		return nil, err
	}
	if h.Name != IndexName || h.Typeflag != tar.TypeReg || h.Size > maxIndexSize {
		return nil, fmt.Errorf("first member of the index frames is %q (%d bytes), want %s", h.Name, h.Size, IndexName)
	}
	return io.ReadAll(tr)
}

// checkIndexLinks refuses an index with a symlink that leads out of the
// release, exactly as Extract would.
func checkIndexLinks(ix *Index) error {
	ls := linkSet{}
	for _, e := range ix.Entries {
		if e.Type == TypeSymlink {
			ls[e.Path] = e.Link
		}
	}
	if name, to, err := ls.escapes(); err != nil {
		return unsafeLink(name, ls[name], to, err)
	}
	return nil
}

// delta is one ApplyDelta run.
type delta struct {
	opt      DeltaOptions
	base, ix *Index
	tmp      string
	st       *DeltaStats
	mtime    time.Time
	// walk locks and lists a claimed recycled tree; kept are the
	// directories, files and symlinks it already holds (reconcile). Both
	// nil for a fresh tree.
	walk *treeWalk
	kept map[string]keptEntry

	mu       sync.Mutex // guards st from the workers
	firstErr error
}

func (d *delta) fail(err error) {
	d.mu.Lock()
	if d.firstErr == nil {
		d.firstErr = err
	}
	d.mu.Unlock()
}

func (d *delta) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.firstErr
}

// run builds the tree in d.tmp: directories, symlinks and base files (by
// the verify workers) while the fetcher decompresses the changed files,
// then the index and the directory modes.
func (d *delta) run(ctx context.Context, raw []byte) error {
	d.mtime = time.Unix(d.ix.MTime, 0)
	baseFiles := make(map[string]*IndexEntry, len(d.base.Entries))
	for i, e := range d.base.Entries {
		if e.Type == TypeFile {
			baseFiles[e.Path] = &d.base.Entries[i]
		}
	}
	// local: directories, symlinks and files from the base, created by
	// the verify workers in parallel (directories by whichever worker
	// needs one first: 30,000 mkdirs are most of a delta's time);
	// fetch: files from the artifact.
	var local, fetch []int
	for i, e := range d.ix.Entries {
		if e.Type != TypeFile {
			local = append(local, i)
		} else if b := baseFiles[e.Path]; b != nil && b.SHA256 == e.SHA256 && b.Size == e.Size && (d.opt.Fetch == nil || !d.opt.Fetch(e.Path)) {
			local = append(local, i)
		} else {
			fetch = append(fetch, i)
		}
	}
	if d.opt.CheckSpace != nil {
		var need int64
		for _, i := range fetch {
			need += d.ix.Entries[i].Size
		}
		if err := d.opt.CheckSpace(need); err != nil {
			return err
		}
	}
	if d.st.Recycled {
		if err := d.recycle(ctx, fetch); err != nil {
			return err
		}
	}
	s, err := openDirStack(d.tmp)
	if err != nil {
		return err
	}
	defer s.close()
	var wg sync.WaitGroup
	wg.Go(func() { d.reuseFiles(ctx, local) })
	wg.Go(func() {
		if err := d.fetchFiles(ctx, fetch); err != nil {
			d.fail(err)
		}
	})
	wg.Wait()
	if err := d.failed(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.finish(ctx, s, raw)
}

// finish writes the index next to the files (the base of the next delta)
// and sets directory modes and mtimes, deepest first.
func (d *delta) finish(ctx context.Context, s *dirStack, raw []byte) error {
	fd, err := s.createFile(IndexName)
	if err != nil {
		return fmt.Errorf("artifact: create %s: %w", IndexName, err)
	}
	if err := writeAll(fd, raw); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("artifact: write %s: %w", IndexName, err)
	}
	if err := s.finishFile(fd, IndexName, 0o644, d.mtime); err != nil {
		return err
	}
	return d.setDirs(ctx)
}

// setDirs sets every directory's mode and mtime on the workers: all
// entries exist by now, and neither a chmod nor a utimensat of a directory
// changes its parent, so any order gives the same tree.
func (d *delta) setDirs(ctx context.Context) error {
	var dirs []int
	for i, e := range d.ix.Entries {
		if e.Type == TypeDir {
			dirs = append(dirs, i)
		}
	}
	d.onWorkers(ctx, dirs, func() (func(int) error, func(), error) {
		s, err := openDirStack(d.tmp)
		if err != nil {
			return nil, nil, err
		}
		return func(i int) error {
			e := &d.ix.Entries[i]
			if k := d.kept[e.Path]; k.dir && k.mode == e.Mode {
				// A recycled directory with the right mode: only
				// its mtime, through its parent's fd.
				return s.touchDir(e.Path, d.mtime)
			}
			return s.setDir(e.Path, e.Mode, d.mtime)
		}, s.close, nil
	})
	return d.failed()
}

// reuseChunk is how many consecutive entries one verify worker takes at a
// time: consecutive entries share directories, so the worker's fd stacks
// stay warm.
const reuseChunk = 128

// reuseFiles creates the directories and symlinks and links (or copies)
// the unchanged files, in parallel.
func (d *delta) reuseFiles(ctx context.Context, idx []int) {
	d.onWorkers(ctx, idx, func() (func(int) error, func(), error) {
		w, err := d.newReuser()
		if err != nil {
			return nil, nil, err
		}
		return func(i int) error { return w.place(&d.ix.Entries[i]) }, w.close, nil
	})
}

// onWorkers runs do on every entry of idx, on d.workers() goroutines that
// each take reuseChunk consecutive entries at a time (consecutive entries
// share directories, so a worker's fd stacks stay warm). start gives a
// worker its own state: do, and what closes it. The first error stops
// them all (d.failed).
func (d *delta) onWorkers(ctx context.Context, idx []int, start func() (do func(int) error, done func(), err error)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range d.workers() {
		wg.Go(func() {
			do, done, err := start()
			if err != nil {
				d.fail(err)
				return
			}
			defer done()
			for {
				from := int(next.Add(reuseChunk)) - reuseChunk
				if from >= len(idx) || d.failed() != nil || ctx.Err() != nil {
					return
				}
				for _, i := range idx[from:min(from+reuseChunk, len(idx))] {
					if err := do(i); err != nil {
						d.fail(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// workers is how many goroutines place entries.
func (d *delta) workers() int {
	if d.opt.VerifyWorkers > 0 {
		return d.opt.VerifyWorkers
	}
	return poolWorkers()
}

// sortByOffset orders file entries by where their content starts.
func (d *delta) sortByOffset(idx []int) {
	sort.Slice(idx, func(a, b int) bool {
		ea, eb := &d.ix.Entries[idx[a]], &d.ix.Entries[idx[b]]
		return d.ix.Frames[ea.Frame].RawOff+ea.FrameOff < d.ix.Frames[eb.Frame].RawOff+eb.FrameOff
	})
}
