package gitmeta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Export writes the tree of commit hash into dst as a clean checkout: no
// .git, executable bits and symlinks as committed, every file and directory
// stamped with the commit time (as `git archive` does) so that builds of the
// same commit are byte-for-byte reproducible. Submodules become empty
// directories, again like `git archive`.
//
// It writes into a temporary directory next to dst and renames it into
// place, so a crash never leaves a half-exported tree at dst; an existing
// dst is replaced.
func (r *Repo) Export(ctx context.Context, hash, dst string) error {
	if !plumbing.IsHash(hash) {
		return fmt.Errorf("export needs a full 40-hex commit id, got %q", hash)
	}
	dst = filepath.Clean(dst)
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".export-")
	if err != nil {
		return fmt.Errorf("create export directory next to %s: %w", dst, err)
	}
	defer os.RemoveAll(tmp)

	r.gitMu.Lock()
	err = r.exportTree(ctx, plumbing.NewHash(hash), tmp)
	r.gitMu.Unlock()
	if err != nil {
		return fmt.Errorf("export %s: %w", hash, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		return err
	}
	old := ""
	if _, err := os.Lstat(dst); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dst, old); err != nil {
			return fmt.Errorf("move previous export %s aside: %w", dst, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("move export into %s: %w", dst, err)
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

func (r *Repo) exportTree(ctx context.Context, hash plumbing.Hash, root string) error {
	c, err := r.git.CommitObject(hash)
	if err != nil {
		return fmt.Errorf("%w: commit %s is not in the mirror: %w", ErrUnknownRef, hash, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	mtime := c.Committer.When
	var dirs []string
	if err := r.writeTree(ctx, tree, root, mtime, &dirs); err != nil {
		return err
	}
	// Directory times last: writing entries changes them.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i], mtime, mtime); err != nil {
			return err
		}
	}
	return os.Chtimes(root, mtime, mtime)
}

// writeTree creates each entry itself (never MkdirAll through existing
// paths) and rejects names that could escape dir, so a crafted tree cannot
// write outside the export through "..", a ".git" entry or a symlink.
func (r *Repo) writeTree(ctx context.Context, tree *object.Tree, dir string, mtime time.Time, dirs *[]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, e := range tree.Entries {
		if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") || strings.EqualFold(e.Name, ".git") {
			return fmt.Errorf("tree %s has unsafe entry name %q", tree.Hash, e.Name)
		}
		path := filepath.Join(dir, e.Name)
		switch e.Mode {
		case filemode.Dir:
			sub, err := r.git.TreeObject(e.Hash)
			if err != nil {
				return err
			}
			if err := os.Mkdir(path, 0o755); err != nil {
				return err
			}
			*dirs = append(*dirs, path)
			if err := r.writeTree(ctx, sub, path, mtime, dirs); err != nil {
				return err
			}
		case filemode.Submodule:
			if err := os.Mkdir(path, 0o755); err != nil {
				return err
			}
			*dirs = append(*dirs, path)
		case filemode.Symlink:
			target, err := r.blobBytes(e.Hash)
			if err != nil {
				return err
			}
			if err := os.Symlink(string(target), path); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			perm := os.FileMode(0o644)
			if e.Mode == filemode.Executable {
				perm = 0o755
			}
			if err := r.writeBlob(e.Hash, path, perm); err != nil {
				return err
			}
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tree %s: entry %q has unsupported mode %s", tree.Hash, e.Name, e.Mode)
		}
	}
	return nil
}

func (r *Repo) writeBlob(h plumbing.Hash, path string, perm os.FileMode) error {
	b, err := r.git.BlobObject(h)
	if err != nil {
		return err
	}
	rd, err := b.Reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rd); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, perm) // the umask must not change what we ship
}

func (r *Repo) blobBytes(h plumbing.Hash) ([]byte, error) {
	b, err := r.git.BlobObject(h)
	if err != nil {
		return nil, err
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

// FileHash returns the sha256 (hex) of the file at path in the tree of
// commit hash, or "" when the commit has no such file. Builds record it for
// composer.lock and package-lock.json so that dependency changes show up in
// the release meta.
func (r *Repo) FileHash(hash, path string) (string, error) {
	if !plumbing.IsHash(hash) {
		return "", fmt.Errorf("file hash needs a full 40-hex commit id, got %q", hash)
	}
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	c, err := r.git.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return "", fmt.Errorf("%w: commit %s is not in the mirror: %w", ErrUnknownRef, hash, err)
	}
	f, err := c.File(strings.TrimPrefix(filepath.ToSlash(path), "/"))
	if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s at %s: %w", path, hash, err)
	}
	rd, err := f.Reader()
	if err != nil {
		return "", err
	}
	defer rd.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, rd); err != nil {
		return "", err
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}
