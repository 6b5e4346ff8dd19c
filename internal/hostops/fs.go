package hostops

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
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

func (o Owner) apply(p string) error {
	if o.UID < 0 && o.GID < 0 {
		return nil
	}
	return os.Lchown(p, o.UID, o.GID)
}

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
	if err := owner.apply(tmp); err != nil {
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

// within reports whether p is dir or below it (both cleaned, absolute).
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// LinkShared makes releaseDir/rel a symlink to sharedDir/rel, creating the
// shared side if it is missing: an empty directory, or for isFile an empty
// file (seeded from the release's own copy when the artifact carries one,
// so a first deploy starts from the packaged default). Whatever the release
// has at rel is replaced: shared paths are state that must outlive releases.
//
// The link is created under a temporary name and renamed into place, so a
// crash leaves either the old entry or the link. It is safe to call again.
func LinkShared(releaseDir, sharedDir, rel string, isFile bool, owner Owner) error {
	rel = filepath.Clean(filepath.FromSlash(rel))
	if filepath.IsAbs(rel) || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("shared path %q must be relative to the app root, without \"..\" segments", rel)
	}
	target := filepath.Join(sharedDir, rel)
	link := filepath.Join(releaseDir, rel)

	// The parent of the link must stay inside the release even if the
	// artifact has symlinked directories on the way.
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	realRelease, err := filepath.EvalSymlinks(releaseDir)
	if err != nil {
		return err
	}
	realParent, err := filepath.EvalSymlinks(filepath.Dir(link))
	if err != nil {
		return err
	}
	if !within(realRelease, realParent) {
		return fmt.Errorf("shared path %s: its parent directory resolves to %s, outside the release; the artifact must not symlink that directory", rel, realParent)
	}

	if err := ensureShared(target, link, isFile, owner); err != nil {
		return fmt.Errorf("shared path %s: %w", rel, err)
	}
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := link + ".mageflow-link-" + RandSuffix()
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	// A directory cannot be replaced by rename(2); the release is not live
	// yet, so removing it first is safe.
	if fi, err := os.Lstat(link); err == nil && fi.IsDir() {
		if err := os.RemoveAll(link); err != nil {
			_ = os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func ensureShared(target, releaseCopy string, isFile bool, owner Owner) error {
	fi, err := os.Lstat(target)
	if err == nil {
		if fi.Mode()&fs.ModeSymlink != 0 {
			// An operator may point a shared path at another disk; accept it
			// as long as it resolves.
			if _, err := os.Stat(target); err != nil {
				return fmt.Errorf("%s is a dangling symlink: %w", target, err)
			}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if !isFile {
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return owner.apply(target)
	}
	var seed []byte
	if rfi, err := os.Lstat(releaseCopy); err == nil && rfi.Mode().IsRegular() {
		if seed, err = os.ReadFile(releaseCopy); err != nil {
			return err
		}
	}
	return WriteFileAtomic(target, seed, 0o644, owner)
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
	if err := os.RemoveAll(doomed); err != nil {
		// A read-only directory in the artifact stops an unprivileged
		// agent from removing its entries: make directories writable
		// (WalkDir does not follow symlinks) and try once more.
		_ = filepath.WalkDir(doomed, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(q, 0o700)
			}
			return nil
		})
		return os.RemoveAll(doomed)
	}
	return nil
}
