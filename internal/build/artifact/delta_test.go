package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

// deltaTree is a small release: nested directories, modes, links, an
// empty file and a 13 MiB incompressible file that spans four frames.
func deltaTree(t testing.TB, bigSize int) (tree, map[string]fs.FileMode) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	big := make([]byte, bigSize)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	tr := tree{
		"index.php":                               "<?php require 'app/bootstrap.php';\n",
		"bin/magento":                             "#!/usr/bin/env php\n<?php\n",
		"app/etc/config.php":                      "<?php return ['modules' => []];\n",
		"app/design/frontend/x/template.phtml":    "<div>v1</div>\n",
		"vendor/acme/lib/src/A.php":               "<?php class A {}\n",
		"vendor/acme/lib/src/B.php":               "<?php class B {}\n",
		"vendor/acme/lib/src/Gone.php":            "<?php class Gone {}\n",
		"vendor/other/pkg/C.php":                  "<?php class C {}\n",
		"pub/static/frontend/x.css":               "body{color:red}\n",
		"pub/static/current":                      "->frontend",
		"pub/static/frontend/big.bin":             string(big),
		"generated/empty/":                        "",
		"empty.txt":                               "",
		"app/design/frontend/x/templates/a.phtml": "<p>a</p>\n",
	}
	return tr, map[string]fs.FileMode{"bin/magento": 0o755, "app/etc/config.php": 0o640}
}

type deltaFixture struct {
	dir        string // holds base/, the artifacts' trees and bait/
	base       string
	a1, a2     []byte
	r1, r2     Result
	baseBefore map[string]snapshot
}

// newDeltaFixture extracts v1 as the base release and writes v2: one
// template changed, one file added, one removed, one mode changed, a
// link retargeted.
func newDeltaFixture(t testing.TB) *deltaFixture {
	return newDeltaFixtureSized(t, 3*frameSize+frameSize/4)
}

func newDeltaFixtureSized(t testing.TB, bigSize int) *deltaFixture {
	t.Helper()
	fx := &deltaFixture{dir: t.TempDir()}
	tr, modes := deltaTree(t, bigSize)
	src1 := filepath.Join(fx.dir, "src1")
	writeTree(t, src1, tr, modes)
	fx.a1, fx.r1 = writeArtifact(t, src1, []byte(`{"id":"1"}`), Options{ModTime: commitTime})
	tr["app/design/frontend/x/template.phtml"] = "<div>v2, changed</div>\n"
	tr["vendor/acme/lib/src/New.php"] = "<?php class New {}\n"
	delete(tr, "vendor/acme/lib/src/Gone.php")
	tr["pub/static/current"] = "->frontend/x.css"
	modes["vendor/acme/lib/src/A.php"] = 0o600
	src2 := filepath.Join(fx.dir, "src2")
	writeTree(t, src2, tr, modes)
	fx.a2, fx.r2 = writeArtifact(t, src2, []byte(`{"id":"2"}`), Options{ModTime: commitTime.Add(3600e9)})

	require.NoError(t, os.MkdirAll(filepath.Join(fx.dir, "releases"), 0o755))
	fx.base = filepath.Join(fx.dir, "releases", "1")
	require.NoError(t, Extract(context.Background(), bytes.NewReader(fx.a1), fx.base, ExtractOptions{MaxBytes: fx.r1.TarSize}))
	fx.baseBefore = snapshotTree(t, fx.base, "")
	return fx
}

func (fx *deltaFixture) apply(art []byte, indexSHA string) (string, DeltaStats, error) {
	dst := filepath.Join(fx.dir, "releases", "2")
	st, err := ApplyDelta(context.Background(), DeltaOptions{
		Base: fx.base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(art)}, Size: int64(len(art)), IndexSHA256: indexSHA,
	})
	return dst, st, err
}

// contentView is a tree as a release user sees it: type, mode, content;
// not mtimes (linked files keep the base's) nor owners.
func contentView(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, p)
		v := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			v += " " + sha256Hex(b) // mtime: a linked file keeps its base inode's
		case fi.IsDir() && rel != ".":
			v += " " + fi.ModTime().UTC().String()
		}
		out[rel] = v
		return nil
	}))
	return out
}

