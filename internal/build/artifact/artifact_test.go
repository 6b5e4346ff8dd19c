package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

var commitTime = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))

// tree describes a test source directory: path -> content for files,
// "dir/" keys for (possibly empty) directories, "->target" values for
// symlinks.
type tree map[string]string

func writeTree(t testing.TB, dir string, tr tree, modes map[string]fs.FileMode) {
	t.Helper()
	keys := make([]string, 0, len(tr))
	for k := range tr {
		keys = append(keys, k)
	}
	// Create in reverse order so directory creation order differs from
	// the lexical order the writer must use.
	sort.Sort(sort.Reverse(sort.StringSlice(keys)))
	for _, k := range keys {
		v := tr[k]
		p := filepath.Join(dir, filepath.FromSlash(k))
		switch {
		case strings.HasSuffix(k, "/"):
			require.NoError(t, os.MkdirAll(p, 0o755))
		case strings.HasPrefix(v, "->"):
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.Symlink(strings.TrimPrefix(v, "->"), p))
		default:
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(v), 0o644))
		}
	}
	for k, m := range modes {
		require.NoError(t, os.Chmod(filepath.Join(dir, filepath.FromSlash(k)), m))
	}
}

var (
	longDir  = strings.Repeat("vendor-module-", 8) + "x"        // 113 chars
	longName = strings.Repeat("VeryLongClassName", 12) + ".php" // 208 chars
)

func sampleTree() (tree, map[string]fs.FileMode) {
	return tree{
			"index.php":                          "<?php require 'app/bootstrap.php';\n",
			"bin/magento":                        "#!/usr/bin/env php\n<?php\n",
			"app/etc/config.php":                 "<?php return ['modules' => []];\n",
			"app/etc/env.php":                    "<?php return ['db' => 'secret'];\n",
			"pub/static/frontend/x.css":          "body{color:red}\n",
			"pub/static/current":                 "->frontend",
			"pub/media/catalog/1.jpg":            "JPEGDATA",
			"var/cache/x":                        "cache",
			"generated/empty/":                   "",
			"unicodé/ünïcødé-файл-名前.php":        "<?php // unicode\n",
			longDir + "/" + longName:             "<?php class Long {}\n",
			"link-to-long":                       "->" + longDir + "/" + longName,
			"private.txt":                        "private",
			".git/HEAD":                          "ref: refs/heads/main\n",
			"vendor/acme/lib/.git/config":        "[core]\n",
			"vendor/acme/lib/src/A.php":          "<?php class A {}\n",
			"vendor/acme/lib/dangling-but-local": "->missing.php",
		}, map[string]fs.FileMode{
			"bin/magento": 0o755,
			"private.txt": 0o600,
			"generated":   0o750,
		}
}

var sharedPaths = []string{"pub/media", "/var/", "app/etc/env.php"}

