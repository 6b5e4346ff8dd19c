package artifact

// Deciding, from the walk's listing (recycle.go), what a claimed tree
// keeps once the new index is known.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// keptEntry is what the reconcile left in place at a path.
type keptEntry struct {
	dev, ino uint64
	link     bool   // a symlink with the index's target
	dir      bool   // a directory the index has (locked and listed)
	mode     uint32 // a directory's permission bits
}

// reconciler is one pass over a walk's listing.
type reconciler struct {
	ix       map[string]*IndexEntry
	fetch    map[string]bool
	listing  map[string][]dirent
	modes    map[string]uint32
	dev      uint64
	uid, gid int
	out      *dirStack
	kept     map[string]keptEntry
	removed  int
	buf      []byte
}

// recycle waits for the walk and reconciles the claimed tree to the index
// (fetch: the entries the delta writes from the artifact). When the tree
// cannot be used, it sets it aside (a dot name next to the release, which
// Prune removes as it would have removed the retired release) and gives d
// a fresh directory.
func (d *delta) recycle(ctx context.Context, fetch []int) error {
	listing, err := d.walk.wait()
	if err == nil {
		err = d.reconcile(listing, fetch)
	}
	var ab *errAbandon
	if err == nil || !errors.As(err, &ab) {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d.st.Recycled, d.st.RecycleNote, d.kept = false, ab.reason, nil
	if err := setAside(d.tmp, d.opt.Dst); err != nil {
		return fmt.Errorf("artifact: set aside the retired tree (%s): %w", ab.reason, err)
	}
	d.walk = nil
	if err := os.Mkdir(d.tmp, 0o700); err != nil {
		return fmt.Errorf("artifact: recreate %s: %w", d.tmp, err)
	}
	return nil
}

// setAside renames the tree tmp to a dot name next to dst.
func setAside(tmp, dst string) error {
	aside, err := os.MkdirTemp(filepath.Dir(tmp), "."+filepath.Base(dst)+".recycle-abandoned-*")
	if err != nil {
		return err
	}
	return unix.Rename(tmp, aside)
}

// discard removes the work directory of a failed delta; a claimed tree
// whose walk did not finish cleanly (it may hold a mount point) is set
// aside instead.
func (d *delta) discard() {
	if d.walk != nil {
		if _, err := d.walk.wait(); err != nil && setAside(d.tmp, d.opt.Dst) == nil {
			return
		}
	}
	_ = os.RemoveAll(d.tmp)
}

// reconcile turns the claimed tree into a subset of the new index, from
// the walk's listing: directories the index has, symlinks with the
// index's targets and candidate files (d.kept); everything else is
// removed, without following links.
func (d *delta) reconcile(listing map[string][]dirent, fetch []int) error {
	out, err := openDirStack(d.tmp)
	if err != nil {
		return abandon("open %s: %v", d.tmp, err)
	}
	defer out.close()
	r := &reconciler{ix: make(map[string]*IndexEntry, len(d.ix.Entries)), fetch: make(map[string]bool, len(fetch)),
		listing: listing, modes: d.walk.modes, dev: d.walk.dev, uid: d.walk.uid, gid: d.walk.gid, out: out,
		kept: make(map[string]keptEntry, len(d.ix.Entries)), buf: make([]byte, 64<<10)}
	for i := range d.ix.Entries {
		r.ix[d.ix.Entries[i].Path] = &d.ix.Entries[i]
	}
	for _, i := range fetch {
		r.fetch[d.ix.Entries[i].Path] = true
	}
	if err := r.dir(""); err != nil {
		return err
	}
	d.kept = r.kept
	d.st.EntriesRemoved = r.removed
	return nil
}

// dir keeps or removes the entries of the kept directory p.
func (r *reconciler) dir(p string) error {
	for _, de := range r.listing[p] {
		full := joinPath(p, de.name)
		e := r.ix[full]
		switch {
		case e != nil && e.Type == TypeDir && de.typ == unix.DT_DIR:
			r.kept[full] = keptEntry{dir: true, mode: r.modes[full]}
			if err := r.dir(full); err != nil {
				return err
			}
			continue
		case e != nil && e.Type == TypeSymlink && de.typ == unix.DT_LNK:
			fd, err := r.out.open(p, false)
			if err != nil {
				return abandon("open %s: %v", showPath(p), err)
			}
			if t, err := readlinkAt(fd, de.name, r.buf); err == nil && t == e.Link {
				r.kept[full] = keptEntry{link: true}
				continue
			}
		case e != nil && e.Type == TypeFile && de.typ == unix.DT_REG && !r.fetch[full]:
			r.kept[full] = keptEntry{dev: r.dev, ino: de.ino}
			continue
		}
		fd, err := r.out.open(p, false)
		if err != nil {
			return abandon("open %s: %v", showPath(p), err)
		}
		if err := r.remove(fd, de.name, full, de.typ, 0); err != nil {
			return err
		}
	}
	return nil
}

// remove unlinks the entry name of type typ below fd (a directory after
// locking it again and emptying it).
func (r *reconciler) remove(fd int, name, full string, typ uint8, depth int) error {
	if typ != unix.DT_DIR {
		if err := unix.Unlinkat(fd, name, 0); err != nil {
			return abandon("remove %s: %v", showPath(full), err)
		}
		r.removed++
		return nil
	}
	if depth > maxRecycleDepth {
		return abandon("the tree is deeper than %d directories at %s", maxRecycleDepth, showPath(full))
	}
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return abandon("open directory %s: %v", showPath(full), err)
	}
	err = r.empty(sub, full, depth+1)
	_ = unix.Close(sub)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); err != nil {
		return abandon("remove directory %s: %v", showPath(full), err)
	}
	r.removed++
	return nil
}

func (r *reconciler) empty(fd int, p string, depth int) error {
	if _, err := lockDir(fd, p, r.dev, r.uid, r.gid, r.buf); err != nil {
		return err
	}
	ents, err := readDirents(fd, r.buf)
	if err != nil {
		return abandon("list %s: %v", showPath(p), err)
	}
	for _, de := range ents {
		if de.typ == unix.DT_UNKNOWN {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, de.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return abandon("stat %s/%s: %v", showPath(p), de.name, err)
			}
			de.typ = direntType(st.Mode)
		}
		if err := r.remove(fd, de.name, p+"/"+de.name, de.typ, depth); err != nil {
			return err
		}
	}
	return nil
}