func TestApplyDeltaMatchesFullExtract(t *testing.T) {
	fx := newDeltaFixture(t)
	dst, st, err := fx.apply(fx.a2, fx.r2.IndexSHA256)
	require.NoError(t, err)
	full := filepath.Join(fx.dir, "full")
	require.NoError(t, Extract(context.Background(), bytes.NewReader(fx.a2), full, ExtractOptions{MaxBytes: fx.r2.TarSize}))
	require.Equal(t, contentView(t, full), contentView(t, dst))

	// release.json, the changed template and the new file come from the
	// artifact; A.php (mode changed) is copied; the rest is linked.
	require.Equal(t, 3, st.FilesWritten, "%+v", st)
	require.Equal(t, 1, st.FilesCopied, "%+v", st)
	require.Equal(t, 9, st.FilesLinked, "%+v", st)
	// release.json has a frame of its own; the other changes sit in the
	// frames before and after the big file: its two middle frames are
	// not fetched.
	require.Equal(t, 3, st.FramesFetched, "%+v", st)
	require.Less(t, st.BytesFetched, int64(len(fx.a2))/2, "%+v", st)

	// The older release is untouched: content, modes, mtimes, owners.
	require.Equal(t, fx.baseBefore, snapshotTree(t, fx.base, ""))
	// Linked files share the base inode; the copied one does not.
	requireSameInode(t, true, filepath.Join(fx.base, "pub/static/frontend/big.bin"), filepath.Join(dst, "pub/static/frontend/big.bin"))
	requireSameInode(t, false, filepath.Join(fx.base, "vendor/acme/lib/src/A.php"), filepath.Join(dst, "vendor/acme/lib/src/A.php"))
	requireLinksInside(t, dst, fx.base)

	// The new release is itself a base for the next delta.
	b, err := os.ReadFile(filepath.Join(dst, IndexName))
	require.NoError(t, err)
	require.Equal(t, fx.r2.IndexSHA256, sha256Hex(b))
}

func requireSameInode(t *testing.T, same bool, a, b string) {
	t.Helper()
	fa, err := os.Stat(a)
	require.NoError(t, err)
	fb, err := os.Stat(b)
	require.NoError(t, err)
	require.Equal(t, same, os.SameFile(fa, fb), "%s and %s", a, b)
}

// requireLinksInside: every file of dst with more than one link shares
// its inode with a file of base (the only place ApplyDelta links from).
func requireLinksInside(t *testing.T, dst, base string) {
	t.Helper()
	inBase := map[uint64]bool{}
	require.NoError(t, filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if fi, _ := os.Lstat(p); fi != nil && fi.Mode().IsRegular() {
			inBase[fi.Sys().(*syscall.Stat_t).Ino] = true
		}
		return err
	}))
	require.NoError(t, filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		fi, _ := os.Lstat(p)
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().IsRegular() && st.Nlink > 1 {
			require.True(t, inBase[st.Ino], "%s is hard-linked to an inode outside the base release", p)
		}
		return err
	}))
}

// rewriteIndex returns art with its index replaced by the output of
// mutate (the data frames untouched), and the new index's sha256: what
// an attacker who can also rewrite the release meta would serve.
func rewriteIndex(t testing.TB, art []byte, mutate func([]byte) []byte) ([]byte, string) {
	t.Helper()
	off, _, err := parseTrailer(art[len(art)-trailerSize:], int64(len(art)))
	require.NoError(t, err)
	comp := art[off : len(art)-trailerSize]
	raw, err := indexMember(comp)
	require.NoError(t, err)
	raw = mutate(raw)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: IndexName, Mode: 0o644, Size: int64(len(raw))}))
	_, err = tw.Write(raw)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	frame := enc.EncodeAll(tb.Bytes(), nil)
	out := append(append([]byte{}, art[:off]...), frame...)
	out = appendTrailer(out, off, int64(len(frame)))
	return out, sha256Hex(raw)
}

func mutateIndex(t testing.TB, f func(ix *Index)) func([]byte) []byte {
	return func(raw []byte) []byte {
		ix, err := decodeIndex(raw)
		require.NoError(t, err)
		f(ix)
		b, err := ix.Marshal()
		require.NoError(t, err)
		return b
	}
}

func entryOf(ix *Index, p string) *IndexEntry {
	for i := range ix.Entries {
		if ix.Entries[i].Path == p {
			return &ix.Entries[i]
		}
	}
	panic("no entry " + p)
}

