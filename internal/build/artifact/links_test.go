package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/build/artifact/artifacttest"
)

func symlinkHdr(name, target string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}
}

func dirHdr(name string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}
}

// escapeShapes are links whose targets stay inside the release by their
// text but lead out of it once earlier (or later) links are followed.
// Each escapes four levels above the release root to "bait".
var escapeShapes = map[string]struct {
	fill     func(t *testing.T, tw *tar.Writer)
	entry    string // the link Extract must name
	resolved string // where it must say it leads
}{
	// "up" leads back to the root, so going up four more levels from
	// there leaves it although the text only climbs back down the d/d/d.
	"chained through an earlier link": {
		fill: func(t *testing.T, tw *tar.Writer) {
			addHeader(t, tw, dirHdr("d/d/d/"))
			addHeader(t, tw, symlinkHdr("d/d/d/up", "../../.."))
			addHeader(t, tw, symlinkHdr("esc", "d/d/d/up/../../../../bait"))
		},
		entry: "esc", resolved: "../../../../bait",
	},
	// "esc" is harmless when created: a/b/c/d is a directory then. The
	// later link a/b/c/d -> ../../.. changes where it leads.
	"later link changes an earlier one": {
		fill: func(t *testing.T, tw *tar.Writer) {
			addHeader(t, tw, dirHdr("a/b/c/"))
			addHeader(t, tw, symlinkHdr("esc", "a/b/c/d/../../../../bait"))
			addHeader(t, tw, symlinkHdr("a/b/c/d", "../../.."))
		},
		entry: "esc", resolved: "../../../../bait",
	},
}

// deepSandbox makes base/1/2/3/4/release as the destination, with bait
// files four levels up (base/1/bait, where the escape shapes lead) and
// next to it. It
// returns base and the destination.
func deepSandbox(t *testing.T) (string, string) {
	base := t.TempDir()
	parent := filepath.Join(base, "1", "2", "3", "4")
	require.NoError(t, os.MkdirAll(parent, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(base, "1", "bait"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(base, "1", "bait", "secret"), []byte("root only"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(parent, "sibling"), []byte("sibling"), 0o640))
	return base, filepath.Join(parent, "release")
}

func TestExtractRefusesLinksThatResolveOutside(t *testing.T) {
	for name, shape := range escapeShapes {
		t.Run(name, func(t *testing.T) {
			base, dst := deepSandbox(t)
			before := snapshotTree(t, base, dst)
			data := buildArchive(t, func(tw *tar.Writer) {
				addFile(t, tw, ManifestName, "{}")
				shape.fill(t, tw)
				addFile(t, tw, "after", "x")
			})
			err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{})
			require.ErrorIs(t, err, ErrUnsafeEntry)
			require.ErrorContains(t, err, `"`+shape.entry+`"`)
			require.ErrorContains(t, err, shape.resolved)
			require.Equal(t, before, snapshotTree(t, base, dst), "nothing outside the release may change")
			_, serr := os.Lstat(dst)
			require.ErrorIs(t, serr, fs.ErrNotExist, "no release directory may be left")
		})
	}
}

func TestExtractRefusesLinkLoopsAndAbsoluteTargets(t *testing.T) {
	cases := map[string]func(tw *tar.Writer){
		"loop": func(tw *tar.Writer) {
			addHeader(t, tw, symlinkHdr("a", "b"))
			addHeader(t, tw, symlinkHdr("b", "a"))
		},
		"absolute": func(tw *tar.Writer) { addHeader(t, tw, symlinkHdr("x/l", "/etc")) },
		"too long": func(tw *tar.Writer) { addHeader(t, tw, symlinkHdr("l", strings.Repeat("a/", 2100))) },
	}
	for name, fill := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			data := buildArchive(t, func(tw *tar.Writer) { fill(tw) })
			err := Extract(context.Background(), bytes.NewReader(data), filepath.Join(parent, "r"), ExtractOptions{})
			require.ErrorIs(t, err, ErrUnsafeEntry)
			ents, _ := os.ReadDir(parent)
			require.Empty(t, ents)
		})
	}
}

// TestExtractKeepsLinksThatStayInside: resolving must not refuse what
// real releases contain.
func TestExtractKeepsLinksThatStayInside(t *testing.T) {
	data := buildArchive(t, func(tw *tar.Writer) {
		addHeader(t, tw, dirHdr("pub/static/frontend/"))
		addHeader(t, tw, symlinkHdr("pub/static/current", "frontend"))
		addHeader(t, tw, symlinkHdr("vendor/bin/phpunit", "../phpunit/phpunit/phpunit"))
		addHeader(t, tw, symlinkHdr("up", "pub/static/../.."+"/pub"))
		addHeader(t, tw, symlinkHdr("via", "up/static/current/../../.."))
		addHeader(t, tw, symlinkHdr("dangling", "missing/file"))
	})
	dst := filepath.Join(t.TempDir(), "r")
	require.NoError(t, Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{}))
	require.Equal(t, "up/static/current/../../..", readlink(t, filepath.Join(dst, "via")))
}

