package artifact

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A host that hands releases to a deploy user (hosts.<n>.deploy_user) has
// base files owned by that user with hardened modes; LinkAs tells
// ApplyDelta so, and forbids links below paths the PHP user may write.
func TestApplyDeltaLinkAsFollowsTheHostsOwnership(t *testing.T) {
	fx := newDeltaFixture(t)
	// The base as the host's preparation left it: group-readable only.
	require.NoError(t, filepath.Walk(fx.base, func(p string, fi os.FileInfo, err error) error {
		require.NoError(t, err)
		if fi.Mode().IsRegular() {
			require.NoError(t, os.Chmod(p, fi.Mode().Perm()&^0o004))
		}
		return nil
	}))
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	var asked []string
	dst := filepath.Join(fx.dir, "releases", "2")
	st, err := ApplyDelta(context.Background(), DeltaOptions{
		Base: fx.base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(fx.a2)}, Size: int64(len(fx.a2)), IndexSHA256: fx.r2.IndexSHA256,
		LinkAs: func(p string, mode uint32) (uint32, uint32, uint32, bool) {
			asked = append(asked, p)
			return uid, gid, mode &^ 0o004, !strings.HasPrefix(p, "generated/") && !strings.HasPrefix(p, "pub/static/")
		},
	})
	require.NoError(t, err)
	require.NotEmpty(t, asked, "LinkAs was never asked")
	for _, p := range []string{"index.php", "vendor/acme/lib/src/B.php"} {
		requireSameInode(t, true, filepath.Join(fx.base, p), filepath.Join(dst, p))
	}
	big := "pub/static/frontend/big.bin"
	requireSameInode(t, false, filepath.Join(fx.base, big), filepath.Join(dst, big))
	var s syscall.Stat_t
	require.NoError(t, syscall.Stat(filepath.Join(dst, big), &s))
	require.EqualValues(t, 1, s.Nlink, "a file below a path LinkAs refuses is a copy")
	require.Positive(t, st.FilesCopied)

	// Without LinkAs a base file whose mode the host changed is copied:
	// linking it would give the new release a mode its index does not say.
	require.NoError(t, os.RemoveAll(dst))
	_, err = ApplyDelta(context.Background(), DeltaOptions{
		Base: fx.base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(fx.a2)}, Size: int64(len(fx.a2)), IndexSHA256: fx.r2.IndexSHA256,
	})
	require.NoError(t, err)
	requireSameInode(t, false, filepath.Join(fx.base, "index.php"), filepath.Join(dst, "index.php"))
	fi, err := os.Stat(filepath.Join(dst, "index.php"))
	require.NoError(t, err)
	require.EqualValues(t, 0o644, fi.Mode().Perm(), "the copy has the index's mode")
}

// Files the host rewrites after extraction differ from the base's index by
// design: Fetch takes them from the artifact instead of falling back.
func TestApplyDeltaFetchesWhatTheHostRewrites(t *testing.T) {
	fx := newDeltaFixture(t)
	marker := filepath.Join(fx.base, "vendor/other/pkg/C.php")
	require.NoError(t, os.Remove(marker))
	require.NoError(t, os.WriteFile(marker, []byte("rewritten by the host\n"), 0o644))
	dst := filepath.Join(fx.dir, "releases", "2")
	opt := DeltaOptions{Base: fx.base, Dst: dst, Source: ReaderAtRange{bytes.NewReader(fx.a2)}, Size: int64(len(fx.a2)), IndexSHA256: fx.r2.IndexSHA256}
	_, err := ApplyDelta(context.Background(), opt)
	require.ErrorIs(t, err, ErrDeltaFallback, "without Fetch a base file unlike its index falls back")

	opt.Fetch = func(p string) bool { return p == "vendor/other/pkg/C.php" }
	_, err = ApplyDelta(context.Background(), opt)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dst, "vendor/other/pkg/C.php"))
	require.NoError(t, err)
	require.Equal(t, "<?php class C {}\n", string(b), "the artifact's bytes, not the host's")
	requireSameInode(t, false, marker, filepath.Join(dst, "vendor/other/pkg/C.php"))
}