// requireFallback: the error says "do a full prepare" with a reason, and
// nothing was installed.
func requireFallback(t *testing.T, fx *deltaFixture, dst string, err error, reason string) {
	t.Helper()
	require.ErrorIs(t, err, ErrDeltaFallback)
	var fe *FallbackError
	require.True(t, errors.As(err, &fe))
	require.Contains(t, fe.Reason, reason)
	_, serr := os.Lstat(dst)
	require.ErrorIs(t, serr, fs.ErrNotExist, "a failed delta left %s behind", dst)
	entries, _ := os.ReadDir(filepath.Dir(dst))
	require.Len(t, entries, 1, "temporary directories left next to the release")
	require.Equal(t, fx.baseBefore, snapshotTree(t, fx.base, ""))
}

const evil = "<?php system($_GET['c']);\n"

func TestApplyDeltaTamperedIndex(t *testing.T) {
	template := "app/design/frontend/x/template.phtml"
	for name, tc := range map[string]struct {
		mutate func(*Index)
		digest func(real, tampered string) string
		reason string
	}{
		"index swapped, meta digest kept": {
			mutate: func(ix *Index) { entryOf(ix, template).Mode = 0o777 },
			digest: func(real, _ string) string { return real },
			reason: "the release records",
		},
		"entry hash replaced by the hash of other bytes": {
			mutate: func(ix *Index) { entryOf(ix, template).SHA256 = sha256Hex([]byte(evil)) },
			reason: "has sha256",
		},
		"entry pointed at another file's bytes": {
			mutate: func(ix *Index) {
				e, other := entryOf(ix, template), entryOf(ix, "vendor/acme/lib/src/New.php")
				e.Frame, e.FrameEnd, e.FrameOff = other.Frame, other.FrameEnd, other.FrameOff
			},
			reason: "has sha256",
		},
		"unchanged file claimed changed and pointed into the big file": {
			mutate: func(ix *Index) {
				e, big := entryOf(ix, "index.php"), entryOf(ix, "pub/static/frontend/big.bin")
				e.SHA256 = sha256Hex([]byte("x"))
				e.Frame, e.FrameEnd, e.FrameOff = big.Frame, big.Frame, big.FrameOff
			},
			reason: "has sha256",
		},
	} {
		t.Run(name, func(t *testing.T) {
			fx := newDeltaFixture(t)
			art, sum := rewriteIndex(t, fx.a2, mutateIndex(t, tc.mutate))
			if tc.digest != nil {
				sum = tc.digest(fx.r2.IndexSHA256, sum)
			}
			dst, _, err := fx.apply(art, sum)
			requireFallback(t, fx, dst, err, tc.reason)
		})
	}
}

func TestApplyDeltaTamperedFrame(t *testing.T) {
	fx := newDeltaFixture(t)
	ix, _, _, err := fetchIndex(context.Background(), ReaderAtRange{bytes.NewReader(fx.a2)}, int64(len(fx.a2)), fx.r2.IndexSHA256)
	require.NoError(t, err)
	e := entryOf(ix, "app/design/frontend/x/template.phtml")
	fr := ix.Frames[e.Frame]
	for _, at := range []int64{fr.Off + fr.Len/2, fr.Off + fr.Len - 2} {
		art := bytes.Clone(fx.a2)
		art[at] ^= 0x40
		dst, _, err := fx.apply(art, fx.r2.IndexSHA256)
		requireFallback(t, fx, dst, err, "frame")
		require.ErrorIs(t, err, ErrChecksumMismatch)
	}
}

// editInPlace rewrites the base's C.php in place with content of the same
// size and puts its mtime back: same inode, same size, same mtime, so
// only the content (or the ctime) tells.
func editInPlace(t *testing.T, fx *deltaFixture) {
	t.Helper()
	p := filepath.Join(fx.base, "vendor/other/pkg/C.php")
	fi, err := os.Stat(p)
	require.NoError(t, err)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("<?php class X {}\n"), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
	fx.baseBefore = snapshotTree(t, fx.base, "")
}

func TestApplyDeltaBaseFileEditedInPlace(t *testing.T) {
	fx := newDeltaFixture(t)
	editInPlace(t, fx)
	dst, _, err := fx.apply(fx.a2, fx.r2.IndexSHA256)
	requireFallback(t, fx, dst, err, "vendor/other/pkg/C.php no longer matches")
}

