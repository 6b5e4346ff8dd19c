package hostops

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
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
// Symlinks are chowned themselves, never followed, so shared/ and anything
// outside the release is untouched. Running it again changes nothing.
func ApplyOwnership(releaseDir string, u Users, writable []string) error {
	walk := func(top string, owner Owner, mode func(fs.FileMode, bool) fs.FileMode) error {
		return filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := owner.apply(p); err != nil {
				return fmt.Errorf("chown %s: %w", p, err)
			}
			if d.Type()&fs.ModeSymlink != 0 {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if want := mode(fi.Mode(), d.IsDir()); fi.Mode().Perm() != want {
				if err := os.Chmod(p, want); err != nil {
					return fmt.Errorf("chmod %s: %w", p, err)
				}
			}
			return nil
		})
	}
	if err := walk(releaseDir, u.Deploy, CodeMode); err != nil {
		return err
	}
	for _, w := range writable {
		p := filepath.Join(releaseDir, filepath.Clean(filepath.FromSlash(w)))
		if !within(releaseDir, p) {
			return fmt.Errorf("writable path %q leaves the release", w)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			if os.IsNotExist(err) {
				if err := os.MkdirAll(p, 0o770); err != nil {
					return err
				}
				fi, err = os.Lstat(p)
			}
			if err != nil {
				return err
			}
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			continue // shared: handled by SharedWritable
		}
		if err := walk(p, u.PHP, WritableMode); err != nil {
			return err
		}
	}
	return nil
}

// SharedWritable hands a shared directory to the PHP user. Only the
// directory itself is changed: media folders hold millions of files that
// PHP created and already owns, and walking them on every deploy would make
// deploys slow for no gain.
func SharedWritable(dir string, u Users) error {
	// os.Chown follows a symlink: an operator who put shared/var on
	// another disk wants the real directory handed over.
	if err := os.Chown(dir, u.PHP.UID, u.PHP.GID); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if want := WritableMode(fi.Mode(), fi.IsDir()); fi.Mode().Perm() != want {
		return os.Chmod(dir, want)
	}
	return nil
}
