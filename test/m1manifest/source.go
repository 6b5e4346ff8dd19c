package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mageflow/mageflow/internal/m1/m1core"
)

// readDir hashes the in-scope regular files of a release tree and records
// its links by target, without following them.
func readDir(root string) ([]m1core.File, error) {
	var out []m1core.File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !m1core.InScope(rel) || !(d.Type().IsRegular() || d.Type()&fs.ModeSymlink != 0) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, m1core.NewSymlink(rel, t))
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, m1core.NewFile(rel, b))
		return nil
	})
	return out, err
}

// gitBlob is one in-scope file (or link) of a tag.
type gitBlob struct {
	sha, path string
	link      bool
}

// readGit hashes the in-scope files of tag in repo without a work tree
// (git ls-tree, git cat-file --batch), so a mirror whose largest blobs are
// absent still yields every other file; absent blobs are reported.
func readGit(repo, tag string) ([]m1core.File, error) {
	ls, err := exec.Command("git", "-C", repo, "ls-tree", "-r", "-z", tag).Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-tree %s: %w", tag, err)
	}
	var blobs []gitBlob
	for rec := range strings.SplitSeq(strings.TrimSuffix(string(ls), "\x00"), "\x00") {
		meta, path, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 || f[1] != "blob" || !m1core.InScope(path) {
			continue
		}
		blobs = append(blobs, gitBlob{f[2], path, f[0] == "120000"})
	}
	cmd := exec.Command("git", "-C", repo, "cat-file", "--batch")
	var in bytes.Buffer
	for _, b := range blobs {
		in.WriteString(b.sha + "\n")
	}
	cmd.Stdin = &in
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	out, missing, rerr := readBatch(bufio.NewReaderSize(stdout, 1<<20), blobs)
	if werr := cmd.Wait(); rerr == nil && werr != nil {
		rerr = werr
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d blobs absent from the mirror, recorded as content unknown: %s\n", tag, len(missing), strings.Join(missing, ", "))
	}
	return out, rerr
}

func readBatch(r *bufio.Reader, blobs []gitBlob) ([]m1core.File, []string, error) {
	var out []m1core.File
	var missing []string
	for _, b := range blobs {
		hdr, err := r.ReadString('\n')
		if err != nil {
			return nil, nil, fmt.Errorf("git cat-file: %w", err)
		}
		f := strings.Fields(hdr)
		if len(f) == 2 && f[1] == "missing" {
			missing = append(missing, b.path)
			out = append(out, m1core.NewUnknown(b.path))
			continue
		}
		if len(f) != 3 || f[0] != b.sha {
			return nil, nil, fmt.Errorf("git cat-file: unexpected header %q", hdr)
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, nil, fmt.Errorf("git cat-file: %q: %w", hdr, err)
		}
		buf := make([]byte, n+1) // content and its trailing newline
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, nil, fmt.Errorf("git cat-file %s: %w", b.path, err)
		}
		if b.link {
			out = append(out, m1core.NewSymlink(b.path, string(buf[:n])))
			continue
		}
		out = append(out, m1core.NewFile(b.path, buf[:n]))
	}
	return out, missing, nil
}
