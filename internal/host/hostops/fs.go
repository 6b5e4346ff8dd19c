package hostops

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RandSuffix returns 16 hex characters for temporary names: unguessable, so
// two agents (or a retry racing a slow first attempt) never pick the same
// temporary path, and a PHP script written to disk cannot be requested by
// guessing its name.
func RandSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on Linux (getrandom)
	return hex.EncodeToString(b[:])
}

// Owner is a uid/gid pair; -1 leaves that id alone (like chown(2)).
type Owner struct{ UID, GID int }

// NoChange leaves ownership as the process creates it.
var NoChange = Owner{-1, -1}

// WriteFileAtomic writes data to p through a temporary file in the same
// directory, fsyncs it and renames it into place: readers (nginx, PHP, the
// next attempt of an activity) see the old content or the new one, never a
// truncated file. The mode and owner are set before the rename, so a secret
// is never visible with looser permissions, not even for an instant.
func WriteFileAtomic(p string, data []byte, perm fs.FileMode, owner Owner) error {
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600: chmod and chown happen before any
	// content is written.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := owner.fchown(int(f.Fd())); err != nil {
		return fmt.Errorf("chown %s: %w", tmp, err)
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
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	ok = true
	SyncDir(dir)
	return nil
}

// SyncDir fsyncs a directory so renames and new entries in it survive a
// power cut. Errors are ignored: some file systems cannot fsync directories,
// and the operation itself already succeeded.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// FreeBytes is the space available to unprivileged users on the file system
// holding p (statfs f_bavail), which is what an extraction can really use.
func FreeBytes(p string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", p, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// LinkShared makes releaseDir/rel a symlink to sharedDir/rel, creating the
// shared side if it is missing: an empty directory, or for isFile an empty
// file (seeded from the release's own copy when the artifact carries one,
// so a first deploy starts from the packaged default). Whatever the release
// has at rel is replaced: shared paths are state that must outlive releases.
//
// Both sides are worked on through directory descriptors without following
// symlinks: a parent of rel that is a symlink (in the release or in
// shared/, unless an operator's root-owned link there) is refused with a
// *LinkError, so the link and the seeded file always land beneath the two
// trees. The link is created under a temporary name and renamed into
// place, so a crash leaves either the old entry or the link. It is safe to
// call again.
func LinkShared(releaseDir, sharedDir, rel string, isFile bool, owner Owner) error {
	comps, err := splitRel(rel)
	if err != nil {
		return fmt.Errorf("shared path %q must be relative to the app root, without \"..\" segments", rel)
	}
	rel = filepath.Join(comps...)
	target := filepath.Join(sharedDir, rel)
	if err := ensureShared(sharedDir, releaseDir, comps, isFile, owner); err != nil {
		return fmt.Errorf("shared path %s: %w", rel, err)
	}
	pfd, parent, name, err := openParent(releaseDir, comps, true, false)
	if err != nil {
		return fmt.Errorf("shared path %s: %w", rel, err)
	}
	defer unix.Close(pfd)
	if cur, err := readlinkAt(pfd, name); err == nil && cur == target {
		return nil
	}
	tmp := name + ".mageflow-link-" + RandSuffix()
	if err := unix.Symlinkat(target, pfd, tmp); err != nil {
		return &fs.PathError{Op: "symlink", Path: filepath.Join(parent, tmp), Err: err}
	}
	// A directory cannot be replaced by rename(2); the release is not live
	// yet, so removing it first is safe.
	var st unix.Stat_t
	if unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := removeAllAt(pfd, parent, name); err != nil {
			_ = unix.Unlinkat(pfd, tmp, 0)
			return err
		}
	}
	if err := unix.Renameat(pfd, tmp, pfd, name); err != nil {
		_ = unix.Unlinkat(pfd, tmp, 0)
		return &fs.PathError{Op: "rename", Path: filepath.Join(parent, name), Err: err}
	}
	return nil
}

func ensureShared(sharedDir, releaseDir string, comps []string, isFile bool, owner Owner) error {
	if err := os.MkdirAll(sharedDir, 0o755); err != nil {
		return err
	}
	pfd, parent, name, err := openParent(sharedDir, comps, true, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	err = unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			// An operator may point a shared path at another disk; accept it
			// as long as it resolves.
			if err := unix.Fstatat(pfd, name, &st, 0); err != nil {
				return fmt.Errorf("%s is a dangling symlink: %w", filepath.Join(parent, name), err)
			}
		}
		return nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "stat", Path: filepath.Join(parent, name), Err: err}
	}
	if !isFile {
		if err := unix.Mkdirat(pfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return &fs.PathError{Op: "mkdir", Path: filepath.Join(parent, name), Err: err}
		}
		fd, err := unix.Openat(pfd, name, dirFlags, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: filepath.Join(parent, name), Err: err}
		}
		defer unix.Close(fd)
		return owner.fchown(fd)
	}
	seed, _, err := ReadFileBeneath(releaseDir, filepath.Join(comps...))
	if err != nil {
		return err
	}
	return writeAt(pfd, parent, name, seed, 0o644, owner)
}

