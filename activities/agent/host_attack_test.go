package agent_test

// Attacks on the root agent's steps after extraction: a release whose
// tree carries escaping symlinks (as a hostile commit would leave it), and
// a PHP user who writes inside the writable paths. Each test builds the
// hostile tree on disk, runs the real activity, and checks that nothing
// outside the release changed: bait files keep their owner, mode and
// content, and no file appears next to them.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/host/hostops"
)

// snapshot records owner, mode and content (or link target) of every
// entry below dir, without following links.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("uid=%d gid=%d mode=%v", st.Uid, st.Gid, fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " sha256=" + hex.EncodeToString(sum[:])
		}
		out[p] = v
		return nil
	}))
	return out
}

// newBait makes dir/bait: a 0700 directory holding a root-only 0600 file
// and a code/ directory with another, the shape of /etc or /root.
func newBait(t *testing.T, dir string) string {
	t.Helper()
	bait := filepath.Join(dir, "bait")
	require.NoError(t, os.MkdirAll(filepath.Join(bait, "code"), 0o700))
	require.NoError(t, os.Chmod(bait, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(bait, "shadow"), []byte("root:secret-hash\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(bait, "code", "id_rsa"), []byte("PRIVATE KEY\n"), 0o600))
	return bait
}

// extracted lays out releases/<id> as an extraction would have left it
// (no complete marker), so Prepare runs only its finishing steps on it.
func extracted(t *testing.T, f *hostFixture, id string, links map[string]string) string {
	t.Helper()
	dir := hostops.ReleaseDir(f.root, "shop", id)
	for _, d := range []string{"pub", "app/etc", "bin", "vendor"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pub/index.php"), []byte("<?php echo 'hi';\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin/magento"), []byte("#!/usr/bin/env php\n"), 0o755))
	for name, target := range links {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.Symlink(target, filepath.Join(dir, name)))
	}
	return dir
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("hands files to deploy_user/php_user (chown to other users) and must run as root: run it with `make test`, as CI does")
	}
}

func nonRetryableErr(t *testing.T, err error) string {
	t.Helper()
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "want an application error, got %v", err)
	require.True(t, ae.NonRetryable(), "a planted link does not go away by retrying: %v", err)
	return err.Error()
}

// TestAttackFinishStaysInsideRelease: a release carrying links out of it
// (`up -> ../../../..`, `var -> ../../..`, an absolute link to the bait)
// and a writable path whose parent is a link to a directory outside,
// holding a root-only 0600 file. Before the fix, ApplyOwnership followed
// the parent and made that file www-data's, mode 0660. Now Prepare refuses
// the linked parent by name, and once the link is gone it completes
// without touching anything outside the release.
func TestAttackFinishStaysInsideRelease(t *testing.T) {
	requireRoot(t)
	f := newHostFixture(t, "    deploy_user: daemon\n    php_user: www-data")
	f.targets.Env = "broken" // env.php from a secret, no config:set
	bait := newBait(t, f.dir)
	f.cfg.Apps["shop"].Environments["broken"].Writable = []string{"gen/code", "generated"}
	const id = "5-abcdef5"
	dir := extracted(t, f, id, map[string]string{
		"up":          "../../../..",
		"var":         "../../..",
		"pub/abs":     bait + "/shadow",
		"vendor/loop": "../vendor",
		"gen":         bait,
	})
	before := snapshot(t, f.dir)
	outside := func() {
		t.Helper()
		after := snapshot(t, f.dir)
		for p, v := range before {
			if strings.HasPrefix(p, hostops.AppDir(f.root, "shop")+"/") {
				continue // the release and shared/ are the agent's to change
			}
			require.Equal(t, v, after[p], "%s changed outside the release", p)
		}
		for p := range after {
			if !strings.HasPrefix(p, hostops.AppDir(f.root, "shop")+"/") {
				require.Contains(t, before, p, "%s was created outside the release", p)
			}
		}
	}
	in := agent.PrepareInput{HostTarget: f.targets, ReleaseID: id, ContentVersion: "9"}

	msg := nonRetryableErr(t, f.exec(f.acts.Prepare, in, nil))
	require.Contains(t, msg, filepath.Join(dir, "gen")+" is a symlink", "the error names the link")
	outside()
	require.NoFileExists(t, filepath.Join(dir, hostops.CompleteMarker))

	// The operator removes the link; the rest of the hostile tree stays.
	require.NoError(t, os.Remove(filepath.Join(dir, "gen")))
	require.NoError(t, f.exec(f.acts.Prepare, agent.PrepareInput{HostTarget: f.targets, ReleaseID: id, ContentVersion: "9"}, nil))
	outside()
	for _, p := range []string{"up", "pub/abs", "vendor/loop"} {
		fi, err := os.Lstat(filepath.Join(dir, p))
		require.NoError(t, err)
		require.True(t, fi.Mode()&fs.ModeSymlink != 0, "%s is still the link, owned by deploy_user", p)
		require.Equal(t, uint32(1), fi.Sys().(*syscall.Stat_t).Uid, p)
	}
	fi, err := os.Stat(filepath.Join(bait, "shadow"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.Equal(t, uint32(0), fi.Sys().(*syscall.Stat_t).Uid)
	// The writable paths exist inside the release, php_user's.
	fi, err = os.Lstat(filepath.Join(dir, "gen/code"))
	require.NoError(t, err)
	require.True(t, fi.IsDir())
	require.Equal(t, uint32(33), fi.Sys().(*syscall.Stat_t).Uid)
}

// TestAttackStaticLinkNotWrittenThrough: pub/static committed as a link —
// out of the release, or inside it to somewhere else — must not receive
// deployed_version.txt; Prepare fails naming the link.
func TestAttackStaticLinkNotWrittenThrough(t *testing.T) {
	for name, target := range map[string]func(bait string) string{
		"absolute outside": func(bait string) string { return bait },
		"relative outside": func(string) string { return "../../../../bait" },
		"inside elsewhere": func(string) string { return "../app/etc" },
	} {
		t.Run(name, func(t *testing.T) {
			f := newHostFixture(t, "")
			f.targets.Env = "broken"
			bait := newBait(t, f.dir)
			const id = "6-abcdef6"
			dir := extracted(t, f, id, map[string]string{"pub/static": target(bait)})
			before := snapshot(t, bait)
			err := f.exec(f.acts.Prepare, agent.PrepareInput{HostTarget: f.targets, ReleaseID: id, ContentVersion: "1700000000"}, nil)
			require.Contains(t, nonRetryableErr(t, err), filepath.Join(dir, "pub/static")+" is a symlink")
			require.Equal(t, before, snapshot(t, bait))
			require.NoFileExists(t, filepath.Join(bait, "deployed_version.txt"))
			require.NoFileExists(t, filepath.Join(dir, "app/etc/deployed_version.txt"))
			require.NoFileExists(t, filepath.Join(dir, hostops.CompleteMarker))
		})
	}
}

// TestAttackMarkerLinksReplacedNotFollowed: the release marker and the
// complete marker planted as links to a bait file are replaced by files;
// the bait keeps its content.
func TestAttackMarkerLinksReplacedNotFollowed(t *testing.T) {
	f := newHostFixture(t, "")
	f.targets.Env = "broken"
	bait := newBait(t, f.dir)
	const id = "7-abcdef7"
	dir := extracted(t, f, id, map[string]string{
		"pub/" + hostops.ReleaseMarker:        bait + "/shadow",
		hostops.CompleteMarker + ".tmp-x":     bait + "/shadow",
		"pub/static/deployed_version.txt":     bait + "/code/id_rsa",
		"pub/static/.deployed_version.txt.tm": bait + "/code/id_rsa",
	})
	require.NoError(t, os.Symlink(bait+"/shadow", filepath.Join(dir, hostops.CompleteMarker)))
	// A link as complete marker does not count as prepared.
	before := snapshot(t, bait)
	require.NoError(t, f.exec(f.acts.Prepare, agent.PrepareInput{HostTarget: f.targets, ReleaseID: id, ContentVersion: "42"}, nil))
	require.Equal(t, before, snapshot(t, bait))
	for p, want := range map[string]string{"pub/" + hostops.ReleaseMarker: id + "\n", "pub/static/deployed_version.txt": "42"} {
		fi, err := os.Lstat(filepath.Join(dir, p))
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular(), p)
		b, _ := os.ReadFile(filepath.Join(dir, p))
		require.Equal(t, want, string(b), p)
	}
	fi, err := os.Lstat(filepath.Join(dir, hostops.CompleteMarker))
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular())
}

// TestAttackPruneAndDiscardStayInside: releases holding links out of the
// release (to a directory, to a file, to the app root), read-only
// directories around them and a releases/ entry that is itself a link are
// pruned and discarded; nothing they point at is removed or changed.
func TestAttackPruneAndDiscardStayInside(t *testing.T) {
	f := newHostFixture(t, "")
	bait := newBait(t, f.dir)
	base := time.Now().Add(-48 * time.Hour)
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("%d-abcdef%d", i+1, i)
		ids = append(ids, id)
		fakeRelease(t, f.root, id, base.Add(time.Duration(i)*time.Hour))
		dir := hostops.ReleaseDir(f.root, "shop", id)
		for name, target := range map[string]string{
			"var": "../../..", "up": "../../../..", "bait": bait, "ro/shadow": bait + "/shadow", "ro/code": bait + "/code",
		} {
			require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
			require.NoError(t, os.Symlink(target, filepath.Join(dir, name)))
		}
		require.NoError(t, os.Chmod(filepath.Join(dir, "ro"), 0o555))
	}
	require.NoError(t, os.Symlink(bait, filepath.Join(hostops.ReleasesDir(f.root, "shop"), "9-abcdef9")))
	require.NoError(t, hostops.SwitchCurrent(f.root, "shop", ids[4]))
	before := snapshot(t, bait)
	appBefore := snapshot(t, f.dir)

	var pr agent.PruneResult
	f.acts.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	require.NoError(t, f.exec(f.acts.Prune, agent.PruneInput{HostTarget: f.targets, Keep: 1}, &pr))
	require.ElementsMatch(t, []string{ids[0], ids[1], ids[2], ids[3], "9-abcdef9"}, pr.Removed)
	require.Equal(t, before, snapshot(t, bait))

	fakeRelease(t, f.root, "8-abcdef8", base)
	require.NoError(t, os.Symlink(bait, filepath.Join(hostops.ReleaseDir(f.root, "shop", "8-abcdef8"), "pub/static")))
	require.NoError(t, f.exec(f.acts.Discard, f.ref("8-abcdef8"), nil))
	require.NoDirExists(t, hostops.ReleaseDir(f.root, "shop", "8-abcdef8"))
	require.Equal(t, before, snapshot(t, bait))
	after := snapshot(t, f.dir)
	for p, v := range appBefore {
		if !strings.HasPrefix(p, hostops.ReleasesDir(f.root, "shop")+"/") {
			require.Equal(t, v, after[p], "%s changed outside releases/", p)
		}
	}
}
