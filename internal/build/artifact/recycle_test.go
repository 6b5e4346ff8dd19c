package artifact

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// recycleFixture adds to the delta fixture a retired release, releases/0:
// v1 again, built by a delta from the base, so its files share the base's
// inodes as a host's older releases do; and bait/ outside the releases.
type recycleFixture struct {
	*deltaFixture
	retired, bait string
	baitBefore    map[string]snapshot
}

func newRecycleFixture(t *testing.T) *recycleFixture {
	t.Helper()
	fx := &recycleFixture{deltaFixture: newDeltaFixture(t)}
	fx.retired = filepath.Join(fx.dir, "releases", "0")
	_, err := ApplyDelta(context.Background(), DeltaOptions{
		Base: fx.base, Dst: fx.retired, Source: ReaderAtRange{bytes.NewReader(fx.a1)}, Size: int64(len(fx.a1)), IndexSHA256: fx.r1.IndexSHA256,
	})
	require.NoError(t, err)
	fx.bait = filepath.Join(fx.dir, "bait")
	writeTree(t, fx.bait, tree{"secret": "root's secret\n", "C.php": "<?php // bait\n", "deep/x": "x\n"}, nil)
	fx.baseBefore = snapshotTree(t, fx.base, "")
	return fx
}

func (fx *recycleFixture) applyRecycling(t *testing.T) (string, DeltaStats, error) {
	t.Helper()
	fx.baitBefore = snapshotTree(t, fx.bait, "")
	dst := filepath.Join(fx.dir, "releases", "2")
	st, err := ApplyDelta(context.Background(), DeltaOptions{
		Base: fx.base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(fx.a2)}, Size: int64(len(fx.a2)),
		IndexSHA256: fx.r2.IndexSHA256, Recycle: fx.retired,
	})
	return dst, st, err
}

// requireSameAsFresh: dst is exactly what a full extraction of v2 gives,
// no older release and nothing outside changed, no ACL left on a
// directory, and the retired tree's name is gone.
func (fx *recycleFixture) requireSameAsFresh(t *testing.T, dst string) {
	t.Helper()
	full := filepath.Join(fx.dir, "full")
	if _, err := os.Lstat(full); err != nil {
		require.NoError(t, Extract(context.Background(), bytes.NewReader(fx.a2), full, ExtractOptions{MaxBytes: fx.r2.TarSize}))
	}
	require.Equal(t, contentView(t, full), contentView(t, dst))
	requireLinksInside(t, dst, fx.base)
	require.Equal(t, fx.baseBefore, snapshotTree(t, fx.base, ""), "the base release changed")
	require.Equal(t, fx.baitBefore, snapshotTree(t, fx.bait, ""), "a file outside the releases changed")
	b, err := os.ReadFile(filepath.Join(dst, IndexName))
	require.NoError(t, err)
	require.Equal(t, fx.r2.IndexSHA256, sha256Hex(b))
	require.NoError(t, filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			for _, a := range []string{"system.posix_acl_access", "system.posix_acl_default"} {
				_, xerr := unix.Lgetxattr(p, a, make([]byte, 256))
				require.Error(t, xerr, "%s still carries %s", p, a)
			}
		}
		return err
	}))
	_, err = os.Lstat(fx.retired)
	require.ErrorIs(t, err, fs.ErrNotExist, "the retired tree is still under its old name")
}

func TestApplyDeltaRecyclesRetiredTree(t *testing.T) {
	fx := newRecycleFixture(t)
	dst, st, err := fx.applyRecycling(t)
	require.NoError(t, err)
	require.True(t, st.Recycled, "%+v", st)
	fx.requireSameAsFresh(t, dst)
	// The retired v1 tree held the unchanged files as the base's own
	// inodes: they stay; the index, Gone.php and the changed files go.
	require.Equal(t, 9, st.FilesLinked, "%+v", st)
	require.Equal(t, 3, st.FilesWritten, "%+v", st)
	require.Equal(t, 1, st.FilesCopied, "%+v", st)
	require.GreaterOrEqual(t, st.EntriesRemoved, 3, "%+v", st)
	requireSameInode(t, true, filepath.Join(fx.base, "vendor/acme/lib/src/B.php"), filepath.Join(dst, "vendor/acme/lib/src/B.php"))
}