func writeArtifact(t testing.TB, src string, manifest []byte, opt Options) ([]byte, Result) {
	t.Helper()
	var buf bytes.Buffer
	res, err := Write(context.Background(), &buf, src, manifest, opt)
	require.NoError(t, err)
	return buf.Bytes(), res
}

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	tr, modes := sampleTree()
	writeTree(t, src, tr, modes)
	manifest := []byte(`{"id":"1-abcdef0"}`)

	data, res := writeArtifact(t, src, manifest, Options{Exclude: sharedPaths, ModTime: commitTime})
	require.Equal(t, int64(len(data)), res.Size)
	require.Len(t, res.SHA256, 64)
	require.NoError(t, Verify(bytes.NewReader(data), strings.ToUpper(res.SHA256)))

	// release.json is first, then the tree in lexical order.
	names := listEntries(t, data)
	require.Equal(t, ManifestName, names[0])
	require.NotContains(t, names, "app/etc/env.php")
	require.NotContains(t, names, "pub/media/")
	require.NotContains(t, names, "var/")
	require.NotContains(t, names, ".git/")
	require.NotContains(t, names, "vendor/acme/lib/.git/")

	got, err := ReadManifest(bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, manifest, got)

	dst := filepath.Join(t.TempDir(), "releases", "1-abcdef0")
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(t, Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{MaxBytes: res.TarSize}))

	wantFiles := 0
	var wantBytes int64 = int64(len(manifest))
	for k, v := range tr {
		excluded := strings.HasPrefix(k, "pub/media/") || strings.HasPrefix(k, "var/") ||
			k == "app/etc/env.php" || strings.HasPrefix(k, ".git/") || strings.Contains(k, "/.git/")
		p := filepath.Join(dst, filepath.FromSlash(k))
		if excluded {
			_, err := os.Lstat(p)
			require.ErrorIs(t, err, fs.ErrNotExist, "%s should be excluded", k)
			continue
		}
		switch {
		case strings.HasSuffix(k, "/"):
			fi, err := os.Stat(p)
			require.NoError(t, err)
			require.True(t, fi.IsDir())
		case strings.HasPrefix(v, "->"):
			target, err := os.Readlink(p)
			require.NoError(t, err, k)
			require.Equal(t, strings.TrimPrefix(v, "->"), target)
		default:
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, v, string(b))
			fi, err := os.Stat(p)
			require.NoError(t, err)
			require.True(t, fi.ModTime().Equal(commitTime.Truncate(time.Second)), "mtime of %s: %v", k, fi.ModTime())
			want := fs.FileMode(0o644)
			if m, ok := modes[k]; ok {
				want = m
			}
			require.Equal(t, want, fi.Mode().Perm(), k)
			wantFiles++
			wantBytes += int64(len(v))
		}
	}
	fi, err := os.Stat(filepath.Join(dst, "generated"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o750), fi.Mode().Perm())
	b, err := os.ReadFile(filepath.Join(dst, ManifestName))
	require.NoError(t, err)
	require.Equal(t, manifest, b)
	require.Equal(t, wantFiles+1, res.Files)
	require.Equal(t, wantBytes, res.UncompressedBytes)
	assertNoTemp(t, filepath.Dir(dst), "1-abcdef0")
}

// TestGNUTarReadsArtifact proves the artifact is an ordinary tar.zst that
// operators can inspect with standard tools.
func TestGNUTarReadsArtifact(t *testing.T) {
	for _, tool := range []string{"tar", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("this test needs %q in PATH (apt-get install %s): %v", tool, tool, err)
		}
	}
	src := t.TempDir()
	tr, modes := sampleTree()
	writeTree(t, src, tr, modes)
	out := filepath.Join(t.TempDir(), "a.tar.zst")
	_, err := WriteFile(context.Background(), out, src, []byte("{}"), Options{Exclude: sharedPaths, ModTime: commitTime})
	require.NoError(t, err)
	cmd := exec.Command("tar", "--use-compress-program=zstd", "-tvf", out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), longDir+"/"+longName)
	require.Contains(t, string(b), "pub/static/current -> frontend")
	require.Contains(t, string(b), "-rwxr-xr-x 0/0 ") // numeric owner, no names
}

func listEntries(t *testing.T, data []byte) []string {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	defer d.Close()
	tr := tar.NewReader(d)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			// The index is always the last member; callers compare the
			// tree's entries.
			require.NotEmpty(t, names)
			require.Equal(t, IndexName, names[len(names)-1])
			return names[:len(names)-1]
		}
		require.NoError(t, err)
		require.Equal(t, 0, h.Uid)
		require.Equal(t, 0, h.Gid)
		require.Empty(t, h.Uname)
		require.Empty(t, h.Gname)
		names = append(names, h.Name)
	}
}

func assertNoTemp(t *testing.T, dir, base string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		require.False(t, strings.HasPrefix(e.Name(), "."+base), "temporary %s left behind", e.Name())
	}
}

