package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// reuser hashes and links base files; each verify worker has its own, with
// its own fd stacks on the base and the new tree.
type reuser struct {
	d         *delta
	base, out *dirStack
	buf       []byte
	uid, gid  uint32
}

func (d *delta) newReuser() (*reuser, error) {
	base, err := openDirStack(d.opt.Base)
	if err != nil {
		return nil, fallback(err, "cannot open base release %s", d.opt.Base)
	}
	out, err := openDirStack(d.tmp)
	if err != nil {
		base.close()
		return nil, err
	}
	return &reuser{d: d, base: base, out: out, buf: make([]byte, 256<<10), uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}, nil
}

func (w *reuser) close() {
	w.base.close()
	w.out.close()
}

// place creates the directory or symlink e, or the unchanged file e from
// the base.
func (w *reuser) place(e *IndexEntry) error {
	switch e.Type {
	case TypeDir:
		if w.d.kept[e.Path].dir {
			w.d.count(func(s *DeltaStats) { s.Dirs++ })
			return nil
		}
		if _, err := w.out.open(e.Path, true); err != nil {
			return err
		}
		w.d.count(func(s *DeltaStats) { s.Dirs++ })
		return nil
	case TypeSymlink:
		if w.d.kept[e.Path].link {
			w.d.count(func(s *DeltaStats) { s.Symlinks++ })
			return nil
		}
		if err := w.out.symlink(e.Link, e.Path); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return unsafeEntry(e.Path, "duplicate entry")
			}
			return fmt.Errorf("artifact: create symlink %s: %w", e.Path, err)
		}
		w.d.count(func(s *DeltaStats) { s.Symlinks++ })
		return nil
	}
	return w.reuse(e)
}

// reuse places the unchanged file e from the base: hard link when the
// base inode has the mode and owner a fresh extraction would give it,
// else a copy. The base file is opened without following any link and
// hashed through the fd that is then linked, so only verified inodes
// under Base are ever linked.
func (w *reuser) reuse(e *IndexEntry) error {
	dir, name := splitName(e.Path)
	bdir, err := w.base.open(dir, false)
	if err != nil {
		return fallback(err, "base file %s cannot be reached without following a link", e.Path)
	}
	if done, err := w.reuseKnown(e, bdir, dir, name); done || err != nil {
		return err
	}
	fd, err := openBaseFile(bdir, name)
	if err != nil {
		return fallback(err, "base file %s is missing or is a link", e.Path)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != e.Size {
		return fallback(err, "base file %s is no longer the regular file of %d bytes its index records", e.Path, e.Size)
	}
	if err := w.verify(fd, e, nil); err != nil {
		return err
	}
	if w.keptRecycled(&st, e) {
		w.d.count(func(s *DeltaStats) { s.FilesLinked++; s.BaseBytesVerified += e.Size })
		return nil
	}
	odir, err := w.out.open(dir, true)
	if err != nil {
		return err
	}
	if _, ok := w.d.kept[e.Path]; ok {
		// A recycled tree's other inode: unlinked, never written to.
		if err := unix.Unlinkat(odir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("artifact: remove the recycled %s: %w", e.Path, err)
		}
	}
	if w.linkable(&st, e) {
		// linkat of /proc/self/fd/N with AT_SYMLINK_FOLLOW links the
		// open inode itself (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
		err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), odir, name, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			w.d.count(func(s *DeltaStats) { s.FilesLinked++; s.BaseBytesVerified += e.Size })
			return nil
		}
		if errors.Is(err, unix.EEXIST) {
			return unsafeEntry(e.Path, "duplicate entry")
		}
		// EXDEV, EMLINK, no /proc: copy instead.
	}
	return w.copy(fd, odir, name, e)
}