// posixACL encodes a POSIX ACL xattr value giving uid rwx (what setfacl
// -m u:uid:rwx writes).
func posixACL(uid uint32) []byte {
	var b bytes.Buffer
	put := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	put(uint32(2)) // version
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 7, ^uint32(0)}, {0x02, 7, uid}, {0x04, 5, ^uint32(0)}, {0x10, 7, ^uint32(0)}, {0x20, 5, ^uint32(0)}} {
		put(e.tag)
		put(e.perm)
		put(e.id)
	}
	return b.Bytes()
}

// A local user who could write to the retired release prepares it for the
// next deploy: planted files and directories, directories swapped for
// symlinks to elsewhere, hard links to foreign files under indexed names,
// a FIFO, symlinks where files belong, a forged index and completion
// marker, a world-writable set-gid directory with a default ACL. The new
// release comes out exactly as a fresh one; nothing outside changes.
func TestApplyDeltaRecycleHostileTree(t *testing.T) {
	fx := newRecycleFixture(t)
	r := func(p string) string { return filepath.Join(fx.retired, p) }
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(os.WriteFile(r("vendor/acme/lib/src/Evil.php"), []byte("<?php system($_GET['c']);"), 0o644))
	must(os.MkdirAll(r("pub/media/shell"), 0o777))
	must(os.WriteFile(r("pub/media/shell/x.php"), []byte("<?php eval($_POST['x']);"), 0o644))
	must(os.RemoveAll(r("vendor/other/pkg")))
	must(os.Symlink(fx.bait, r("vendor/other/pkg")))
	must(os.Remove(r("app/etc/config.php")))
	must(os.Link(filepath.Join(fx.bait, "secret"), r("app/etc/config.php")))
	must(os.Remove(r("index.php")))
	must(syscall.Mkfifo(r("index.php"), 0o644))
	must(os.Remove(r("bin/magento")))
	must(os.Symlink(filepath.Join(fx.bait, "secret"), r("bin/magento")))
	must(os.Remove(r("pub/static/current")))
	must(os.WriteFile(r("pub/static/current"), []byte("not a link"), 0o644))
	must(os.WriteFile(r(IndexName), []byte(`{"forged":true}`), 0o644))
	must(os.WriteFile(r(".mageflow-complete"), []byte("forged\n"), 0o644))
	must(os.Chmod(r("app/design/frontend/x"), 0o777|fs.ModeSetgid))
	aclSet := unix.Setxattr(r("app/design/frontend/x"), "system.posix_acl_default", posixACL(4242), 0) == nil &&
		unix.Setxattr(r("app/design/frontend/x"), "system.posix_acl_access", posixACL(4242), 0) == nil
	if os.Geteuid() == 0 {
		must(os.Chown(r("vendor/acme"), 4242, 4242))
	}

	dst, st, err := fx.applyRecycling(t)
	require.NoError(t, err)
	require.True(t, st.Recycled, "%+v", st)
	fx.requireSameAsFresh(t, dst)
	requireSameInode(t, false, filepath.Join(fx.bait, "secret"), filepath.Join(dst, "app/etc/config.php"))
	fi, err := os.Lstat(filepath.Join(dst, "app/design/frontend/x"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o755)|fs.ModeDir, fi.Mode(), "the directory kept its set-gid or world-write bit")
	if os.Geteuid() == 0 {
		fi, err := os.Lstat(filepath.Join(dst, "vendor/acme"))
		require.NoError(t, err)
		require.Equal(t, uint32(0), fi.Sys().(*syscall.Stat_t).Uid, "a directory kept its foreign owner")
	}
	t.Logf("ACLs were set on the retired tree (and checked gone): %v", aclSet)
}

