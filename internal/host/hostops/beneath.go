package hostops

// Descriptor-based file operations below a directory that a less trusted
// user (the PHP user, through the writable paths) can change while the
// root agent works in it. Every path is walked one component at a time with
// openat(O_NOFOLLOW), so no symlink — planted by an artifact or swapped in
// by PHP halfway through — is ever followed, and the final change is made
// through the descriptor of the very inode that was checked, never again by
// name.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LinkError is a symlink found where mageflow only follows real
// directories and files: inside a release or a shared tree, below the
// directory an operation works beneath.
type LinkError struct {
	// Path is the absolute path of the symlink.
	Path string
	// Target is what the link points at (empty if it could not be read).
	Target string
}

// linkAdvice ends every LinkError: what to do about it.
const linkAdvice = "mageflow never writes, chowns or chmods through a symlink inside a release or shared tree; remove the link (from the repository, or from the host if a local user planted it) and run the step again"

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s is a symlink to %q: %s", e.Path, e.Target, linkAdvice)
}

func linkErr(dirfd int, dirPath, name string) error {
	t, _ := readlinkAt(dirfd, name)
	return &LinkError{Path: filepath.Join(dirPath, name), Target: t}
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// splitRel cleans a slash- or OS-separated relative path and splits it into
// components; "", ".", absolute paths and ".." segments are refused.
func splitRel(rel string) ([]string, error) {
	c := path.Clean(filepath.ToSlash(rel))
	if c == "." || c == "" || strings.HasPrefix(c, "/") || c == ".." || strings.HasPrefix(c, "../") {
		return nil, fmt.Errorf("path %q must be relative, below the directory and without \"..\" segments", rel)
	}
	return strings.Split(c, "/"), nil
}

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir opens an absolute directory path the operator controls (a
// release or shared directory); its own components may be links (shared/ on
// another disk), what lies below it is opened with openBelow.
func openDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// openBelow opens the directory comps below dirfd (whose path is dirPath,
// for messages) without following any symlink. With mkdir, missing
// directories are created with mode 0755 and owner. A component that is a
// symlink is a *LinkError.
func openBelow(dirfd int, dirPath string, comps []string, mkdir bool, owner Owner) (int, error) {
	return openBelowOpt(dirfd, dirPath, comps, mkdir, owner, false)
}

// openBelowOpt is openBelow; with followOwn it also follows symlinks owned
// by the agent's own user: in shared/ an operator (root) may have put a
// directory on another disk, and no PHP user can create a link root owns.
func openBelowOpt(dirfd int, dirPath string, comps []string, mkdir bool, owner Owner, followOwn bool) (int, error) {
	fd, err := unix.Dup(dirfd)
	if err != nil {
		return -1, err
	}
	cur := dirPath
	for _, c := range comps {
		next, err := unix.Openat(fd, c, dirFlags, 0)
		if err != nil && followOwn && ownLinkAt(fd, c) {
			next, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
		if errors.Is(err, unix.ENOENT) && mkdir {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				if next, err = unix.Openat(fd, c, dirFlags, 0); err == nil {
					err = owner.fchown(next)
				}
			}
		}
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				if isLinkAt(fd, c) {
					err = linkErr(fd, cur, c)
				} else {
					err = fmt.Errorf("%s is not a directory", filepath.Join(cur, c))
				}
			} else {
				err = &fs.PathError{Op: "open", Path: filepath.Join(cur, c), Err: err}
			}
			_ = unix.Close(fd)
			return -1, err
		}
		_ = unix.Close(fd)
		fd, cur = next, filepath.Join(cur, c)
	}
	return fd, nil
}

// openParent opens, below base and as openBelowOpt does, the directory that
// holds the last of comps. It returns that directory's descriptor (the
// caller closes it), its path for messages and the last component's name.
func openParent(base string, comps []string, mkdir, followOwn bool) (fd int, dir, name string, err error) {
	bfd, err := openDir(base)
	if err != nil {
		return -1, "", "", err
	}
	defer unix.Close(bfd)
	n := len(comps) - 1
	fd, err = openBelowOpt(bfd, base, comps[:n], mkdir, NoChange, followOwn)
	if err != nil {
		return -1, "", "", err
	}
	return fd, filepath.Join(append([]string{base}, comps[:n]...)...), comps[n], nil
}