// reuseKnown places e without reading the base file when its inode was
// hashed earlier (DeltaOptions.Verified) and is unchanged since: kept
// where a recycled tree holds that very inode, else linked by name and
// the new name checked to be that inode. false: take the reading path.
func (w *reuser) reuseKnown(e *IndexEntry, bdir int, dir, name string) (bool, error) {
	var st unix.Stat_t
	if w.d.opt.Verified == nil || unix.Fstatat(bdir, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Size != e.Size {
		return false, nil
	}
	if sum, ok := w.d.opt.Verified.lookup(&st); !ok || sum != e.SHA256 || !w.linkable(&st, e) {
		return false, nil
	}
	if w.keptRecycled(&st, e) {
		w.d.count(func(s *DeltaStats) { s.FilesLinked++; s.BaseFilesKnown++ })
		return true, nil
	}
	if _, held := w.d.kept[e.Path]; held {
		return false, nil // another inode there: the reading path replaces it
	}
	odir, err := w.out.open(dir, true)
	if err != nil {
		return false, err
	}
	if err := unix.Linkat(bdir, name, odir, name, 0); err != nil {
		return false, nil
	}
	// The name in the base may have been swapped since the fstatat: the
	// new tree is the agent's alone, so what its name holds now is what
	// was linked.
	var got unix.Stat_t
	if err := unix.Fstatat(odir, name, &got, unix.AT_SYMLINK_NOFOLLOW); err != nil || got.Dev != st.Dev || got.Ino != st.Ino {
		if err := unix.Unlinkat(odir, name, 0); err != nil {
			return false, fmt.Errorf("artifact: remove %s linked from a changed base: %w", e.Path, err)
		}
		return false, nil
	}
	w.d.count(func(s *DeltaStats) { s.FilesLinked++; s.BaseFilesKnown++ })
	return true, nil
}

// keptRecycled reports whether a recycled tree already holds, at e.Path,
// the very base inode just verified, as the new release needs it
// (linkable): then it stays as it is.
func (w *reuser) keptRecycled(st *unix.Stat_t, e *IndexEntry) bool {
	k, ok := w.d.kept[e.Path]
	return ok && !k.link && !k.dir && k.dev == st.Dev && k.ino == st.Ino && w.linkable(st, e)
}

// openBaseFile opens the base file name below bdir to read it: never
// following a link, never waiting on a FIFO, and without updating its
// access time (O_NOATIME, allowed to the owner and to root): a base file was
// just linked, so with relatime every read would otherwise dirty its inode,
// one journal write per file of the release.
func openBaseFile(bdir int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	fd, err := unix.Openat(bdir, name, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Openat(bdir, name, flags, 0)
	}
	return fd, err
}

// linkable reports whether the base inode st already is what the new
// release needs at e.Path (DeltaOptions.LinkAs), so linking it changes
// nothing a fresh preparation would have set differently.
func (w *reuser) linkable(st *unix.Stat_t, e *IndexEntry) bool {
	uid, gid, mode, ok := w.uid, w.gid, e.Mode, true
	if w.d.opt.LinkAs != nil {
		uid, gid, mode, ok = w.d.opt.LinkAs(e.Path, e.Mode)
	}
	return ok && st.Mode&0o7777 == mode && st.Uid == uid && st.Gid == gid
}

// verify hashes the file open as fd from offset 0, writing what it reads
// to out when out >= 0, and checks the hash against the index.
func (w *reuser) verify(fd int, e *IndexEntry, out *int) error {
	h := sha256.New()
	var off int64
	for off < e.Size {
		n, err := unix.Pread(fd, w.buf[:min(int64(len(w.buf)), e.Size-off)], off)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fallback(err, "read base file %s", e.Path)
		}
		if n == 0 && err == nil {
			break
		}
		h.Write(w.buf[:n])
		if out != nil {
			if err := writeAll(*out, w.buf[:n]); err != nil {
				return fmt.Errorf("artifact: write %s: %w", e.Path, err)
			}
		}
		off += int64(n)
	}
	if got := hex.EncodeToString(h.Sum(nil)); off != e.Size || got != e.SHA256 {
		return fallback(ErrChecksumMismatch, "base file %s no longer matches its recorded sha256 (edited in place?)", e.Path)
	}
	return nil
}

// copy writes a new inode with the content of the base file (hashed
// again while copying) and the mode of the new index.
func (w *reuser) copy(fd, odir int, name string, e *IndexEntry) error {
	nfd, err := unix.Openat(odir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("artifact: create %s: %w", e.Path, err)
	}
	if err := w.verify(fd, e, &nfd); err != nil {
		_ = unix.Close(nfd)
		return err
	}
	if err := w.out.finishFile(nfd, e.Path, e.Mode, w.d.mtime); err != nil {
		return err
	}
	w.d.count(func(s *DeltaStats) { s.FilesCopied++; s.BaseBytesVerified += e.Size; s.NewBytes += e.Size })
	return nil
}

func (d *delta) count(f func(*DeltaStats)) {
	d.mu.Lock()
	f(d.st)
	d.mu.Unlock()
}

type frameResult struct {
	data []byte
	err  error
}

// neededFrames lists, in order, the frames holding the content of the
// entries idx (sorted by offset).
func (d *delta) neededFrames(idx []int) []int {
	var out []int
	for _, i := range idx {
		e := &d.ix.Entries[i]
		if e.Size == 0 {
			continue
		}
		for f := e.Frame; f <= e.FrameEnd; f++ {
			if len(out) == 0 || out[len(out)-1] < f {
				out = append(out, f)
			}
		}
	}
	return out
}