func TestDeterministic(t *testing.T) {
	tr, modes := sampleTree()
	a, b := t.TempDir(), t.TempDir()
	writeTree(t, a, tr, modes)
	writeTree(t, b, tr, modes)
	// Different on-disk mtimes must not matter.
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.Type()&fs.ModeSymlink == 0 {
			require.NoError(t, os.Chtimes(p, old, old))
		}
		return nil
	}))
	opt := Options{Exclude: sharedPaths, ModTime: commitTime}
	da, ra := writeArtifact(t, a, []byte("{}"), opt)
	da2, ra2 := writeArtifact(t, a, []byte("{}"), opt)
	db, rb := writeArtifact(t, b, []byte("{}"), opt)
	require.Equal(t, ra.SHA256, ra2.SHA256)
	require.Equal(t, da, da2)
	require.Equal(t, ra.SHA256, rb.SHA256)
	require.Equal(t, da, db)

	// The inputs that should change the output do.
	_, rm := writeArtifact(t, a, []byte(`{"x":1}`), opt)
	require.NotEqual(t, ra.SHA256, rm.SHA256)
	_, rt := writeArtifact(t, a, []byte("{}"), Options{Exclude: sharedPaths, ModTime: commitTime.Add(time.Hour)})
	require.NotEqual(t, ra.SHA256, rt.SHA256)
}

// TestFramesDeterministicAndReadable packages more than two zstd frames
// and checks that the output does not depend on the number of compression
// workers (i.e. on the worker's CPU count) and that the multi-frame stream
// extracts completely.
func TestFramesDeterministicAndReadable(t *testing.T) {
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"public ", "function ", "return ", "$this->", "array(", "Magento\\Framework\\", " => ", ";\n", "{\n", "}\n"}
	for i := range 3 {
		var b strings.Builder
		for b.Len() < frameSize {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(20) == 0 {
				fmt.Fprintf(&b, "%x", rng.Uint32())
			}
		}
		require.NoError(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d.php", i)), []byte(b.String()), 0o644))
	}
	var outs [][]byte
	for _, workers := range []int{1, 2, 5} {
		var buf bytes.Buffer
		fw, err := newFrameWriter(&buf, DefaultLevel, workers)
		require.NoError(t, err)
		p := &packer{ctx: context.Background(), root: src, tw: tar.NewWriter(fw), mtime: normalizeTime(commitTime), buf: copyBufPool.Get().(*[]byte)}
		require.NoError(t, p.run([]byte("{}")))
		require.NoError(t, p.tw.Close())
		require.NoError(t, fw.Close())
		outs = append(outs, buf.Bytes())
	}
	require.Equal(t, outs[0], outs[1])
	require.Equal(t, outs[0], outs[2])

	dst := filepath.Join(t.TempDir(), "r")
	require.NoError(t, Extract(context.Background(), bytes.NewReader(outs[0]), dst, ExtractOptions{}))
	for i := range 3 {
		want, err := os.ReadFile(filepath.Join(src, fmt.Sprintf("f%d.php", i)))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(dst, fmt.Sprintf("f%d.php", i)))
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
}

func TestExcludePatterns(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, tree{
		"var/log/a.log":       "x",
		"keep/var/b":          "keep: pattern is anchored at the root",
		"media":               "->pub/media",
		"pub/media/x":         "x",
		"pub/mediafile":       "keep: not under pub/media",
		"logs/a.log":          "x",
		"logs/b.txt":          "keep",
		"release.json":        "excluded explicitly, so no clash",
		"vendor/x/.git/index": "x",
	}, nil)
	data, _ := writeArtifact(t, src, []byte("{}"), Options{Exclude: []string{"var", "media", "pub/media", "logs/*.log", "release.json"}})
	names := listEntries(t, data)
	require.Equal(t, []string{ManifestName, "keep/", "keep/var/", "keep/var/b", "logs/", "logs/b.txt", "pub/", "pub/mediafile", "vendor/", "vendor/x/"}, names)

	_, err := Write(context.Background(), io.Discard, src, nil, Options{Exclude: []string{"[bad"}})
	require.ErrorContains(t, err, `exclude pattern "[bad"`)
}