// A process of a local user sits in a directory of the retired release
// it may write and creates files as fast as it can while the delta runs:
// once the walk has reached the directory, it can add nothing, and what it
// added before is gone.
func TestApplyDeltaRecycleRacingWriter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the writer as another user; the root-run suites (make test) run it")
	}
	fx := newRecycleFixture(t)
	dir := filepath.Join(fx.retired, "vendor/acme/lib/src")
	require.NoError(t, os.Chown(dir, 65534, 65534))
	require.NoError(t, os.Chmod(dir, 0o777))
	require.NoError(t, os.Chmod(fx.dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(fx.dir), 0o755))
	cmd := exec.Command("/bin/sh", "-c", `i=0; while :; do : > planted-$i 2>/dev/null; i=$((i+1)); done`)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool { m, _ := filepath.Glob(filepath.Join(dir, "planted-*")); return len(m) > 10 }, 10*time.Second, 10*time.Millisecond)

	dst, st, err := fx.applyRecycling(t)
	require.NoError(t, err)
	require.True(t, st.Recycled, "%+v", st)
	time.Sleep(100 * time.Millisecond) // the writer keeps trying
	require.NoError(t, cmd.Process.Kill())
	fx.requireSameAsFresh(t, dst)
}

// A file system mounted inside the retired tree is never walked into: the
// recycling stops, the mounted files stay, and the delta builds a fresh
// tree.
func TestApplyDeltaRecycleStopsAtMountPoint(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs; the root-run suites (make test) run it")
	}
	fx := newRecycleFixture(t)
	mnt := filepath.Join(fx.retired, "vendor/acme/lib")
	require.NoError(t, unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"))
	unmounted := false
	t.Cleanup(func() {
		if !unmounted {
			m, _ := filepath.Glob(filepath.Join(fx.dir, "releases", ".2.recycle-abandoned-*", "vendor/acme/lib"))
			for _, p := range append(m, mnt) {
				_ = unix.Unmount(p, unix.MNT_DETACH)
			}
		}
	})
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "keep.txt"), []byte("mounted data\n"), 0o644))

	dst, st, err := fx.applyRecycling(t)
	require.NoError(t, err)
	require.False(t, st.Recycled, "%+v", st)
	require.Contains(t, st.RecycleNote, "mount point")
	aside, _ := filepath.Glob(filepath.Join(fx.dir, "releases", ".2.recycle-abandoned-*"))
	require.Len(t, aside, 1)
	b, err := os.ReadFile(filepath.Join(aside[0], "vendor/acme/lib/keep.txt"))
	require.NoError(t, err, "the mounted file system's files were removed")
	require.Equal(t, "mounted data\n", string(b))
	require.NoError(t, unix.Unmount(filepath.Join(aside[0], "vendor/acme/lib"), 0))
	unmounted = true
	fx.requireSameAsFresh(t, dst)
}

// A tree deeper than maxRecycleDepth (one fd per level) is set aside,
// not walked.
func TestApplyDeltaRecycleTooDeep(t *testing.T) {
	fx := newRecycleFixture(t)
	deep := filepath.Join(fx.retired, "pub")
	d, err := os.Open(deep)
	require.NoError(t, err)
	defer d.Close()
	fd := int(d.Fd())
	for i := 0; i < maxRecycleDepth+5; i++ {
		require.NoError(t, unix.Mkdirat(fd, "d", 0o755))
		nfd, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		require.NoError(t, err)
		if fd != int(d.Fd()) {
			_ = unix.Close(fd)
		}
		fd = nfd
	}
	_ = unix.Close(fd)
	dst, st, err := fx.applyRecycling(t)
	require.NoError(t, err)
	require.False(t, st.Recycled, "%+v", st)
	require.Contains(t, st.RecycleNote, "deeper than")
	fx.requireSameAsFresh(t, dst)
}

// FuzzApplyDeltaRecycle mutates the retired tree at random (planted,
// removed and retyped entries, links to the bait, modes) and checks the
// invariant: the new release is exactly a fresh one, and neither the base
// nor anything outside the releases changed.
func FuzzApplyDeltaRecycle(f *testing.F) {
	for s := range uint64(12) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		fx := newRecycleFixture(t)
		rng := rand.New(rand.NewPCG(seed, 99))
		var paths []string
		require.NoError(t, filepath.WalkDir(fx.retired, func(p string, d fs.DirEntry, err error) error {
			if p != fx.retired {
				paths = append(paths, p)
			}
			return err
		}))
		for range 1 + rng.IntN(8) {
			mutateRetired(t, rng, paths[rng.IntN(len(paths))], fx.bait)
		}
		dst, st, err := fx.applyRecycling(t)
		require.NoError(t, err)
		fx.requireSameAsFresh(t, dst)
		t.Logf("recycled %v (%s), removed %d", st.Recycled, st.RecycleNote, st.EntriesRemoved)
	})
}