// A base file or directory replaced by a link to bait outside the
// release (with the very content the index expects) is never followed:
// nothing is linked to the bait and the delta falls back.
func TestApplyDeltaBaseSymlinkNotFollowed(t *testing.T) {
	for name, target := range map[string]string{"file": "vendor/other/pkg/C.php", "directory": "vendor/other/pkg"} {
		t.Run(name, func(t *testing.T) {
			fx := newDeltaFixture(t)
			bait := filepath.Join(fx.dir, "bait")
			require.NoError(t, os.Rename(filepath.Join(fx.base, target), bait))
			require.NoError(t, os.Symlink(bait, filepath.Join(fx.base, target)))
			fx.baseBefore = snapshotTree(t, fx.base, "")
			baitBefore := snapshotTree(t, bait, "")
			dst, _, err := fx.apply(fx.a2, fx.r2.IndexSHA256)
			requireFallback(t, fx, dst, err, "vendor/other/pkg/C.php")
			require.Equal(t, baitBefore, snapshotTree(t, bait, ""))
			require.NoError(t, filepath.WalkDir(bait, func(p string, d fs.DirEntry, err error) error {
				fi, _ := os.Lstat(p)
				if fi.Mode().IsRegular() {
					require.EqualValues(t, 1, fi.Sys().(*syscall.Stat_t).Nlink, "%s was hard-linked", p)
				}
				return err
			}))
		})
	}
}

func TestApplyDeltaFallbacks(t *testing.T) {
	fx := newDeltaFixture(t)
	dst, _, err := fx.apply(fx.a2, "")
	requireFallback(t, fx, dst, err, "no index digest")

	// An artifact from before the index: no trailer.
	old := fx.a2[:len(fx.a2)-trailerSize]
	dst, _, err = fx.apply(old, fx.r2.IndexSHA256)
	requireFallback(t, fx, dst, err, "trailer")

	require.NoError(t, os.Remove(filepath.Join(fx.base, IndexName)))
	fx.baseBefore = snapshotTree(t, fx.base, "")
	dst, _, err = fx.apply(fx.a2, fx.r2.IndexSHA256)
	requireFallback(t, fx, dst, err, "has no index")

	require.NoError(t, os.WriteFile(filepath.Join(fx.base, IndexName), []byte(`{"version":1,"entries":[{"path":"../x","type":"dir"}]}`), 0o644))
	fx.baseBefore = snapshotTree(t, fx.base, "")
	dst, _, err = fx.apply(fx.a2, fx.r2.IndexSHA256)
	requireFallback(t, fx, dst, err, "not valid")

}

// The trailer is a skippable frame: zstd and GNU tar read the artifact
// as before, and the index lands in the release.
func TestIndexKeepsArtifactPlainTarZst(t *testing.T) {
	fx := newDeltaFixture(t)
	d, err := zstd.NewReader(bytes.NewReader(fx.a2))
	require.NoError(t, err)
	n, err := d.WriteTo(&bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, fx.r2.TarSize, n)
	d.Close()
	b, err := os.ReadFile(filepath.Join(fx.base, IndexName))
	require.NoError(t, err)
	require.Equal(t, fx.r1.IndexSHA256, sha256Hex(b))
	ix, err := ParseIndex(b)
	require.NoError(t, err)
	for _, e := range ix.Entries {
		if e.Type == TypeFile {
			c, err := os.ReadFile(filepath.Join(fx.base, e.Path))
			require.NoError(t, err)
			require.Equal(t, e.SHA256, sha256Hex(c), e.Path)
		}
	}
	require.Equal(t, 4, entryOf(ix, "pub/static/frontend/big.bin").FrameEnd-entryOf(ix, "pub/static/frontend/big.bin").Frame+1)
}

