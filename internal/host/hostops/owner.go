package hostops

import (
	"errors"
	"fmt"
	"io/fs"
	"os/user"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Users are the two identities of a hardened host: the deploy user owns
// the code, PHP runs as the PHP user and can read the code (through its
// group) but write only the writable paths. A compromised PHP process then
// cannot plant code in a release.
type Users struct {
	Deploy Owner // uid of deploy_user, gid of php_user's group
	PHP    Owner // uid and primary gid of php_user
}

// LookupUsers resolves deploy_user and php_user. ok is false when either is
// empty: ownership is then left as the agent creates it (single-user hosts).
func LookupUsers(deployUser, phpUser string) (u Users, ok bool, err error) {
	if deployUser == "" || phpUser == "" {
		return Users{Deploy: NoChange, PHP: NoChange}, false, nil
	}
	d, err := user.Lookup(deployUser)
	if err != nil {
		return u, false, fmt.Errorf("deploy_user %q: %w; create the user or fix hosts.*.deploy_user", deployUser, err)
	}
	p, err := user.Lookup(phpUser)
	if err != nil {
		return u, false, fmt.Errorf("php_user %q: %w; create the user or fix hosts.*.php_user (the user php-fpm's pool runs as)", phpUser, err)
	}
	duid, _ := strconv.Atoi(d.Uid)
	puid, _ := strconv.Atoi(p.Uid)
	pgid, _ := strconv.Atoi(p.Gid)
	return Users{Deploy: Owner{duid, pgid}, PHP: Owner{puid, pgid}}, true, nil
}

// CodeMode is the mode a code file or directory gets on a hardened host:
// no write for the group, nothing for others, and read (plus execute/search
// where the owner has it) for the group, so PHP can read every file but
// change none.
func CodeMode(m fs.FileMode, isDir bool) fs.FileMode {
	perm := m.Perm() &^ 0o027
	perm |= 0o040
	if isDir || perm&0o100 != 0 {
		perm |= 0o010
	}
	if isDir {
		perm |= 0o700
	}
	return perm
}

// WritableMode adds group write to CodeMode: the PHP user owns writable
// paths, and the group bit lets the deploy user (in the PHP group on most
// hosts) clean them up.
func WritableMode(m fs.FileMode, isDir bool) fs.FileMode {
	return CodeMode(m, isDir) | 0o060
}

// ApplyOwnership gives the release tree to the deploy user (group: the PHP
// user's group) with CodeMode, then the writable paths (relative to the
// release, not symlinks into shared/) to the PHP user with WritableMode.
//
// It never follows a symlink and never changes anything by name: the tree
// is walked through directory descriptors opened with O_NOFOLLOW, each
// entry is opened with O_PATH|O_NOFOLLOW, and the owner and mode are
// changed through that descriptor. A PHP user who owns a writable
// directory and swaps a child for a symlink while the walk runs gets the
// link chowned, never its target. Symlinks are chowned themselves; a
// symlinked parent of a writable path is refused (*LinkError); files with
// more than one hard link are left alone (one could be a link to a file
// outside the release). Running it again changes nothing.
func ApplyOwnership(releaseDir string, u Users, writable []string) error {
	rfd, err := openDir(releaseDir)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	dup, err := unix.Dup(rfd)
	if err != nil {
		return err
	}
	if err := ownTree(dup, releaseDir, u.Deploy, CodeMode); err != nil {
		return err
	}
	for _, w := range writable {
		if err := ownWritable(rfd, releaseDir, w, u); err != nil {
			return fmt.Errorf("writable path %s: %w", w, err)
		}
	}
	return nil
}

// ownWritable hands releaseDir/w (created 0770 if missing) and everything
// below it to the PHP user. A symlink at w is a shared path, handled by
// SharedWritable.
func ownWritable(rfd int, releaseDir, w string, u Users) error {
	comps, err := splitRel(w)
	if err != nil {
		return err
	}
	parent := filepath.Join(append([]string{releaseDir}, comps[:len(comps)-1]...)...)
	pfd, err := openBelow(rfd, releaseDir, comps[:len(comps)-1], true, u.Deploy)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	name := comps[len(comps)-1]
	if isLinkAt(pfd, name) {
		return nil
	}
	if err := unix.Mkdirat(pfd, name, 0o770); err != nil && !errors.Is(err, unix.EEXIST) {
		return &fs.PathError{Op: "mkdir", Path: filepath.Join(parent, name), Err: err}
	}
	fd, err := unix.Openat(pfd, name, dirFlags, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// Not a directory: own the one entry, without following it.
			return ownEntry(pfd, parent, name, u.PHP, WritableMode)
		}
		return &fs.PathError{Op: "open", Path: filepath.Join(parent, name), Err: err}
	}
	return ownTree(fd, filepath.Join(parent, name), u.PHP, WritableMode)
}

