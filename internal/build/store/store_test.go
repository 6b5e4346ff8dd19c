package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// artifactFile writes n pseudo-random bytes (seeded) to a temp file and
// returns its path and sha256.
func artifactFile(t *testing.T, n int, seed uint64) (string, string) {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "a.tar.zst")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	s := sha256.Sum256(b)
	return p, hex.EncodeToString(s[:])
}

func readAll(t *testing.T, s Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

// testStoreContract checks the behaviour every Store must have.
func testStoreContract(t *testing.T, s Store) {
	ctx := context.Background()
	const key = "shop/12-abcdef0.tar.zst"

	file, sum := artifactFile(t, 100_000, 1)
	uri, existed, err := s.Put(ctx, key, file, strings.ToUpper(sum), PutOptions{ContentType: "application/zstd"})
	require.NoError(t, err)
	require.False(t, existed)
	require.Equal(t, s.URI(key), uri)

	want, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, want, readAll(t, s, key))
	require.Equal(t, sum+"  12-abcdef0.tar.zst\n", string(readAll(t, s, key+SHA256Suffix)))

	info, err := s.Stat(ctx, key)
	require.NoError(t, err)
	require.Equal(t, key, info.Key)
	require.Equal(t, int64(len(want)), info.Size)
	require.Equal(t, sum, info.SHA256)
	require.False(t, info.ModTime.IsZero())

	// Range reads: exactly the bytes asked for; past the end, a missing
	// object or a negative range is an error.
	for _, r := range [][2]int64{{0, 1}, {4096, 8192}, {int64(len(want)) - 7, 7}, {0, int64(len(want))}, {10, 0}} {
		b, err := s.GetRange(ctx, key, r[0], r[1])
		require.NoError(t, err, "range %v", r)
		require.Equal(t, want[r[0]:r[0]+r[1]], b, "range %v", r)
	}
	_, err = s.GetRange(ctx, key, int64(len(want))-3, 10)
	require.Error(t, err, "a range past the end")
	_, err = s.GetRange(ctx, key, -1, 10)
	require.Error(t, err, "a negative offset")
	_, err = s.GetRange(ctx, "shop/absent.tar.zst", 0, 10)
	require.ErrorIs(t, err, ErrNotFound)

	// Re-put of the same artifact: no-op.
	uri2, existed, err := s.Put(ctx, key, file, sum, PutOptions{})
	require.NoError(t, err)
	require.True(t, existed)
	require.Equal(t, uri, uri2)

	// Different artifact under the same key: immutable.
	other, otherSum := artifactFile(t, 50_000, 2)
	_, _, err = s.Put(ctx, key, other, otherSum, PutOptions{})
	require.ErrorIs(t, err, ErrConflict)
	require.ErrorContains(t, err, otherSum)
	require.Equal(t, want, readAll(t, s, key), "a conflicting put must not change the object")

	// Declared sha256 that does not match the file.
	_, _, err = s.Put(ctx, "shop/13-abcdef0.tar.zst", other, sum, PutOptions{})
	require.ErrorContains(t, err, "caller declared")
	_, err = s.Stat(ctx, "shop/13-abcdef0.tar.zst")
	require.ErrorIs(t, err, ErrNotFound)

	// Overwrite is allowed when asked for.
	_, existed, err = s.Put(ctx, "shop/latest.tar.zst", file, sum, PutOptions{Overwrite: true})
	require.NoError(t, err)
	require.False(t, existed)
	_, _, err = s.Put(ctx, "shop/latest.tar.zst", other, otherSum, PutOptions{Overwrite: true})
	require.NoError(t, err)
	info, err = s.Stat(ctx, "shop/latest.tar.zst")
	require.NoError(t, err)
	require.Equal(t, otherSum, info.SHA256)

	// PutBytes: same rules.
	meta := []byte(`{"id":"12-abcdef0"}`)
	_, err = s.PutBytes(ctx, "shop/12-abcdef0.json", meta, PutOptions{ContentType: "application/json"})
	require.NoError(t, err)
	_, err = s.PutBytes(ctx, "shop/12-abcdef0.json", meta, PutOptions{})
	require.NoError(t, err, "same bytes again is a no-op")
	_, err = s.PutBytes(ctx, "shop/12-abcdef0.json", []byte(`{}`), PutOptions{})
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, meta, readAll(t, s, "shop/12-abcdef0.json"))
	_, err = s.PutBytes(ctx, "shop/12-abcdef0.json", []byte(`{}`), PutOptions{Overwrite: true})
	require.NoError(t, err)
	require.Equal(t, []byte(`{}`), readAll(t, s, "shop/12-abcdef0.json"))

	// Missing keys.
	_, err = s.Get(ctx, "shop/missing.tar.zst")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Stat(ctx, "shop/missing.tar.zst")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Get(ctx, "shop")
	require.ErrorIs(t, err, ErrNotFound, "a key prefix is not an object")

	// List: sorted, prefix is a string prefix, other apps excluded.
	_, err = s.PutBytes(ctx, "shopping/1.json", []byte("{}"), PutOptions{})
	require.NoError(t, err)
	_, err = s.PutBytes(ctx, "b2b/1.json", []byte("{}"), PutOptions{})
	require.NoError(t, err)
	list, err := s.List(ctx, "shop/")
	require.NoError(t, err)
	require.Equal(t, []string{
		"shop/12-abcdef0.json",
		"shop/12-abcdef0.tar.zst",
		"shop/12-abcdef0.tar.zst.sha256",
		"shop/latest.tar.zst",
		"shop/latest.tar.zst.sha256",
	}, keys(list))
	require.Equal(t, int64(len(want)), list[1].Size)
	list, err = s.List(ctx, "shop")
	require.NoError(t, err)
	require.Len(t, list, 6)
	require.Equal(t, "shopping/1.json", list[5].Key)
	list, err = s.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, list, 7)
	require.Equal(t, "b2b/1.json", list[0].Key)
	list, err = s.List(ctx, "nothing/")
	require.NoError(t, err)
	require.Empty(t, list)

	// Invalid keys never reach the backend.
	for _, bad := range []string{"", "/abs", "a//b", "../x", "a/./b", "a/.hidden", `a\b`, "a/"} {
		_, err := s.PutBytes(ctx, bad, []byte("x"), PutOptions{})
		require.Error(t, err, "key %q", bad)
	}
}