// fetchFiles writes the files idx from their frames: range reads run
// Parallel at a time, ahead of the writer by at most Parallel frames.
func (d *delta) fetchFiles(ctx context.Context, idx []int) error {
	d.sortByOffset(idx)
	frames := d.neededFrames(idx)
	parallel := d.opt.Parallel
	if parallel <= 0 {
		parallel = 4
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(decoderMaxWindow), zstd.WithDecoderMaxWindow(decoderMaxWindow), zstd.WithDecoderConcurrency(parallel))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	// On any return, stop the launcher and wait for the range reads in
	// flight before closing the decoder they use.
	var fetching sync.WaitGroup
	defer func() {
		cancel()
		fetching.Wait()
		dec.Close()
	}()
	results := make([]chan frameResult, len(frames))
	for k := range results {
		results[k] = make(chan frameResult, 1)
	}
	sem := make(chan struct{}, parallel)
	fetching.Go(func() {
		for k, f := range frames {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			fetching.Go(func() { results[k] <- d.fetchFrame(ctx, dec, f) })
		}
	})
	out, err := openDirStack(d.tmp)
	if err != nil {
		return err
	}
	defer out.close()
	fw := &frameWalker{frames: frames, results: results, sem: sem, cur: -1, ctx: ctx}
	for _, i := range idx {
		if err := d.writeFetched(out, fw, &d.ix.Entries[i]); err != nil {
			return err
		}
	}
	return nil
}

func (d *delta) fetchFrame(ctx context.Context, dec *zstd.Decoder, f int) frameResult {
	fr := d.ix.Frames[f]
	comp, err := d.opt.Source.ReadRange(ctx, fr.Off, fr.Len)
	if err != nil {
		return frameResult{err: fallback(err, "read frame %d (%d bytes at %d) of the artifact", f, fr.Len, fr.Off)}
	}
	d.count(func(s *DeltaStats) { s.FramesFetched++; s.BytesFetched += int64(len(comp)) })
	data, err := dec.DecodeAll(comp, make([]byte, 0, fr.RawLen))
	if err != nil || int64(len(data)) != fr.RawLen {
		return frameResult{err: fallback(errors.Join(ErrChecksumMismatch, err), "frame %d of the artifact does not decompress to the %d bytes its index records: the artifact is corrupt or was tampered with", f, fr.RawLen)}
	}
	return frameResult{data: data}
}

// frameWalker hands out the fetched frames in order, keeping only the
// current one.
type frameWalker struct {
	ctx     context.Context
	frames  []int
	results []chan frameResult
	sem     chan struct{}
	next    int
	cur     int
	data    []byte
}

func (fw *frameWalker) get(f int) ([]byte, error) {
	for fw.cur != f {
		if fw.next >= len(fw.frames) {
			return nil, fmt.Errorf("artifact: internal error: frame %d was not fetched", f)
		}
		var r frameResult
		select {
		case r = <-fw.results[fw.next]:
		case <-fw.ctx.Done():
			return nil, fw.ctx.Err()
		}
		<-fw.sem
		if r.err != nil {
			return nil, r.err
		}
		fw.cur, fw.data = fw.frames[fw.next], r.data
		fw.next++
	}
	return fw.data, nil
}

// writeFetched writes e from its frames and checks its sha256 before
// giving it its mode; a mismatch fails the whole delta, so the temporary
// tree holding the wrong bytes is removed and never becomes a release.
func (d *delta) writeFetched(out *dirStack, fw *frameWalker, e *IndexEntry) error {
	fd, err := out.createFile(e.Path)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return unsafeEntry(e.Path, "duplicate entry")
		}
		return fmt.Errorf("artifact: create %s: %w", e.Path, err)
	}
	h := sha256.New()
	if err := d.copyFrames(fd, fw, e, h); err != nil {
		_ = unix.Close(fd)
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		_ = unix.Close(fd)
		return fallback(ErrChecksumMismatch, "file %s from the artifact's frames has sha256 %s, its index says %s: the artifact is corrupt or was tampered with", e.Path, got, e.SHA256)
	}
	if err := out.finishFile(fd, e.Path, e.Mode, d.mtime); err != nil {
		return err
	}
	d.count(func(s *DeltaStats) { s.FilesWritten++; s.NewBytes += e.Size })
	return nil
}

func (d *delta) copyFrames(fd int, fw *frameWalker, e *IndexEntry, h hash.Hash) error {
	left := e.Size
	for f := e.Frame; left > 0 && f <= e.FrameEnd; f++ {
		data, err := fw.get(f)
		if err != nil {
			return err
		}
		var start int64
		if f == e.Frame {
			start = e.FrameOff
		}
		chunk := data[start:min(int64(len(data)), start+left)]
		h.Write(chunk)
		if err := writeAll(fd, chunk); err != nil {
			return fmt.Errorf("artifact: write %s: %w", e.Path, err)
		}
		left -= int64(len(chunk))
	}
	return nil
}
