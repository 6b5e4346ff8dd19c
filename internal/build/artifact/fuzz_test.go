package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/build/artifact/artifacttest"
)

// fuzzSpec turns the fuzzer's text into archive entries, one a line:
// "<type>|<name>|<link target>|<content>[|<octal mode>]", type f (file),
// d (directory), l (symlink), h (hard link) or any other byte as a raw
// tar type flag.
func fuzzSpec(spec string) []artifacttest.Entry {
	var out []artifacttest.Entry
	for line := range strings.SplitSeq(spec, "\n") {
		if line == "" || len(out) == 64 {
			continue
		}
		parts := strings.SplitN(line, "|", 5)
		for len(parts) < 4 {
			parts = append(parts, "")
		}
		e := artifacttest.Entry{Name: parts[1], Linkname: parts[2], Content: parts[3]}
		switch parts[0] {
		case "f":
			e.Type = tar.TypeReg
		case "d":
			e.Type = tar.TypeDir
		case "l":
			e.Type = tar.TypeSymlink
		case "h":
			e.Type = tar.TypeLink
		case "":
			e.Type = tar.TypeReg
		default:
			e.Type = parts[0][0]
		}
		if len(parts) == 5 {
			if m, err := strconv.ParseInt(parts[4], 8, 64); err == nil {
				e.Mode = m
			}
		}
		out = append(out, e)
	}
	return out
}

// fuzzSandbox is base/1/2/3/4/release as the destination with bait around
// it: next to it, in its parent's parents and four levels up (base/1/bait,
// where the escape seeds lead). It returns base and the destination.
func fuzzSandbox(t *testing.T) (string, string) {
	base := t.TempDir()
	parent := filepath.Join(base, "1", "2", "3", "4")
	for _, d := range []string{parent, filepath.Join(base, "1", "bait"), filepath.Join(parent, "sibdir"), filepath.Join(base, "1", "2", "baitdir")} {
		require.NoError(t, os.MkdirAll(d, 0o750))
	}
	for p, mode := range map[string]fs.FileMode{
		"1/bait/secret": 0o600, "1/2/3/4/sibling": 0o640, "1/2/3/4/sibdir/x": 0o644, "1/2/baitdir/y": 0o400, "1/2/3/file": 0o600,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(base, p), []byte(p), mode))
	}
	require.NoError(t, os.Symlink("sibdir", filepath.Join(parent, "sibling-link")))
	return base, filepath.Join(parent, "release")
}

// FuzzExtract: whatever the archive, nothing outside the destination is
// created, changed, chmodded or chowned, a refused archive leaves nothing
// behind, and every link of an extracted tree resolves (on the real file
// system) inside it.
func FuzzExtract(f *testing.F) {
	for _, seed := range []string{
		"d|d/d/d/||\nl|d/d/d/up|../../..|\nl|esc|d/d/d/up/../../../../bait|\nf|esc/secret||owned",
		"d|a/b/c/||\nl|esc|a/b/c/d/../../../../bait|\nl|a/b/c/d|../../..|\nf|after||x",
		"f|release.json||{}\nd|pub/static/frontend/||\nl|pub/static/current|frontend|\nf|bin/magento||#!php|755",
		"l|s|.|\nl|s/x|../evil|",
		"l|a|b|\nl|b|a|",
		"l|x|../sibling|\nf|x||over",
		"l|l|../sibdir|\nf|l/x||through",
		"d|x/||\nl|x/y|../x|\nl|e|x/y/y/y/../../../..|",
		"f|f||x\nh|h|f|",
		"f|/abs||x\nf|../up||x\nf|a/../../b||x",
		"l|abs|/etc|",
		"d|ro/||\nf|ro/f||x|4755\nd|ro/||\x00|500",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		data, err := artifacttest.TarZst(fuzzSpec(spec))
		if err != nil {
			return // not representable in tar
		}
		base, dst := fuzzSandbox(t)
		before := snapshotTree(t, base, dst)
		xerr := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{MaxBytes: 1 << 20})
		require.Equal(t, before, snapshotTree(t, base, dst), "extraction changed something outside the destination (err %v)", xerr)
		if xerr != nil {
			_, err := os.Lstat(dst)
			require.ErrorIs(t, err, fs.ErrNotExist, "a refused archive left %s behind: %v", dst, xerr)
			return
		}
		require.NoError(t, filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return err
			}
			to, rerr := resolveOnDisk(p)
			require.NoError(t, rerr, "link %s", p)
			require.True(t, to == dst || strings.HasPrefix(to, dst+"/"), "link %s resolves to %s, outside %s", p, to, dst)
			return nil
		}))
		// The destination must be deletable by its owner.
		require.NoError(t, chmodTreeWritable(dst))
	})
}

// resolveOnDisk follows the absolute path p on the real file system one
// component at a time, like the kernel, with missing components taken as
// directories, and returns where it leads.
func resolveOnDisk(p string) (string, error) {
	cur := "/"
	todo := pushComponents(nil, strings.TrimPrefix(p, "/"))
	for hops := 0; len(todo) > 0; {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", errors.New("too many links")
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		todo = pushComponents(todo, target)
	}
	return cur, nil
}

// chmodTreeWritable lets t.TempDir's cleanup remove directories the
// archive made read-only.
func chmodTreeWritable(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	})
}
