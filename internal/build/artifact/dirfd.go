package artifact

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirStack creates entries below one directory through directory file
// descriptors, one path component at a time, every component opened with
// O_NOFOLLOW|O_DIRECTORY: the kernel refuses to go through a symlink, so
// nothing is ever written outside the root, whatever the names.
//
// Why not os.Root: it walks the whole path for every operation (an openat
// and a close per component), and Extract does four operations per file
// (mkdir, create, chmod, chtimes): on a 60,000-file release that was
// millions of syscalls. Entries come in tree order, so keeping the fds of
// the current directory's ancestors (a stack, bounded by the depth) turns
// that into one openat per new directory and create, write, fchmod,
// utimensat, close per file.
//
// Names given to it must be canonical, local, slash-separated paths
// (checked by the callers).
type dirStack struct {
	names []string // path components of the top directory
	fds   []int    // fds[0] is the root; fds[i+1] is names[:i+1]
}

func openDirStack(root string) (*dirStack, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("artifact: open %s: %w", root, err)
	}
	return &dirStack{fds: []int{fd}}, nil
}

func (s *dirStack) close() {
	for _, fd := range s.fds {
		_ = unix.Close(fd)
	}
	s.fds, s.names = nil, nil
}

// open returns an fd of the directory dir ("." or "" for the root),
// creating missing components (mode 0755) when create is set. The fd
// stays owned by the stack.
func (s *dirStack) open(dir string, create bool) (int, error) {
	var comps []string
	if dir != "" && dir != "." {
		comps = strings.Split(dir, "/")
	}
	common := 0
	for common < len(comps) && common < len(s.names) && comps[common] == s.names[common] {
		common++
	}
	for len(s.names) > common {
		_ = unix.Close(s.fds[len(s.fds)-1])
		s.fds = s.fds[:len(s.fds)-1]
		s.names = s.names[:len(s.names)-1]
	}
	for _, c := range comps[common:] {
		parent := s.fds[len(s.fds)-1]
		const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		// Open first: revisiting a directory (back from a sibling
		// subtree) must not cost a failing mkdir, which takes the
		// parent's lock and, on ext4, a journal handle.
		fd, err := unix.Openat(parent, c, flags, 0)
		if create && errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(parent, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return -1, fmt.Errorf("artifact: create directory %s: %w", dir, err)
			}
			fd, err = unix.Openat(parent, c, flags, 0)
		}
		if err != nil {
			return -1, fmt.Errorf("artifact: open directory %s (component %q is missing, a symlink or not a directory): %w", dir, c, err)
		}
		s.fds = append(s.fds, fd)
		s.names = append(s.names, c)
	}
	return s.fds[len(s.fds)-1], nil
}

// splitName returns the directory and base name of a slash path.
func splitName(name string) (string, string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

// createFile creates the new file name (O_EXCL, never following a link)
// and returns its fd; the caller writes and finishes it.
func (s *dirStack) createFile(name string) (int, error) {
	dir, base := splitName(name)
	dfd, err := s.open(dir, true)
	if err != nil {
		return -1, err
	}
	return unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}

// finishFile sets the mode and mtime of the file open as fd, named name,
// and closes fd.
func (s *dirStack) finishFile(fd int, name string, perm uint32, mtime time.Time) error {
	err := unix.Fchmod(fd, perm)
	if err == nil {
		err = futimens(fd, mtime)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("artifact: finish %s: %w", name, err)
	}
	return nil
}

// symlink creates the symlink name -> target.
func (s *dirStack) symlink(target, name string) error {
	dir, base := splitName(name)
	dfd, err := s.open(dir, true)
	if err != nil {
		return err
	}
	return unix.Symlinkat(target, dfd, base)
}

// setDir sets the mode and mtime of the existing directory name, through
// the directory's own fd (no second walk to its parent).
func (s *dirStack) setDir(name string, perm uint32, mtime time.Time) error {
	fd, err := s.open(name, false)
	if err != nil {
		return err
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		return fmt.Errorf("artifact: chmod %s: %w", name, err)
	}
	if err := futimens(fd, mtime); err != nil {
		return fmt.Errorf("artifact: set mtime of %s: %w", name, err)
	}
	return nil
}

// touchDir sets the mtime of the existing directory name through its
// parent's fd, without following a link and without opening it.
func (s *dirStack) touchDir(name string, mtime time.Time) error {
	dir, base := splitName(name)
	pfd, err := s.open(dir, false)
	if err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("artifact: set mtime of %s: %w", name, err)
	}
	return nil
}

// futimens sets the atime and mtime of the file open as fd: utimensat(2)
// with a NULL path acts on fd itself (x/sys has no wrapper for it, and its
// Futimes goes through /proc/self/fd by name).
func futimens(fd int, mtime time.Time) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// writeAll writes b to fd.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		b = b[n:]
	}
	return nil
}

// copyToFd copies r to fd through buf.
func copyToFd(fd int, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if werr := writeAll(fd, buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