func readlink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	require.NoError(t, err)
	return s
}

// TestExtractMaxBytes: the exact size the build recorded passes; one byte
// less is refused, and a bomb stops at the limit.
func TestExtractMaxBytes(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, tree{"a": strings.Repeat("abc", 100000), "b/c": "c"}, nil)
	data, res := writeArtifact(t, src, []byte("{}"), Options{})
	require.Greater(t, res.TarSize, res.UncompressedBytes)
	require.NoError(t, Extract(context.Background(), bytes.NewReader(data), filepath.Join(t.TempDir(), "r"), ExtractOptions{MaxBytes: res.TarSize}))

	parent := t.TempDir()
	err := Extract(context.Background(), bytes.NewReader(data), filepath.Join(parent, "r"), ExtractOptions{MaxBytes: res.TarSize - 1})
	require.ErrorIs(t, err, ErrTooLarge)
	ents, _ := os.ReadDir(parent)
	require.Empty(t, ents)

	const unpacked = 512 << 20
	bomb, err := artifacttest.Bomb([]artifacttest.Entry{artifacttest.File(ManifestName, "{}")}, "bomb", unpacked)
	require.NoError(t, err)
	require.Less(t, len(bomb), 32<<10, "a 512 MiB bomb is a few KiB")
	err = Extract(context.Background(), bytes.NewReader(bomb), filepath.Join(parent, "bomb"), ExtractOptions{MaxBytes: 1 << 20})
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, "bomb", "the error names the entry being written")
	ents, _ = os.ReadDir(parent)
	require.Empty(t, ents)
}

// TestWriteRefusesEscapingRepositoryLinks: a commit can hold links that
// lead out of the checkout; the build must not make an artifact of them.
func TestWriteRefusesEscapingRepositoryLinks(t *testing.T) {
	cases := map[string]struct {
		tr         tree
		link, goes string
	}{
		"chained": {tree{"d/d/d/up": "->../../..", "esc": "->d/d/d/up/../../../../etc"}, "esc", "../../../../etc"},
		// "a/x" sorts (and is packaged) before "a/y", which changes
		// where it leads.
		"later link": {tree{"a/x": "->y/../../z", "a/y": "->../a"}, "a/x", "../z"},
		"plain":      {tree{"pub/l": "->../../outside"}, "pub/l", "../outside"},
		"absolute":   {tree{"l": "->/etc/passwd"}, "l", "/etc/passwd"},
		"loop":       {tree{"a": "->b", "b": "->a"}, "a", "more than 40"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			src := filepath.Join(base, "checkout", "src")
			require.NoError(t, os.MkdirAll(src, 0o755))
			writeTree(t, src, c.tr, nil)
			cerr := CheckLinks(src, nil)
			require.ErrorIs(t, cerr, ErrEscapingLink)
			require.ErrorContains(t, cerr, filepath.Join(src, c.link))
			out := filepath.Join(base, "a.tar.zst")
			_, err := WriteFile(context.Background(), out, src, []byte("{}"), Options{})
			require.ErrorIs(t, err, ErrEscapingLink)
			require.ErrorContains(t, err, filepath.Join(src, c.link))
			want := c.goes
			if strings.HasPrefix(want, "..") {
				want = filepath.Join(src, want)
			}
			require.ErrorContains(t, err, want)
			_, serr := os.Lstat(out)
			require.ErrorIs(t, serr, fs.ErrNotExist, "no artifact may be made")
			ents, _ := os.ReadDir(base)
			require.Len(t, ents, 1, "no temporary artifact may be left")
		})
	}

	// An excluded link is not packaged, so it does not matter.
	src := t.TempDir()
	writeTree(t, src, tree{"var": "->/var/lib/shop", "pub/x": "->../var/x"}, nil)
	_, err := Write(context.Background(), io.Discard, src, []byte("{}"), Options{Exclude: []string{"var"}})
	require.NoError(t, err)
	require.NoError(t, CheckLinks(src, []string{"var"}))
	require.ErrorIs(t, CheckLinks(src, nil), ErrEscapingLink)
}

// snapshot is what must not change about one path outside a release.
type snapshot struct {
	Mode     fs.FileMode
	Size     int64
	ModTime  int64
	UID, GID uint32
	Content  string // file content or link target
}

// snapshotTree records every path under base except dst and what is
// under it, by path relative to base. The mtime of dst's parent is left
// out: creating and removing the extraction's temporary directory in it
// changes it, and new or removed entries show up by name anyway.
func snapshotTree(t testing.TB, base, dst string) map[string]snapshot {
	t.Helper()
	out := map[string]snapshot{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dst {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		s := snapshot{Mode: fi.Mode(), Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			s.UID, s.GID = st.Uid, st.Gid
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			s.Content, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			s.Content = string(b)
		case p == filepath.Dir(dst):
			s.ModTime, s.Size = 0, 0
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		out[rel] = s
		return nil
	})
	require.NoError(t, err)
	return out
}
