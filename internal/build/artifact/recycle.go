package artifact

// Recycling a retired release's directory tree. Creating the ~30,000
// directories of a Magento-sized release is most of a delta's time (each
// mkdir allocates an inode and a block and journals both); a retired
// release already has nearly all of them. ApplyDelta can take such a tree
// over (DeltaOptions.Recycle) and reconcile it to the new index instead of
// building a tree from nothing.
//
// The tree was live, and parts of it may have been writable by the PHP
// user or owned by the deploy user, so nothing in it is trusted:
//
//   - every directory kept or removed is first made the agent's own and
//     unwritable for anyone else (owner, group/other write, set-id and
//     sticky bits, POSIX ACLs), and only then listed, so nobody can add an
//     entry after it was looked at;
//   - every entry is looked at with fstatat/openat relative to its
//     directory's fd, never following a link; symlinks are kept only when
//     the index has the same link there, regular files only as candidates
//     that the delta keeps when they are the very inode it verified in the
//     base (else they are unlinked and the verified inode linked);
//   - everything else (planted files, hard links to foreign inodes, FIFOs,
//     sockets, symlinked directories, files the host rewrites) is unlinked,
//     which never touches the inode it named;
//   - a mount point or a tree deeper than maxRecycleDepth stops the
//     recycling (the tree is set aside for Prune, as it would have been);
//     the delta then builds a fresh tree.
//
// The walk that locks and lists the tree (this file) needs no index, so it
// runs while the indexes are fetched and parsed; what to keep is decided
// from its listing once they are (recycle_decide.go).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// maxRecycleDepth bounds how deep the walk goes (one fd per level): far
// deeper than any release, small enough for the fd limit.
const maxRecycleDepth = 128

// errAbandon marks why a recycled tree cannot be used; the delta goes on
// with a fresh tree.
type errAbandon struct{ reason string }

func (e *errAbandon) Error() string { return e.reason }

func abandon(format string, a ...any) error { return &errAbandon{reason: fmt.Sprintf(format, a...)} }

// claimRecycled moves the retired tree src onto the empty directory tmp
// (rename replaces an empty directory), so the tree leaves its old name
// at once and in one step. It returns a note when it could not.
func claimRecycled(src, tmp string) string {
	fi, err := os.Lstat(src)
	if err != nil || !fi.IsDir() {
		return fmt.Sprintf("retired tree %s is missing or not a directory", src)
	}
	// unix.Rename: os.Rename refuses an existing directory as target.
	if err := unix.Rename(src, tmp); err != nil {
		return fmt.Sprintf("cannot take over retired tree %s: %v", src, err)
	}
	return ""
}

// treeWalk locks and lists every directory of a claimed tree, on
// `workers` goroutines: a directory's lister opens each subdirectory (its
// own directory is locked, so the name cannot be swapped any more) and
// queues the fd; when the queue is full, it walks the subdirectory itself,
// which bounds the open fds.
type treeWalk struct {
	ctx      context.Context
	dev      uint64
	uid, gid int
	queue    chan dirJob
	pending  sync.WaitGroup
	done     chan struct{}

	mu    sync.Mutex // guards dirs, modes and err until done
	dirs  map[string][]dirent
	modes map[string]uint32 // permission bits of each directory, once locked
	err   error
}

// dirJob is a directory to lock and list, open as fd (the job owns it).
type dirJob struct {
	fd    int
	path  string
	depth int
}

// startWalk starts the walk of root; wait returns its result.
func startWalk(ctx context.Context, root string, workers int) *treeWalk {
	w := &treeWalk{ctx: ctx, uid: os.Geteuid(), gid: os.Getegid(), queue: make(chan dirJob, 256),
		done: make(chan struct{}), dirs: map[string][]dirent{}, modes: map[string]uint32{}}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	var st unix.Stat_t
	if err == nil {
		if err = unix.Fstat(fd, &st); err != nil {
			_ = unix.Close(fd)
		}
	}
	if err != nil {
		w.err = abandon("open %s: %v", root, err)
		close(w.done)
		return w
	}
	w.dev = st.Dev
	w.pending.Add(1)
	w.queue <- dirJob{fd: fd}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for j := range w.queue {
				w.run(j, buf)
				w.pending.Done()
			}
		})
	}
	go func() {
		w.pending.Wait()
		close(w.queue)
		wg.Wait()
		close(w.done)
	}()
	return w
}

// wait returns the listing of every directory by path ("" for the top),
// or why the tree cannot be recycled.
func (w *treeWalk) wait() (map[string][]dirent, error) {
	<-w.done
	return w.dirs, w.err
}

func (w *treeWalk) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *treeWalk) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// run locks and lists the queued directory j and closes its fd; after the
// first error, queued directories are only closed.
func (w *treeWalk) run(j dirJob, buf []byte) {
	defer unix.Close(j.fd)
	if w.failed() != nil {
		return
	}
	if err := w.ctx.Err(); err != nil {
		w.fail(err)
		return
	}
	if err := w.dir(j.fd, j.path, j.depth, buf); err != nil {
		w.fail(err)
	}
}

