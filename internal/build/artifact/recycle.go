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

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxRecycleDepth bounds how deep the reconcile walk goes (one fd per
// level): far deeper than any release, small enough for the fd limit.
const maxRecycleDepth = 128

// errAbandon marks why a recycled tree cannot be used; the delta goes on
// with a fresh tree.
type errAbandon struct{ reason string }

func (e *errAbandon) Error() string { return e.reason }

func abandon(format string, a ...any) error { return &errAbandon{reason: fmt.Sprintf(format, a...)} }

// keptEntry is a regular file or symlink the reconcile walk left in place.
type keptEntry struct {
	dev, ino uint64
	link     bool // a symlink with the index's target
}

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

// recycler is one reconcile walk over d.tmp.
type recycler struct {
	ctx      context.Context
	ix       map[string]*IndexEntry
	fetch    map[string]bool
	dev      uint64
	uid, gid int
	kept     map[string]keptEntry
	removed  int
	buf      []byte
}

// reconcile turns the claimed tree in d.tmp into a subset of the new
// index: directories the index has, symlinks with the index's targets and
// candidate files (d.kept); everything else is removed. fetch are the
// paths the delta writes from the artifact.
func (d *delta) reconcile(ctx context.Context, fetch map[string]bool) error {
	r := &recycler{ctx: ctx, ix: make(map[string]*IndexEntry, len(d.ix.Entries)), fetch: fetch,
		uid: os.Geteuid(), gid: os.Getegid(), kept: make(map[string]keptEntry, len(d.ix.Entries)), buf: make([]byte, 64<<10)}
	for i := range d.ix.Entries {
		r.ix[d.ix.Entries[i].Path] = &d.ix.Entries[i]
	}
	fd, err := unix.Open(d.tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return abandon("open %s: %v", d.tmp, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return abandon("stat %s: %v", d.tmp, err)
	}
	r.dev = st.Dev
	if err := r.dir(fd, "", &st, 0); err != nil {
		return err
	}
	d.kept = r.kept
	d.st.EntriesRemoved = r.removed
	return nil
}

// lock makes the directory open as fd the agent's alone before it is
// listed: owner and group, no write, set-id or sticky bits for others, no
// ACL. Nothing can be added to it afterwards except by the agent.
func (r *recycler) lock(fd int, p string, st *unix.Stat_t) error {
	if st.Dev != r.dev {
		return abandon("%s is a mount point", showPath(p))
	}
	if int(st.Uid) != r.uid || int(st.Gid) != r.gid {
		if err := unix.Fchown(fd, r.uid, r.gid); err != nil {
			return abandon("cannot take over directory %s (owner %d): %v", showPath(p), st.Uid, err)
		}
	}
	if mode := st.Mode & 0o7777; mode&0o7022 != 0 || mode&0o700 != 0o700 {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return abandon("chmod %s: %v", showPath(p), err)
		}
	}
	n, err := unix.Flistxattr(fd, r.buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return abandon("list extended attributes of %s: %v", showPath(p), err)
	}
	for _, name := range strings.Split(string(r.buf[:n]), "\x00") {
		if strings.HasPrefix(name, "system.posix_acl_") {
			if err := unix.Fremovexattr(fd, name); err != nil && !errors.Is(err, unix.ENODATA) {
				return abandon("remove the ACL of %s: %v", showPath(p), err)
			}
		}
	}
	return nil
}

// dir locks and reconciles the directory p open as fd.
func (r *recycler) dir(fd int, p string, st *unix.Stat_t, depth int) error {
	if depth > maxRecycleDepth {
		return abandon("the tree is deeper than %d directories at %s", maxRecycleDepth, showPath(p))
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if err := r.lock(fd, p, st); err != nil {
		return err
	}
	names, err := readDirNames(fd, r.buf)
	if err != nil {
		return abandon("list %s: %v", showPath(p), err)
	}
	for _, name := range names {
		if err := r.entry(fd, p, name, depth); err != nil {
			return err
		}
	}
	return nil
}

// entry keeps, descends into or removes the entry name of the directory p.
func (r *recycler) entry(fd int, p, name string, depth int) error {
	full := name
	if p != "" {
		full = p + "/" + name
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return abandon("stat %s: %v", showPath(full), err)
	}
	e := r.ix[full]
	typ := st.Mode & unix.S_IFMT
	switch {
	case e != nil && e.Type == TypeDir && typ == unix.S_IFDIR:
		return r.descend(fd, name, full, depth, r.dir)
	case e != nil && e.Type == TypeSymlink && typ == unix.S_IFLNK:
		if t, err := readlinkAt(fd, name, r.buf); err == nil && t == e.Link {
			r.kept[full] = keptEntry{link: true}
			return nil
		}
	case e != nil && e.Type == TypeFile && typ == unix.S_IFREG && !r.fetch[full] && st.Dev == r.dev:
		r.kept[full] = keptEntry{dev: st.Dev, ino: st.Ino}
		return nil
	}
	return r.remove(fd, name, full, typ, depth)
}

// descend opens the directory name below fd without following a link,
// checks it is the one fstatat saw, and runs do on it.
func (r *recycler) descend(fd int, name, full string, depth int, do func(int, string, *unix.Stat_t, int) error) error {
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return abandon("open directory %s: %v", showPath(full), err)
	}
	defer unix.Close(sub)
	var st unix.Stat_t
	if err := unix.Fstat(sub, &st); err != nil {
		return abandon("stat %s: %v", showPath(full), err)
	}
	return do(sub, full, &st, depth+1)
}

// remove unlinks the entry name (a directory after emptying it, locked
// first so it cannot be refilled).
func (r *recycler) remove(fd int, name, full string, typ uint32, depth int) error {
	if typ == unix.S_IFDIR {
		err := r.descend(fd, name, full, depth, func(sub int, p string, st *unix.Stat_t, depth int) error {
			if depth > maxRecycleDepth {
				return abandon("the tree is deeper than %d directories at %s", maxRecycleDepth, showPath(p))
			}
			if err := r.lock(sub, p, st); err != nil {
				return err
			}
			names, err := readDirNames(sub, r.buf)
			if err != nil {
				return abandon("list %s: %v", showPath(p), err)
			}
			for _, n := range names {
				var cst unix.Stat_t
				if err := unix.Fstatat(sub, n, &cst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					return abandon("stat %s/%s: %v", showPath(p), n, err)
				}
				if err := r.remove(sub, n, p+"/"+n, cst.Mode&unix.S_IFMT, depth); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); err != nil {
			return abandon("remove directory %s: %v", showPath(full), err)
		}
	} else if err := unix.Unlinkat(fd, name, 0); err != nil {
		return abandon("remove %s: %v", showPath(full), err)
	}
	r.removed++
	return nil
}

func showPath(p string) string {
	if p == "" {
		return "the tree's top directory"
	}
	return filepath.FromSlash(p)
}

// readDirNames lists the directory open as fd (from its start, through a
// duplicate so fd's offset stays), without "." and "..".
func readDirNames(fd int, buf []byte) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dup)
	var names []string
	for {
		n, err := unix.ReadDirent(dup, buf)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
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

// recycle reconciles the claimed tree; when it cannot be used, it sets the
// tree aside (a dot name next to the release, which Prune removes as it
// would have removed the retired release) and gives d a fresh directory.
func (d *delta) recycle(ctx context.Context, fetch []int) error {
	set := make(map[string]bool, len(fetch))
	for _, i := range fetch {
		set[d.ix.Entries[i].Path] = true
	}
	err := d.reconcile(ctx, set)
	var ab *errAbandon
	if err == nil || !errors.As(err, &ab) {
		return err
	}
	d.st.Recycled, d.st.RecycleNote, d.kept = false, ab.reason, nil
	aside, terr := os.MkdirTemp(filepath.Dir(d.tmp), "."+filepath.Base(d.opt.Dst)+".recycle-abandoned-*")
	if terr != nil {
		return fmt.Errorf("artifact: set aside the retired tree (%s): %w", ab.reason, terr)
	}
	if err := unix.Rename(d.tmp, aside); err != nil {
		return fmt.Errorf("artifact: set aside the retired tree (%s): %w", ab.reason, err)
	}
	if err := os.Mkdir(d.tmp, 0o700); err != nil {
		return fmt.Errorf("artifact: recreate %s: %w", d.tmp, err)
	}
	return nil
}