func keys(l []Info) []string {
	out := make([]string, len(l))
	for i, in := range l {
		out[i] = in.Key
	}
	return out
}

func TestLocalContract(t *testing.T) {
	s, err := NewLocal(t.TempDir())
	require.NoError(t, err)
	testStoreContract(t, s)
	require.True(t, strings.HasPrefix(s.URI("a/b"), "file:///"))
	require.True(t, strings.HasSuffix(s.URI("a/b"), "/a/b"))
}

func TestLocalLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := NewLocal(dir)
	require.NoError(t, err)
	testStoreContract(t, s)
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		require.False(t, strings.HasPrefix(d.Name(), "."), "left behind: %s", p)
		return nil
	}))
}

// TestLocalConcurrentPut races several workers putting the same key: with
// the same artifact exactly one creates it and the others see existed; with
// different artifacts exactly one wins and the others get ErrConflict.
func TestLocalConcurrentPut(t *testing.T) {
	ctx := context.Background()
	s, err := NewLocal(t.TempDir())
	require.NoError(t, err)
	file, sum := artifactFile(t, 1<<20, 3)

	const n = 8
	var wg sync.WaitGroup
	created := make(chan bool, n)
	for range n {
		wg.Go(func() {
			_, existed, err := s.Put(ctx, "app/1-abcdef0.tar.zst", file, sum, PutOptions{})
			require.NoError(t, err)
			created <- !existed
		})
	}
	wg.Wait()
	close(created)
	wins := 0
	for c := range created {
		if c {
			wins++
		}
	}
	require.Equal(t, 1, wins)

	type result struct {
		sum string
		err error
	}
	results := make(chan result, n)
	for i := range n {
		f, sm := artifactFile(t, 64<<10, uint64(100+i))
		wg.Go(func() {
			_, _, err := s.Put(ctx, "app/2-abcdef0.tar.zst", f, sm, PutOptions{})
			results <- result{sm, err}
		})
	}
	wg.Wait()
	close(results)
	var winner string
	for r := range results {
		if r.err == nil {
			require.Empty(t, winner, "two different artifacts were both accepted")
			winner = r.sum
		} else {
			require.ErrorIs(t, r.err, ErrConflict)
		}
	}
	require.NotEmpty(t, winner)
	info, err := s.Stat(ctx, "app/2-abcdef0.tar.zst")
	require.NoError(t, err)
	require.Equal(t, winner, info.SHA256)
	got := sha256.Sum256(readAll(t, s, "app/2-abcdef0.tar.zst"))
	require.Equal(t, winner, hex.EncodeToString(got[:]))
}

// TestLocalRepairsMissingSidecar covers a crash between publishing the
// artifact and writing its sidecar: the re-put must detect the same
// content by hashing and restore the sidecar.
func TestLocalRepairsMissingSidecar(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewLocal(dir)
	require.NoError(t, err)
	file, sum := artifactFile(t, 10_000, 4)
	_, _, err = s.Put(ctx, "a/1.tar.zst", file, sum, PutOptions{})
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, "a", "1.tar.zst.sha256")))
	_, existed, err := s.Put(ctx, "a/1.tar.zst", file, sum, PutOptions{})
	require.NoError(t, err)
	require.True(t, existed)
	info, err := s.Stat(ctx, "a/1.tar.zst")
	require.NoError(t, err)
	require.Equal(t, sum, info.SHA256)

	other, otherSum := artifactFile(t, 10_000, 5)
	require.NoError(t, os.Remove(filepath.Join(dir, "a", "1.tar.zst.sha256")))
	_, _, err = s.Put(ctx, "a/1.tar.zst", other, otherSum, PutOptions{})
	require.ErrorIs(t, err, ErrConflict)
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, uri := range []string{dir, "file://" + dir} {
		s, err := Open(ctx, uri, S3Config{})
		require.NoError(t, err)
		require.IsType(t, &Local{}, s)
		require.Equal(t, "file://"+filepath.ToSlash(filepath.Join(dir, "k")), s.URI("k"))
	}
	s, err := Open(ctx, "s3://bucket/some/prefix/", S3Config{Region: "eu-west-1"})
	require.NoError(t, err)
	require.Equal(t, "s3://bucket/some/prefix/app/1.tar.zst", s.URI("app/1.tar.zst"))
	for _, bad := range []string{"relative/dir", "s3:///nobucket", "ftp://x/y", "file://host/x"} {
		_, err := Open(ctx, bad, S3Config{})
		require.Error(t, err, bad)
	}
}