// mutateRetired does one hostile change at p. A change that would write
// into an inode the base shares is not one: the base's own verification
// covers those (TestApplyDeltaBaseFileEditedInPlace).
func mutateRetired(t *testing.T, rng *rand.Rand, p, bait string) {
	fi, err := os.Lstat(p)
	if err != nil {
		return // under an entry an earlier mutation replaced
	}
	switch rng.IntN(7) {
	case 0:
		_ = os.WriteFile(filepath.Join(dirOf(fi, p), fmt.Sprintf("planted-%d.php", rng.IntN(100))), []byte("<?php evil();"), 0o644)
	case 1:
		require.NoError(t, os.RemoveAll(p))
		require.NoError(t, os.Symlink(bait, p))
	case 2:
		require.NoError(t, os.RemoveAll(p))
		require.NoError(t, os.Link(filepath.Join(bait, "secret"), p))
	case 3:
		require.NoError(t, os.RemoveAll(p))
		require.NoError(t, syscall.Mkfifo(p, 0o666))
	case 4:
		require.NoError(t, os.RemoveAll(p))
		require.NoError(t, os.MkdirAll(filepath.Join(p, "x", "y"), 0o777))
		require.NoError(t, os.Symlink("../../../../../../bait/secret", filepath.Join(p, "x", "y", "z")))
	case 5:
		if fi.IsDir() {
			require.NoError(t, os.Chmod(p, 0o777|fs.ModeSticky|fs.ModeSetgid))
		}
	case 6:
		require.NoError(t, os.RemoveAll(p))
	}
}

func dirOf(fi fs.FileInfo, p string) string {
	if fi.IsDir() {
		return p
	}
	return filepath.Dir(p)
}

// The name of a claimed tree never lingers: a retired tree that cannot
// be claimed (not a directory) is reported, and the delta goes on.
func TestApplyDeltaRecycleNotADirectory(t *testing.T) {
	fx := newRecycleFixture(t)
	require.NoError(t, os.RemoveAll(fx.retired))
	require.NoError(t, os.Symlink(fx.bait, fx.retired))
	fx.baitBefore = snapshotTree(t, fx.bait, "")
	dst, st, err := fx.applyRecycling(t)
	require.NoError(t, err)
	require.False(t, st.Recycled)
	require.True(t, strings.Contains(st.RecycleNote, "not a directory"), st.RecycleNote)
	require.NoError(t, os.Remove(fx.retired))
	fx.requireSameAsFresh(t, dst)
}

// A delta that falls back after it claimed the retired tree (here: the
// artifact's index was replaced) installs nothing and leaves nothing of
// the tree behind; the base and the bait are unchanged.
func TestApplyDeltaRecycleThenFallback(t *testing.T) {
	fx := newRecycleFixture(t)
	fx.baitBefore = snapshotTree(t, fx.bait, "")
	dst := filepath.Join(fx.dir, "releases", "2")
	st, err := ApplyDelta(context.Background(), DeltaOptions{
		Base: fx.base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(fx.a2)}, Size: int64(len(fx.a2)),
		IndexSHA256: fx.r1.IndexSHA256, Recycle: fx.retired,
	})
	require.ErrorIs(t, err, ErrDeltaFallback, "%+v", st)
	ents, rerr := os.ReadDir(filepath.Join(fx.dir, "releases"))
	require.NoError(t, rerr)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{"1"}, names, "only the base is left")
	require.Equal(t, fx.baseBefore, snapshotTree(t, fx.base, ""))
	require.Equal(t, fx.baitBefore, snapshotTree(t, fx.bait, ""))
}
