package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/artifact/artifacttest"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/host/hostops"
)

// storeHostile puts data, an artifact written by hand, in the fixture's
// store as release id and returns its meta with the right sha256 and size.
func (f *hostFixture) storeHostile(id string, data []byte) release.Meta {
	f.t.Helper()
	p := filepath.Join(f.dir, id+".hostile.tar.zst")
	require.NoError(f.t, os.WriteFile(p, data, 0o644))
	sum := sha256.Sum256(data)
	uri, _, err := f.st.Put(context.Background(), catalog.ArtifactKey("shop", id), p, hex.EncodeToString(sum[:]), store.PutOptions{})
	require.NoError(f.t, err)
	return release.Meta{ID: id, App: "shop", Artifact: release.Artifact{URI: uri, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}}
}

func manifestEntry(t *testing.T, id string) artifacttest.Entry {
	b, err := json.Marshal(release.Meta{ID: id, App: "shop"})
	require.NoError(t, err)
	return artifacttest.File("release.json", string(b))
}

// baitDir makes dir/bait with a root-only file and returns a function
// that asserts nothing in it was added, changed, chmodded or chowned.
func baitDir(t *testing.T, dir string) func() {
	bait := filepath.Join(dir, "bait")
	require.NoError(t, os.MkdirAll(bait, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(bait, "secret"), []byte("root only"), 0o600))
	before := lstatTree(t, bait)
	return func() {
		t.Helper()
		require.Equal(t, before, lstatTree(t, bait), "the bait outside the release changed")
	}
}

func lstatTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		content := ""
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			content = string(b)
		}
		out[p] = fmt.Sprintf("%v %v %d:%d %q", fi.Mode(), fi.ModTime(), st.Uid, st.Gid, content)
		return nil
	}))
	return out
}

// TestPrepareRefusesLinksOutOfTheRelease sends the two escape shapes a
// committer could craft: pub/static leads, through another link, four
// levels above releases/<id> (to the bait directory), where Prepare would
// write deployed_version.txt and ApplyOwnership would chown.
func TestPrepareRefusesLinksOutOfTheRelease(t *testing.T) {
	shapes := map[string][]artifacttest.Entry{
		"chained through an earlier link": {
			artifacttest.Dir("d/d/d/"),
			artifacttest.Symlink("d/d/d/up", "../../.."),
			artifacttest.Symlink("pub/static", "../d/d/d/up/../../../../bait"),
		},
		// pub/static stays inside when extracted; the later link
		// a/b/c/d -> ../../.. makes it lead out.
		"later link changes an earlier one": {
			artifacttest.Dir("a/b/c/"),
			artifacttest.Symlink("pub/static", "../a/b/c/d/../../../../bait"),
			artifacttest.Symlink("a/b/c/d", "../../.."),
		},
	}
	for name, entries := range shapes {
		t.Run(name, func(t *testing.T) {
			f := newHostFixture(t, "")
			const id = "3-abcdef2"
			require.Equal(t, filepath.Join(f.dir, "srv/shop/releases", id), hostops.ReleaseDir(f.root, "shop", id), "the bait must be four levels above the release")
			unchanged := baitDir(t, f.dir)
			all := append([]artifacttest.Entry{manifestEntry(t, id), artifacttest.File("pub/index.php", "<?php")}, entries...)
			data, err := artifacttest.TarZst(all)
			require.NoError(t, err)
			m := f.storeHostile(id, data)

			err = f.exec(f.acts.Prepare, f.prepareInput(m), nil)
			ae := appErr(t, err, agent.ErrArtifactCorrupt)
			require.True(t, ae.NonRetryable())
			require.Contains(t, err.Error(), `"pub/static"`, "the error names the entry")
			require.Contains(t, err.Error(), `"../../../../bait"`, "and where it leads")
			_, serr := os.Lstat(hostops.ReleaseDir(f.root, "shop", id))
			require.ErrorIs(t, serr, fs.ErrNotExist)
			assertNoTemps(t, f)
			unchanged()
		})
	}
}

// diskWatch samples the disk space used under dir every millisecond until
// stopped, and returns the largest sample. It measures allocated blocks
// (st_blocks), so it sees what a bomb really writes; a peak shorter than a
// sample could be missed, but writing more than a few MiB takes longer.
func diskWatch(t *testing.T, dir string) (stop func() int64) {
	var (
		mu   sync.Mutex
		peak int64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var used int64
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil {
					if fi, err := os.Lstat(p); err == nil {
						used += fi.Sys().(*syscall.Stat_t).Blocks * 512
					}
				}
				return nil
			})
			mu.Lock()
			peak = max(peak, used)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return peak
	}
}

const (
	bombSize     = 768 << 20 // what the 24 KB artifact of the report wrote
	maxTempWrite = 4 << 20   // "a few MiB"
)

// TestPrepareRefusesBombs stores a 768 MiB zstd bomb of about 24 KB.
// With a wrong sha256 it must be refused before anything is unpacked;
// with the right one, by the unpacked size the build recorded (or, for a
// release that did not record it, 64× its size). Disk use under the host
// root is sampled throughout.
func TestPrepareRefusesBombs(t *testing.T) {
	f := newHostFixture(t, "")
	const id = "4-abcdef3"
	bomb, err := artifacttest.Bomb([]artifacttest.Entry{manifestEntry(t, id)}, "pub/bomb.bin", bombSize)
	require.NoError(t, err)
	require.Less(t, len(bomb), 32<<10)
	m := f.storeHostile(id, bomb)
	good := f.release("2-abcdef1")

	cases := map[string]struct {
		in      func(in *agent.PrepareInput)
		errType string
		msg     string
	}{
		"wrong sha256":                     {func(in *agent.PrepareInput) { in.SHA256 = good.Artifact.SHA256 }, agent.ErrChecksum, good.Artifact.SHA256},
		"more bytes than recorded":         {func(in *agent.PrepareInput) { in.Size = m.Artifact.Size - 1 }, agent.ErrChecksum, "larger than"},
		"unpacks beyond the recorded size": {func(in *agent.PrepareInput) { in.UncompressedSize = 1 << 20 }, agent.ErrArtifactCorrupt, "unpacks to more"},
		"old release, 64x bound":           {func(in *agent.PrepareInput) { in.UncompressedSize = 0 }, agent.ErrArtifactCorrupt, "unpacks to more"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			in := f.prepareInput(m)
			c.in(&in)
			stop := diskWatch(t, f.root)
			err := f.exec(f.acts.Prepare, in, nil)
			peak := stop()
			t.Logf("peak disk use under the host root: %d KiB", peak>>10)
			ae := appErr(t, err, c.errType)
			require.True(t, ae.NonRetryable())
			require.Contains(t, err.Error(), c.msg)
			require.Less(t, peak, int64(maxTempWrite), "a refused bomb may only cost a few MiB of temporary writes")
			_, serr := os.Lstat(hostops.ReleaseDir(f.root, "shop", id))
			require.ErrorIs(t, serr, fs.ErrNotExist)
			assertNoTemps(t, f)
		})
	}
}