func TestManifestClash(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, tree{"release.json": "{}"}, nil)
	_, err := Write(context.Background(), io.Discard, src, []byte("{}"), Options{})
	require.ErrorContains(t, err, "already contains release.json")
}

func TestSpecialFileRejected(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(src, "pipe"), 0o644))
	_, err := Write(context.Background(), io.Discard, src, []byte("{}"), Options{})
	require.ErrorContains(t, err, "pipe")
	require.ErrorContains(t, err, "excluded paths")
}

func TestWriteCancelled(t *testing.T) {
	src := t.TempDir()
	tr := tree{}
	for i := range 50 {
		tr[fmt.Sprintf("d/f%02d", i)] = "content"
	}
	writeTree(t, src, tr, nil)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Write(ctx, io.Discard, src, []byte("{}"), Options{})
	require.ErrorIs(t, err, context.Canceled)

	// Cancelled mid-way: the first Progress call (right after the first
	// file) cancels; the writer must stop before the 50 files are done.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	maxFiles := 0
	_, err = Write(ctx, io.Discard, src, []byte("{}"), Options{Progress: func(files int, _ int64) {
		maxFiles = max(maxFiles, files)
		cancel()
	}})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, maxFiles, 10)

	// WriteFile leaves nothing behind when cancelled.
	out := filepath.Join(t.TempDir(), "a.tar.zst")
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = WriteFile(ctx, out, src, []byte("{}"), Options{})
	require.ErrorIs(t, err, context.Canceled)
	ents, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	require.Empty(t, ents)
}

func TestWriteFileAndVerify(t *testing.T) {
	src := t.TempDir()
	tr, modes := sampleTree()
	writeTree(t, src, tr, modes)
	out := filepath.Join(t.TempDir(), "1-abcdef0.tar.zst")
	var calls int
	res, err := WriteFile(context.Background(), out, src, []byte("{}"), Options{ModTime: commitTime, Progress: func(int, int64) { calls++ }})
	require.NoError(t, err)
	require.Positive(t, calls)
	fi, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, res.Size, fi.Size())
	require.NoError(t, VerifyFile(out, res.SHA256))
	err = VerifyFile(out, strings.Repeat("0", 64))
	require.ErrorIs(t, err, ErrChecksumMismatch)
	require.ErrorContains(t, err, res.SHA256)
	assertNoTemp(t, filepath.Dir(out), filepath.Base(out))

	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	m, err := ReadManifest(f)
	require.NoError(t, err)
	require.Equal(t, "{}", string(m))
}

func TestReadManifestRejectsOtherStreams(t *testing.T) {
	_, err := ReadManifest(strings.NewReader("not zstd at all"))
	require.Error(t, err)

	data := buildArchive(t, func(tw *tar.Writer) {
		addFile(t, tw, "index.php", "<?php")
	})
	_, err = ReadManifest(bytes.NewReader(data))
	require.ErrorContains(t, err, "not a mageflow artifact")
}

func TestExtractDestinationExists(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, tree{"a": "a"}, nil)
	data, _ := writeArtifact(t, src, []byte("{}"), Options{})
	dst := t.TempDir()
	err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{})
	require.ErrorContains(t, err, "already exists")
}

func buildArchive(t *testing.T, fill func(tw *tar.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf)
	require.NoError(t, err)
	tw := tar.NewWriter(enc)
	fill(tw)
	require.NoError(t, tw.Close())
	require.NoError(t, enc.Close())
	return buf.Bytes()
}

func addFile(t *testing.T, tw *tar.Writer, name, content string) {
	t.Helper()
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}))
	_, err := tw.Write([]byte(content))
	require.NoError(t, err)
}

