package hostops

// A spare tree for the recycle slot. Until Prune first retires a release
// (the sixth deploy with keep_releases 5), the slot is empty and every
// delta prepare creates all ~30,000 directories of the release. After such
// a deploy the agent stages a spare instead: a copy of current's directory
// tree whose files and symlinks are hard links to current's inodes. The
// next delta recycles it exactly like a retired release (nothing in it is
// trusted there either), so a host's second to fifth releases prepare as
// fast as the steady state, and the cost moves off the deploy's critical
// path.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSpareDepth bounds the copy (one fd pair per level).
const maxSpareDepth = 128

// SpareTmpPrefix starts the work directory of a spare being staged; a
// dot name, so ListReleases never sees it and Prune removes it when stale.
const SpareTmpPrefix = TmpPrefix + "spare-"

// StageSpare copies the directory tree of releases/<id> into the recycle
// slot, hard-linking every file and symlink (never following one, never
// crossing a mount point, never writing to an existing inode). It builds
// under a temporary name and renames it into place only if the slot is
// still empty; a cancelled or failed staging removes its work directory.
//
// replace, when not "", is the release the slot holds now: its tree is
// removed first. The staging stops (and removes what it made) when the
// file system's free space drops below minFree bytes or its free inodes
// below a twentieth: a background nicety must never take the disk a
// store writes to.
func StageSpare(ctx context.Context, releasesDir, id, replace string, minFree uint64) error {
	if IsTemp(id) || id == "" || filepath.Base(id) != id {
		return fmt.Errorf("stage spare: invalid release id %q", id)
	}
	if replace != "" {
		if err := RemoveTree(releasesDir, RecyclePrefix+filepath.Base(replace)); err != nil {
			return fmt.Errorf("empty the recycle slot: %w", err)
		}
	}
	tmp := filepath.Join(releasesDir, SpareTmpPrefix+id+"-"+RandSuffix())
	err := linkTree(ctx, filepath.Join(releasesDir, id), tmp, minFree)
	if err == nil {
		var slot string
		if slot, err = RecycleSlot(releasesDir); err == nil && slot != "" {
			err = fmt.Errorf("the recycle slot already holds %s", slot)
		}
	}
	if err == nil {
		// RENAME_NOREPLACE: never replace an entry of that name.
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, filepath.Join(releasesDir, RecyclePrefix+id), unix.RENAME_NOREPLACE)
	}
	if err != nil {
		_ = RemoveTree(releasesDir, filepath.Base(tmp))
		return fmt.Errorf("stage spare of %s: %w", id, err)
	}
	SyncDir(releasesDir)
	return nil
}

// linkTree creates dst (which must not exist) as a copy of the directory
// src whose non-directory entries are hard links.
func linkTree(ctx context.Context, src, dst string, minFree uint64) error {
	// The release itself is never a link either (O_NOFOLLOW).
	sfd, err := unix.Open(src, dirFlags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: src, Err: err}
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return err
	}
	if err := unix.Mkdir(dst, 0o700); err != nil {
		return err
	}
	dfd, err := unix.Open(dst, dirFlags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dst, Err: err}
	}
	defer unix.Close(dfd)
	t := &treeLinker{ctx: ctx, dev: st.Dev, minFree: minFree}
	if err := t.copyDir(sfd, dfd, src, 0); err != nil {
		return err
	}
	return unix.Fchmod(dfd, uint32(st.Mode)&0o755)
}

// readEntries lists a directory (names and getdents types) through a
// duplicate of dfd.
func readEntries(dfd int, p string) ([]os.DirEntry, error) {
	dup, err := unix.Dup(dfd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), p)
	defer f.Close()
	return f.ReadDir(-1)
}

type treeLinker struct {
	ctx     context.Context
	dev     uint64
	minFree uint64
	dirs    int
}

// ErrSpareNoSpace: staging a spare stopped to leave the disk its margin.
var ErrSpareNoSpace = errors.New("the file system is nearly full")

// roomLeft checks the free space and inodes every 256 directories.
func (t *treeLinker) roomLeft(fd int) error {
	t.dirs++
	if t.dirs%256 != 1 {
		return nil
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return err
	}
	if fs.Bavail*uint64(fs.Bsize) < t.minFree || fs.Files > 0 && fs.Ffree < fs.Files/20 {
		return fmt.Errorf("%w: %d bytes and %d inodes free", ErrSpareNoSpace, fs.Bavail*uint64(fs.Bsize), fs.Ffree)
	}
	return nil
}

// copyDir fills the open directory dfd with the entries of sfd (at p).
func (t *treeLinker) copyDir(sfd, dfd int, p string, depth int) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	if err := t.roomLeft(dfd); err != nil {
		return err
	}
	if depth >= maxSpareDepth {
		return fmt.Errorf("%s: deeper than %d levels", p, maxSpareDepth)
	}
	ents, err := readEntries(sfd, p)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		// The type from getdents is a hint: subdir opens without
		// following, and link(2) refuses a directory (EPERM).
		err = unix.EPERM
		if !e.IsDir() {
			err = unix.Linkat(sfd, name, dfd, name, 0) // 0: a symlink itself is linked
		}
		if errors.Is(err, unix.EPERM) {
			err = t.subdir(sfd, dfd, filepath.Join(p, name), name, depth)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "link", Path: filepath.Join(p, name), Err: err}
		}
	}
	return nil
}

// subdir copies the directory name (link refused it: a directory, or a
// file link refused for another reason, which is skipped).
func (t *treeLinker) subdir(sfd, dfd int, p, name string, depth int) error {
	cfd, err := unix.Openat(sfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // not a directory (a file link() refused): not needed
	}
	defer unix.Close(cfd)
	var st unix.Stat_t
	if err := unix.Fstat(cfd, &st); err != nil {
		return err
	}
	if st.Dev != t.dev {
		return nil // a mount point: its content is not the release's
	}
	if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
		return err
	}
	nfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(nfd)
	if err := t.copyDir(cfd, nfd, p, depth+1); err != nil {
		return err
	}
	return unix.Fchmod(nfd, uint32(st.Mode)&0o755)
}
