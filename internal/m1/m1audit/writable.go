package m1audit

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Identity is the user a permission question is asked for, typically the
// PHP-FPM pool's user with its primary and supplementary groups.
type Identity struct {
	UID  int
	GIDs []int
}

func (id Identity) inGroup(gid uint32) bool {
	for _, g := range id.GIDs {
		if g >= 0 && uint32(g) == gid {
			return true
		}
	}
	return false
}

// permBits returns which of the rwx bits (as 4/2/1) apply to id for a file
// with the given owner, group and mode, following POSIX: the owner class
// wins even when the group or other bits grant more, then the group class,
// then other. Root gets everything, except execute which needs at least one
// x bit (irrelevant here: only write and search are asked for).
func permBits(id Identity, uid, gid uint32, mode fs.FileMode) fs.FileMode {
	perm := mode.Perm()
	switch {
	case id.UID == 0:
		return 7
	case id.UID >= 0 && uint32(id.UID) == uid:
		return (perm >> 6) & 7
	case id.inGroup(gid):
		return (perm >> 3) & 7
	default:
		return perm & 7
	}
}

func ownerOf(fi fs.FileInfo) (uid, gid uint32, err error) {
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("%s: no owner information on this platform", fi.Name())
	}
	return sys.Uid, sys.Gid, nil
}

// WritableBy reports whether the user id could open path for writing (for a
// directory: create, rename or delete entries in it), judged from owner,
// group and mode bits as the kernel does for access(2). It follows symbolic
// links, like open does.
//
// It answers for a user other than the caller, which access(2) cannot, so
// the audit can ask about the PHP user while running as root. It does not
// see POSIX ACLs, capabilities, read-only mounts or immutable attributes,
// and it does not check that the parent directories can be traversed
// (WritableTree does); treat a "false" on a host with ACLs as unproven.
func WritableBy(path string, id Identity) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("check writability of %s: %w", path, err)
	}
	uid, gid, err := ownerOf(fi)
	if err != nil {
		return false, err
	}
	return permBits(id, uid, gid, fi.Mode())&2 != 0, nil
}

// Writable is one path under a code tree that the PHP user can change.
type Writable struct {
	// Path is slash-separated, relative to the tree root ("." for the root).
	Path string `json:"path"`
	// Why is "mode" when the mode bits grant write access to the user, or
	// "owner" when they do not but the user owns the path and so can chmod
	// it writable again (why a 0400 file owned by the PHP user still fails).
	Why string `json:"why"`
}

// WritableTree lists every path under root that id can write or owns,
// outside the allowed subtrees (slash-separated, relative to root, e.g.
// "var", "media"). A subtree the user cannot traverse is not descended into,
// since nothing below it is reachable for that user; symbolic links are not
// followed (their targets are checked where they live). Results are sorted.
//
// Magento 1 only needs var/ and media/ writable by PHP; anything else
// writable is a place where a compromised PHP process can persist code.
func WritableTree(ctx context.Context, root string, id Identity, allow []string) ([]Writable, error) {
	allowed := map[string]bool{}
	for _, a := range allow {
		a = strings.Trim(filepath.ToSlash(filepath.Clean(a)), "/")
		if a == "" || a == "." {
			return nil, fmt.Errorf("allow list entry %q would allow the whole tree; list subdirectories such as var and media", a)
		}
		allowed[a] = true
	}
	var out []Writable
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk %s: %w (run the audit as root so every path can be inspected)", p, err)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if allowed[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		uid, gid, err := ownerOf(fi)
		if err != nil {
			return err
		}
		bits := permBits(id, uid, gid, fi.Mode())
		switch {
		case bits&2 != 0:
			out = append(out, Writable{Path: rel, Why: "mode"})
		case id.UID >= 0 && uint32(id.UID) == uid:
			out = append(out, Writable{Path: rel, Why: "owner"})
		}
		if d.IsDir() && bits&1 == 0 {
			return filepath.SkipDir // the user cannot reach anything below
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