func addHeader(t *testing.T, tw *tar.Writer, h *tar.Header) {
	t.Helper()
	require.NoError(t, tw.WriteHeader(h))
}

func TestExtractRejectsMaliciousArchives(t *testing.T) {
	cases := map[string]func(tw *tar.Writer){
		"absolute path": func(tw *tar.Writer) { addFile(t, tw, "/tmp/evil", "x") },
		"dot-dot":       func(tw *tar.Writer) { addFile(t, tw, "../evil", "x") },
		"inner dot-dot": func(tw *tar.Writer) { addFile(t, tw, "a/../../evil", "x") },
		"non-canonical": func(tw *tar.Writer) { addFile(t, tw, "a/./b", "x") },
		"absolute symlink": func(tw *tar.Writer) {
			addHeader(t, tw, &tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/etc/passwd"})
		},
		"escaping symlink": func(tw *tar.Writer) {
			addHeader(t, tw, &tar.Header{Typeflag: tar.TypeSymlink, Name: "a/l", Linkname: "../../outside"})
		},
		"write through symlink": func(tw *tar.Writer) {
			// "s" -> "." is harmless alone, but "s/x" -> "../evil"
			// would resolve outside the root.
			addHeader(t, tw, &tar.Header{Typeflag: tar.TypeSymlink, Name: "s", Linkname: "."})
			addHeader(t, tw, &tar.Header{Typeflag: tar.TypeSymlink, Name: "s/x", Linkname: "../evil"})
		},
		"file over symlink": func(tw *tar.Writer) {
			addHeader(t, tw, &tar.Header{Typeflag: tar.TypeSymlink, Name: "f", Linkname: "g"})
			addFile(t, tw, "f", "x")
		},
		"duplicate file": func(tw *tar.Writer) {
			addFile(t, tw, "f", "x")
			addFile(t, tw, "f", "y")
		},
		"hard link": func(tw *tar.Writer) {
			addFile(t, tw, "f", "x")
			addHeader(t, tw, &tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "f"})
		},
		"char device": func(tw *tar.Writer) {
			addHeader(t, tw, &tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3})
		},
		"block device": func(tw *tar.Writer) {
			addHeader(t, tw, &tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8})
		},
		"fifo": func(tw *tar.Writer) { addHeader(t, tw, &tar.Header{Typeflag: tar.TypeFifo, Name: "p"}) },
	}
	for name, fill := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "release")
			data := buildArchive(t, func(tw *tar.Writer) {
				addFile(t, tw, ManifestName, "{}")
				fill(tw)
			})
			err := Extract(context.Background(), bytes.NewReader(data), dst, ExtractOptions{})
			require.ErrorIs(t, err, ErrUnsafeEntry)
			ents, rerr := os.ReadDir(parent)
			require.NoError(t, rerr)
			require.Empty(t, ents, "nothing may be left next to the destination")
			_, serr := os.Lstat(filepath.Join(filepath.Dir(parent), "evil"))
			require.ErrorIs(t, serr, fs.ErrNotExist)
		})
	}
}

func TestExtractTruncatedArchive(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, tree{"a": strings.Repeat("abc", 100000)}, nil)
	data, _ := writeArtifact(t, src, []byte("{}"), Options{})
	parent := t.TempDir()
	err := Extract(context.Background(), bytes.NewReader(data[:len(data)/2]), filepath.Join(parent, "r"), ExtractOptions{})
	require.Error(t, err)
	ents, _ := os.ReadDir(parent)
	require.Empty(t, ents)
}

func TestExtractCancelled(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, tree{"a": "a"}, nil)
	data, _ := writeArtifact(t, src, []byte("{}"), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	parent := t.TempDir()
	err := Extract(ctx, bytes.NewReader(data), filepath.Join(parent, "r"), ExtractOptions{})
	require.True(t, errors.Is(err, context.Canceled), "got %v", err)
	ents, _ := os.ReadDir(parent)
	require.Empty(t, ents)
}