// ownTree gives the directory dfd (closed on return) and everything below
// it to owner with mode(…).
func ownTree(dfd int, p string, owner Owner, mode func(fs.FileMode, bool) fs.FileMode) error {
	defer unix.Close(dfd)
	if err := owner.fchown(dfd); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	if want := mode(fs.FileMode(st.Mode&0o777), true); st.Mode&0o7777 != uint32(want) {
		if err := unix.Fchmod(dfd, uint32(want)); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	names, err := readNames(dfd, p)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := ownEntry(dfd, p, n, owner, mode); err != nil {
			return err
		}
	}
	return nil
}

// ownEntry gives name in dirfd to owner through an O_PATH|O_NOFOLLOW
// descriptor; a directory is descended into through that descriptor.
func ownEntry(dirfd int, dir, name string, owner Owner, mode func(fs.FileMode, bool) fs.FileMode) error {
	p := filepath.Join(dir, name)
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // removed meanwhile (PHP may clean its own files)
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		dfd, err := unix.Openat(fd, ".", dirFlags, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return ownTree(dfd, p, owner, mode)
	case unix.S_IFLNK:
		// The link itself (lchown through the descriptor); never its target.
		if err := owner.fchown(fd); err != nil {
			return fmt.Errorf("chown symlink %s: %w", p, err)
		}
		return nil
	}
	if st.Nlink > 1 {
		return nil // possibly a hard link to a file outside the release
	}
	if err := owner.fchown(fd); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	if want := mode(fs.FileMode(st.Mode&0o777), false); st.Mode&0o7777 != uint32(want) {
		if err := fchmodPath(fd, want); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	return nil
}

// SharedWritable hands sharedDir/rel to the PHP user. Only that entry is
// changed: media folders hold millions of files that PHP created and
// already owns, and walking them on every deploy would make deploys slow
// for no gain. A missing directory is created (0770).
//
// No symlink is followed on the way except one owned by the agent's own
// user (an operator who put shared/var on another disk wants the real
// directory handed over); a link anybody else made (the PHP user owns
// shared/var and could plant shared/var/log -> /etc) is refused with a
// *LinkError. The change is made through a descriptor of the checked inode.
func SharedWritable(sharedDir, rel string, u Users) error {
	comps, err := splitRel(rel)
	if err != nil {
		return err
	}
	pfd, parent, name, err := openParent(sharedDir, comps, false, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	p := filepath.Join(sharedDir, rel)
	if err := unix.Mkdirat(pfd, name, 0o770); err != nil && !errors.Is(err, unix.EEXIST) {
		return &fs.PathError{Op: "mkdir", Path: p, Err: err}
	}
	flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if ownLinkAt(pfd, name) {
		flags &^= unix.O_NOFOLLOW
	} else if isLinkAt(pfd, name) {
		return linkErr(pfd, parent, name)
	}
	fd, err := unix.Openat(pfd, name, flags, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if !isDir && st.Nlink > 1 {
		return fmt.Errorf("%s has %d hard links: refusing to hand it to php_user (one may be a file outside shared/); replace it by a copy", p, st.Nlink)
	}
	if err := u.PHP.fchown(fd); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	if want := WritableMode(fs.FileMode(st.Mode&0o777), isDir); st.Mode&0o7777 != uint32(want) {
		return fchmodPath(fd, want)
	}
	return nil
}
