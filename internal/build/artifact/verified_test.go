package artifact

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// settle waits until files changed now are old enough to be remembered.
func settle() { time.Sleep(racyMargin + 100*time.Millisecond) }

func regularFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	}))
	return n
}

// Base files hashed earlier and unchanged since are not read again, on
// the link path and on the recycled path, and the release is still
// exactly a fresh extraction.
func TestApplyDeltaSkipsKnownInodes(t *testing.T) {
	for _, recycled := range []bool{false, true} {
		fx := newRecycleFixture(t)
		if !recycled {
			// Before hashing: an unlink changes the ctime of the base
			// inodes the retired tree shares, so none would be known.
			require.NoError(t, os.RemoveAll(fx.retired))
		}
		settle()
		v := &VerifiedInodes{}
		n, err := v.HashTree(context.Background(), fx.base)
		require.NoError(t, err)
		require.Equal(t, regularFiles(t, fx.base), n)
		fx.baitBefore = snapshotTree(t, fx.bait, "")
		dst := filepath.Join(fx.dir, "releases", "2")
		opt := DeltaOptions{Base: fx.base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(fx.a2)}, Size: int64(len(fx.a2)),
			IndexSHA256: fx.r2.IndexSHA256, Verified: v}
		if recycled {
			opt.Recycle = fx.retired
		}
		st, err := ApplyDelta(context.Background(), opt)
		require.NoError(t, err)
		if recycled {
			fx.requireSameAsFresh(t, dst)
		}
		full := filepath.Join(fx.dir, "full")
		if _, err := os.Lstat(full); err != nil {
			require.NoError(t, Extract(context.Background(), bytes.NewReader(fx.a2), full, ExtractOptions{MaxBytes: fx.r2.TarSize}))
		}
		require.Equal(t, contentView(t, full), contentView(t, dst))
		// Every linked file was known; only the copy (mode changed)
		// read its base file.
		require.Equal(t, st.FilesLinked, st.BaseFilesKnown, "recycled=%v %+v", recycled, st)
		require.Equal(t, 9, st.BaseFilesKnown, "recycled=%v %+v", recycled, st)
		require.Equal(t, fx.baseBefore, snapshotTree(t, fx.base, ""))
	}
}

// Hot-fixed in place after it was hashed, with its size and mtime put
// back: the inode's ctime changed, so the delta reads it again and falls
// back instead of carrying the edit into the new release.
func TestApplyDeltaKnownInodeEditedInPlace(t *testing.T) {
	fx := newDeltaFixture(t)
	settle()
	v := &VerifiedInodes{}
	_, err := v.HashTree(context.Background(), fx.base)
	require.NoError(t, err)
	editInPlace(t, fx)
	dst := filepath.Join(fx.dir, "releases", "2")
	_, err = ApplyDelta(context.Background(), DeltaOptions{Base: fx.base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(fx.a2)},
		Size: int64(len(fx.a2)), IndexSHA256: fx.r2.IndexSHA256, Verified: v})
	requireFallback(t, fx, dst, err, "vendor/other/pkg/C.php no longer matches")
}

// Only inodes root alone can write, changed long enough before they were
// hashed, are remembered; links are not followed.
func TestHashTreeRemembersOnlyWhatRootAloneWrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("files of another owner need root: run make test (as root in CI)")
	}
	dir := t.TempDir()
	rel, bait := filepath.Join(dir, "rel"), filepath.Join(dir, "bait")
	writeTree(t, bait, tree{"secret": "s\n"}, nil)
	writeTree(t, rel, tree{"ok.php": "1", "group-w.php": "2", "other-w.php": "3", "nobody.php": "4", "acl.php": "5", "sub/ok.php": "6"},
		map[string]os.FileMode{"group-w.php": 0o664, "other-w.php": 0o646})
	require.NoError(t, os.Chown(filepath.Join(rel, "nobody.php"), 65534, 65534))
	require.NoError(t, unix.Setxattr(filepath.Join(rel, "acl.php"), "system.posix_acl_access", posixACL(65534), 0))
	require.NoError(t, os.Symlink(filepath.Join(bait, "secret"), filepath.Join(rel, "link.php")))
	settle()
	writeTree(t, rel, tree{"fresh.php": "7"}, nil) // changed just now
	v := &VerifiedInodes{}
	n, err := v.HashTree(context.Background(), rel)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	known := func(p string) bool {
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(p, &st))
		_, ok := v.lookup(&st)
		return ok
	}
	require.True(t, known(filepath.Join(rel, "ok.php")))
	require.True(t, known(filepath.Join(rel, "sub/ok.php")))
	for _, p := range []string{"group-w.php", "other-w.php", "nobody.php", "acl.php", "fresh.php"} {
		require.False(t, known(filepath.Join(rel, p)), p)
	}
	require.False(t, known(filepath.Join(bait, "secret")))
	// Made writable for others afterwards: the chmod changed the ctime,
	// and the mode alone already refuses it.
	require.NoError(t, os.Chmod(filepath.Join(rel, "ok.php"), 0o666))
	require.False(t, known(filepath.Join(rel, "ok.php")))
}