// dir locks and lists the directory p open as fd and queues its
// subdirectories.
func (w *treeWalk) dir(fd int, p string, depth int, buf []byte) error {
	if depth > maxRecycleDepth {
		return abandon("the tree is deeper than %d directories at %s", maxRecycleDepth, showPath(p))
	}
	mode, err := lockDir(fd, p, w.dev, w.uid, w.gid, buf)
	if err != nil {
		return err
	}
	ents, err := readDirents(fd, buf)
	if err != nil {
		return abandon("list %s: %v", showPath(p), err)
	}
	for i := range ents {
		if ents[i].typ == unix.DT_UNKNOWN {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, ents[i].name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return abandon("stat %s/%s: %v", showPath(p), ents[i].name, err)
			}
			ents[i].typ, ents[i].ino = direntType(st.Mode), st.Ino
		}
	}
	w.mu.Lock()
	w.dirs[p], w.modes[p] = ents, mode
	w.mu.Unlock()
	for _, de := range ents {
		if de.typ != unix.DT_DIR {
			continue
		}
		if err := w.subdir(fd, de.name, joinPath(p, de.name), depth, buf); err != nil {
			return err
		}
	}
	return nil
}

// subdir opens the directory name below fd without following a link and
// queues it, or walks it at once when the queue is full.
func (w *treeWalk) subdir(fd int, name, full string, depth int, buf []byte) error {
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return abandon("open directory %s: %v", showPath(full), err)
	}
	w.pending.Add(1)
	select {
	case w.queue <- dirJob{fd: sub, path: full, depth: depth + 1}:
		return nil
	default:
		w.pending.Done()
		defer unix.Close(sub)
		return w.dir(sub, full, depth+1, buf)
	}
}

// lockDir makes the directory p open as fd the agent's alone (uid, gid)
// before it is listed: owner and group, no write, set-id or sticky bits
// for others, no ACL. Nothing can be added to it afterwards except by the
// agent. A directory on another device than dev is a mount point. It
// returns the directory's permission bits after.
func lockDir(fd int, p string, dev uint64, uid, gid int, buf []byte) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, abandon("stat %s: %v", showPath(p), err)
	}
	if st.Dev != dev {
		return 0, abandon("%s is a mount point", showPath(p))
	}
	if int(st.Uid) != uid || int(st.Gid) != gid {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return 0, abandon("cannot take over directory %s (owner %d): %v", showPath(p), st.Uid, err)
		}
	}
	mode := st.Mode & 0o7777
	if mode&0o7022 != 0 || mode&0o700 != 0o700 {
		if err := unix.Fchmod(fd, 0o755); err != nil {
			return 0, abandon("chmod %s: %v", showPath(p), err)
		}
		mode = 0o755
	}
	n, err := unix.Flistxattr(fd, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return mode, nil
		}
		return 0, abandon("list extended attributes of %s: %v", showPath(p), err)
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if strings.HasPrefix(name, "system.posix_acl_") {
			if err := unix.Fremovexattr(fd, name); err != nil && !errors.Is(err, unix.ENODATA) {
				return 0, abandon("remove the ACL of %s: %v", showPath(p), err)
			}
		}
	}
	return mode, nil
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func showPath(p string) string {
	if p == "" {
		return "the tree's top directory"
	}
	return filepath.FromSlash(p)
}

// dirent is one directory entry: name, inode number and d_type.
type dirent struct {
	name string
	ino  uint64
	typ  uint8
}

// readDirents lists the directory open as fd, which must be at its
// start (fresh from openat), without "." and "..".
func readDirents(fd int, buf []byte) ([]dirent, error) {
	var out []dirent
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		out = parseDirents(buf[:n], out)
	}
}

// parseDirents appends the linux_dirent64 records of b (ino u64, off i64,
// reclen u16, type u8, NUL-terminated name).
func parseDirents(b []byte, out []dirent) []dirent {
	for len(b) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < 19 || reclen > len(b) {
			break
		}
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s != "." && s != ".." && s != "" {
			out = append(out, dirent{name: s, ino: binary.NativeEndian.Uint64(b[0:8]), typ: b[18]})
		}
		b = b[reclen:]
	}
	return out
}

// direntType is the d_type of a stat mode.
func direntType(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFLNK:
		return unix.DT_LNK
	}
	return unix.DT_UNKNOWN + 1 // anything else: removed
}

// readlinkAt reads the target of the symlink name below fd.
func readlinkAt(fd int, name string, buf []byte) (string, error) {
	n, err := unix.Readlinkat(fd, name, buf)
	if err != nil {
		return "", err
	}
	if n >= len(buf) {
		return "", unix.ENAMETOOLONG
	}
	return string(buf[:n]), nil
}