// ReadCurrent returns the release id current points at, "" when there is
// no current link yet.
func ReadCurrent(root, app string) (string, error) {
	t, err := os.Readlink(CurrentLink(root, app))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w (it must be a symlink to releases/<id>; move whatever is there aside)", CurrentLink(root, app), err)
	}
	if !filepath.IsAbs(t) {
		t = filepath.Join(AppDir(root, app), t)
	}
	if filepath.Dir(filepath.Clean(t)) != ReleasesDir(root, app) {
		return "", fmt.Errorf("%s points at %s, which is not a release under %s; point it at releases/<id> by hand or deploy again", CurrentLink(root, app), t, ReleasesDir(root, app))
	}
	return filepath.Base(t), nil
}

// SwitchCurrent points current at releases/<id>: it creates the symlink
// current.tmp-<rand> and renames it over current. rename(2) replaces the
// link atomically, so every path lookup sees the old release or the new one
// and none fails; `ln -sfn` instead unlinks first and leaves a window with
// no current at all. The directory is fsynced so the switch survives a
// crash of the host.
func SwitchCurrent(root, app, id string) error {
	dir := AppDir(root, app)
	tmp := filepath.Join(dir, "current.tmp-"+RandSuffix())
	if err := os.Symlink(filepath.Join("releases", id), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, CurrentLink(root, app)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	SyncDir(dir)
	return nil
}

// Release is one directory under releases/.
type Release struct {
	ID string
	// Complete is true when Prepare finished it (CompleteMarker exists);
	// CompletedAt is the marker's mtime, which orders releases by when
	// they were prepared (directory mtimes come from the artifact).
	Complete    bool
	CompletedAt time.Time
	// ChangedAt is the later of the entry's mtime and ctime. Release
	// directories carry the artifact's normalized mtimes, but rename and
	// chmod set the ctime, so this says when the agent last touched it.
	ChangedAt time.Time
}

func changedAt(info fs.FileInfo) time.Time {
	t := info.ModTime()
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		if c := time.Unix(st.Ctim.Sec, st.Ctim.Nsec); c.After(t) {
			t = c
		}
	}
	return t
}

// ListReleases returns the releases under releasesDir, temporary work
// directories excluded, in directory order.
func ListReleases(releasesDir string) ([]Release, error) { return list(releasesDir, false) }

// ListTemps returns the temporary work entries under releasesDir
// (extractions, deletions) with their ChangedAt.
func ListTemps(releasesDir string) ([]Release, error) { return list(releasesDir, true) }

func list(releasesDir string, temps bool) ([]Release, error) {
	ents, err := os.ReadDir(releasesDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Release
	for _, e := range ents {
		if IsTemp(e.Name()) != temps {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		r := Release{ID: e.Name(), ChangedAt: changedAt(info)}
		if info.IsDir() && !temps {
			if mi, err := os.Lstat(filepath.Join(releasesDir, e.Name(), CompleteMarker)); err == nil && mi.Mode().IsRegular() {
				r.Complete, r.CompletedAt = true, mi.ModTime()
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// RemoveTree deletes releasesDir/name. It first renames the entry to a
// temporary name, so a crash mid-way leaves a .tmp-* directory Prune cleans
// up later instead of a half-deleted release that still looks like one.
// Symlinks are removed, never followed. Returns nil if name does not exist.
func RemoveTree(releasesDir, name string) error {
	p := filepath.Join(releasesDir, name)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	doomed := p
	if !IsTemp(name) {
		doomed = filepath.Join(releasesDir, TmpPrefix+"delete-"+name+"-"+RandSuffix())
		if err := os.Rename(p, doomed); err != nil {
			return err
		}
		SyncDir(releasesDir)
	}
	dfd, err := openDir(releasesDir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	// Descriptor-based and never following a link: a PHP user who owns a
	// writable directory of the release cannot redirect the removal (or
	// the chmod of a read-only directory) outside it by swapping a
	// directory for a symlink mid-way.
	return removeAllAt(dfd, releasesDir, filepath.Base(doomed))
}