// ownLinkAt reports whether name in dirfd is a symlink owned by the
// agent's effective user.
func ownLinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK && int(st.Uid) == os.Geteuid()
}

func isLinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

func (o Owner) fchown(fd int) error {
	if o.UID < 0 && o.GID < 0 {
		return nil
	}
	return unix.Fchownat(fd, "", o.UID, o.GID, unix.AT_EMPTY_PATH)
}

// fchmodPath changes the mode of the inode an O_PATH (or any) descriptor
// refers to: /proc/self/fd/N resolves to that inode, not to a name, so a
// rename or a symlink swapped in after the descriptor was opened changes
// nothing. (fchmod(2) refuses O_PATH descriptors.)
func fchmodPath(fd int, mode fs.FileMode) error {
	err := unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), uint32(mode.Perm()), 0)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("chmod by descriptor needs /proc mounted: %w", err)
	}
	return err
}

// WriteFileBeneath writes data to base/rel the way WriteFileAtomic does
// (temporary file, mode and owner set before any content, fsync, rename),
// without following any symlink below base: missing directories on the way
// are created 0755 (root-owned), a symlink on the way is refused with a
// *LinkError naming it, and the temporary file is created with
// O_EXCL|O_NOFOLLOW. rename(2) replaces whatever has the final name, so a
// symlink planted there is replaced, never written through.
func WriteFileBeneath(base, rel string, data []byte, perm fs.FileMode, owner Owner) error {
	comps, err := splitRel(rel)
	if err != nil {
		return err
	}
	dfd, dir, name, err := openParent(base, comps, true, false)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return writeAt(dfd, dir, name, data, perm, owner)
}

// writeAt is WriteFileBeneath's last step, in the directory dfd.
func writeAt(dfd int, dir, name string, data []byte, perm fs.FileMode, owner Owner) error {
	tmp := "." + name + ".tmp-" + RandSuffix()
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &fs.PathError{Op: "create", Path: filepath.Join(dir, tmp), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, tmp))
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := owner.fchown(fd); err != nil {
		return fmt.Errorf("chown %s: %w", f.Name(), err)
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		return &fs.PathError{Op: "rename", Path: filepath.Join(dir, name), Err: err}
	}
	ok = true
	_ = unix.Fsync(dfd)
	return nil
}

// ReadFileBeneath reads base/rel if it is a regular file reached without
// following any symlink; ok is false when it is missing, a symlink or not a
// regular file.
func ReadFileBeneath(base, rel string) (data []byte, ok bool, err error) {
	comps, err := splitRel(rel)
	if err != nil {
		return nil, false, err
	}
	dfd, _, name, err := openParent(base, comps, false, false)
	if err != nil {
		var le *LinkError
		if errors.As(err, &le) || errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, nil
	}
	f := os.NewFile(uintptr(fd), filepath.Join(base, rel))
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, false, err
	}
	b, err := io.ReadAll(f)
	return b, err == nil, err
}

// removeAllAt removes name in dirfd and everything below it without
// following symlinks: links are unlinked, directories are opened with
// O_NOFOLLOW and emptied through their descriptors. A directory the agent
// owns but may not write (read-only in the artifact) is made writable
// through its descriptor first.
func removeAllAt(dirfd int, dirPath, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return &fs.PathError{Op: "remove", Path: filepath.Join(dirPath, name), Err: err}
	}
	p := filepath.Join(dirPath, name)
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		_ = unix.Close(fd)
		return &fs.PathError{Op: "remove", Path: p, Err: unix.EISDIR}
	}
	if st.Mode&0o700 != 0o700 {
		_ = fchmodPath(fd, 0o700)
	}
	dfd, err := unix.Openat(fd, ".", dirFlags, 0)
	_ = unix.Close(fd)
	if err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	names, err := readNames(dfd, p)
	if err == nil {
		for _, n := range names {
			if err = removeAllAt(dfd, p, n); err != nil {
				break
			}
		}
	}
	_ = unix.Close(dfd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "remove", Path: p, Err: err}
	}
	return nil
}

// readNames lists a directory through a duplicate of dfd (dfd stays open
// and usable).
func readNames(dfd int, p string) ([]string, error) {
	dup, err := unix.Dup(dfd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), p)
	defer f.Close()
	return f.Readdirnames(-1)
}