// FuzzApplyDeltaIndex: whatever index an attacker who can also rewrite
// the release meta serves, nothing outside the new release changes (the
// base release and a bait file next to it included), nothing is
// hard-linked to the bait, and a release that appears holds only files
// whose content matches the index and links that resolve inside it.
func FuzzApplyDeltaIndex(f *testing.F) {
	fx := newDeltaFixtureSized(f, 2048)
	valid, err := indexMember(fx.a2[mustTrailer(f, fx.a2) : len(fx.a2)-trailerSize])
	require.NoError(f, err)
	f.Add(valid)
	for _, r := range []struct{ from, to string }{
		{`"index.php"`, `"../bait/secret"`},
		{`"index.php"`, `"../../bait/secret"`},
		{`"frontend/x.css"`, `"../../../../bait/secret"`},
		{`"frontend/x.css"`, `"/etc"`},
		{`"pub/static/current"`, `"pub/static/frontend/x.css/y"`},
		{`"vendor/acme/lib/src/B.php"`, `"pub/static/current/B.php"`},
		{`"vendor/acme/lib/src/B.php"`, `"vendor/acme/lib/src/A.php"`},
		{`"types":"f`, `"types":"l`},
		{`"frame_off":[512`, `"frame_off":[99999999`},
	} {
		require.True(f, bytes.Contains(valid, []byte(r.from)), "seed %s does not apply", r.from)
		f.Add(bytes.Replace(valid, []byte(r.from), []byte(r.to), 1))
	}
	f.Fuzz(func(t *testing.T, index []byte) {
		art, sum := rewriteIndex(t, fx.a2, func([]byte) []byte { return index })
		sb := t.TempDir()
		base := filepath.Join(sb, "releases", "1")
		require.NoError(t, os.MkdirAll(filepath.Join(sb, "bait"), 0o755))
		require.NoError(t, os.MkdirAll(filepath.Join(sb, "releases"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(sb, "bait", "secret"), []byte("<?php class B {}\n"), 0o600))
		require.NoError(t, Extract(context.Background(), bytes.NewReader(fx.a1), base, ExtractOptions{}))
		dst := filepath.Join(sb, "releases", "2")
		before := snapshotTree(t, sb, dst)
		_, derr := ApplyDelta(context.Background(), DeltaOptions{Base: base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(art)}, Size: int64(len(art)), IndexSHA256: sum})
		require.Equal(t, before, snapshotTree(t, sb, dst), "the delta changed something outside the new release (err %v)", derr)
		fi, err := os.Stat(filepath.Join(sb, "bait", "secret"))
		require.NoError(t, err)
		require.EqualValues(t, 1, fi.Sys().(*syscall.Stat_t).Nlink, "the bait was hard-linked")
		if derr != nil {
			_, err := os.Lstat(dst)
			require.ErrorIs(t, err, fs.ErrNotExist, "a refused delta left %s behind: %v", dst, derr)
			return
		}
		requireMatchesIndex(t, dst, index)
		requireLinksInside(t, dst, base)
	})
}

func mustTrailer(t testing.TB, art []byte) int64 {
	off, _, err := parseTrailer(art[len(art)-trailerSize:], int64(len(art)))
	require.NoError(t, err)
	return off
}

// requireMatchesIndex: every file of dst is in the index with its
// content's sha256, and every link resolves inside dst.
func requireMatchesIndex(t *testing.T, dst string, index []byte) {
	ix, err := ParseIndex(index)
	require.NoError(t, err, "ApplyDelta accepted an index ParseIndex refuses")
	want := map[string]string{IndexName: sha256Hex(index)}
	for _, e := range ix.Entries {
		want[e.Path] = e.SHA256
	}
	require.NoError(t, filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(dst, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			to, rerr := resolveOnDisk(p)
			require.NoError(t, rerr, "link %s", p)
			require.True(t, to == dst || strings.HasPrefix(to, dst+"/"), "link %s resolves to %s, outside %s", p, to, dst)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, want[filepath.ToSlash(rel)], sha256Hex(b), "%s does not hold the bytes its index says", rel)
		}
		return nil
	}))
}

// A local user who can write to the live release swaps a file for a FIFO:
// opening it to verify must not wait for a writer (a hung prepare holds the
// deploy until its timeout); the delta falls back, naming the file.
func TestApplyDeltaBaseFIFONotOpened(t *testing.T) {
	fx := newDeltaFixture(t)
	p := filepath.Join(fx.base, "vendor/other/pkg/C.php")
	require.NoError(t, os.Remove(p))
	require.NoError(t, syscall.Mkfifo(p, 0o644))
	t.Cleanup(func() {
		// Unblock a reader that did wait, so the test ends either way.
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = f.Close()
		}
	})
	fx.baseBefore = snapshotTree(t, fx.base, "")
	type result struct {
		dst string
		err error
	}
	done := make(chan result, 1)
	go func() {
		dst, _, err := fx.apply(fx.a2, fx.r2.IndexSHA256)
		done <- result{dst, err}
	}()
	select {
	case r := <-done:
		requireFallback(t, fx, r.dst, r.err, "vendor/other/pkg/C.php")
	case <-time.After(20 * time.Second):
		t.Fatal("ApplyDelta is blocked opening a FIFO in the base release")
	}
}
