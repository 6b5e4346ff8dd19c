package m1core

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// scopeRoots are the directories walked; mayHold prunes the rest.
var scopeRoots = []string{"app/code/core", "app/design", "app/etc", "lib", "js", "errors", "shell", "skin", "pub"}

// mayHold reports whether directory d (slash-separated, relative) can hold
// an in-scope file, so the walk skips media/, var/, app/code/local, ...
func mayHold(d string) bool {
	for _, r := range scopeRoots {
		if r == d || strings.HasPrefix(r, d+"/") {
			return true
		}
		if rest, ok := strings.CutPrefix(d, r+"/"); ok {
			return insideRoot(r, rest)
		}
	}
	return false
}

// insideRoot reports whether directory rest below scope root r can hold an
// in-scope file.
func insideRoot(r, rest string) bool {
	switch r {
	case "app/design", "skin":
		parts := strings.SplitN(rest, "/", 3)
		return len(parts) == 1 || themePackages[parts[1]]
	case "pub":
		return rest != "media" && !strings.HasPrefix(rest, "media/")
	case "app/etc":
		return rest == "modules" || strings.HasPrefix(rest, "modules/")
	}
	return true
}

// entry is one in-scope file of the store.
type entry struct {
	path    string // slash-separated, relative
	size    int64
	symlink bool // not followed, not hashed
	hash    Hash
	err     error
}

// collect lists the in-scope files under root without following links.
func collect(ctx context.Context, root string) ([]*entry, error) {
	var out []*entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		rel, rerr := filepath.Rel(root, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && !mayHold(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !InScope(rel) {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			out = append(out, &entry{path: rel, symlink: true})
		case d.Type().IsRegular():
			out = append(out, &entry{path: rel})
		}
		return nil
	})
	return out, err
}

// hashAll hashes the regular entries on every core.
func hashAll(ctx context.Context, root string, es []*entry, workers int) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	jobs := make(chan *entry, 256)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for e := range jobs {
				if ctx.Err() != nil {
					e.err = ctx.Err()
					continue
				}
				e.hash, e.size, e.err = hashFile(filepath.Join(root, filepath.FromSlash(e.path)), buf)
			}
		})
	}
	for _, e := range es {
		if e.symlink {
			t, err := os.Readlink(filepath.Join(root, filepath.FromSlash(e.path)))
			e.hash, e.err = symlinkHash(t), err
			continue
		}
		jobs <- e
	}
	close(jobs)
	wg.Wait()
}

// errNotRegular is returned when a path turned into something else than a
// regular file between the walk and the read.
var errNotRegular = errors.New("not a regular file")

// hashFile hashes a regular file, refusing a symlink in the last
// component (O_NOFOLLOW) and anything that is not a regular file.
func hashFile(p string, buf []byte) (Hash, int64, error) {
	f, err := openNoFollow(p)
	if err != nil {
		return Hash{}, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Hash{}, 0, err
	}
	if !st.Mode().IsRegular() {
		return Hash{}, 0, errNotRegular
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return Hash{}, 0, err
	}
	var out Hash
	h.Sum(out[:0])
	return out, st.Size(), nil
}

func openNoFollow(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// readNoFollow reads a whole regular file without following a link.
func readNoFollow(p string, limit int64) ([]byte, error) {
	f, err := openNoFollow(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	return io.ReadAll(io.LimitReader(f, limit))
}
