package hostops

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func inode(t *testing.T, p string) (ino, nlink uint64) {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	return st.Ino, uint64(st.Nlink)
}

// A release as a local user may have left it: links to root's files and
// directories, a FIFO. The spare holds hard links to the release's own
// inodes and to its symlinks, never anything they point at; the bait
// outside keeps its content and its link counts.
func TestStageSpareNeverFollows(t *testing.T) {
	dir := t.TempDir()
	rels, bait := filepath.Join(dir, "releases"), filepath.Join(dir, "bait")
	rel := filepath.Join(rels, "1-aaaaaaa")
	must(t, os.MkdirAll(filepath.Join(rel, "app/code/Vendor"), 0o755))
	must(t, os.MkdirAll(filepath.Join(rel, "pub"), 0o755))
	must(t, os.MkdirAll(filepath.Join(bait, "keys"), 0o700))
	must(t, os.WriteFile(filepath.Join(bait, "shadow"), []byte("root:hash\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(bait, "keys/id_rsa"), []byte("KEY\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(rel, "app/code/Vendor/Model.php"), []byte("<?php\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(rel, "pub/index.php"), []byte("<?php\n"), 0o644))
	must(t, os.Symlink(filepath.Join(bait, "keys"), filepath.Join(rel, "app/etc")))
	must(t, os.Symlink(filepath.Join(bait, "shadow"), filepath.Join(rel, "pub/robots.txt")))
	must(t, syscall.Mkfifo(filepath.Join(rel, "pub/fifo"), 0o666))
	shadowIno, shadowLinks := inode(t, filepath.Join(bait, "shadow"))
	keyIno, keyLinks := inode(t, filepath.Join(bait, "keys/id_rsa"))

	must(t, StageSpare(context.Background(), rels, "1-aaaaaaa", "", 0))
	slot, err := RecycleSlot(rels)
	must(t, err)
	if slot != "1-aaaaaaa" {
		t.Fatalf("slot holds %q", slot)
	}
	spare := filepath.Join(rels, RecyclePrefix+"1-aaaaaaa")
	for _, p := range []string{"app/code/Vendor/Model.php", "pub/index.php", "app/etc", "pub/robots.txt"} {
		a, _ := inode(t, filepath.Join(rel, p))
		b, _ := inode(t, filepath.Join(spare, p))
		if a != b {
			t.Errorf("%s: spare holds inode %d, the release %d", p, b, a)
		}
	}
	if l, err := os.Readlink(filepath.Join(spare, "app/etc")); err != nil || l != filepath.Join(bait, "keys") {
		t.Errorf("app/etc in the spare: %q %v, want the symlink itself", l, err)
	}
	if ino, n := inode(t, filepath.Join(bait, "shadow")); ino != shadowIno || n != shadowLinks {
		t.Errorf("bait shadow: inode %d links %d, was %d/%d", ino, n, shadowIno, shadowLinks)
	}
	if ino, n := inode(t, filepath.Join(bait, "keys/id_rsa")); ino != keyIno || n != keyLinks {
		t.Errorf("bait key: inode %d links %d, was %d/%d", ino, n, keyIno, keyLinks)
	}
	ents, err := os.ReadDir(rels)
	must(t, err)
	if len(ents) != 2 {
		t.Errorf("releases/ holds %v, want the release and the slot", ents)
	}
}

// A mount inside the release (a bind mount of /var/www/media, say) is not
// entered: its files get no new names.
func TestStageSpareStopsAtMountPoints(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root: run make test (as root in CI)")
	}
	dir := t.TempDir()
	rels := filepath.Join(dir, "releases")
	rel := filepath.Join(rels, "1-aaaaaaa")
	must(t, os.MkdirAll(filepath.Join(rel, "pub/media"), 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "none", filepath.Join(rel, "pub/media")).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs as root: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", filepath.Join(rel, "pub/media")).Run() })
	must(t, os.WriteFile(filepath.Join(rel, "pub/media/photo.jpg"), []byte("jpg"), 0o644))
	must(t, StageSpare(context.Background(), rels, "1-aaaaaaa", "", 0))
	if _, err := os.Lstat(filepath.Join(rels, RecyclePrefix+"1-aaaaaaa", "pub/media")); !os.IsNotExist(err) {
		t.Errorf("the mount point was copied into the spare: %v", err)
	}
}

// Cancelled, or with the slot taken meanwhile, staging leaves nothing.
func TestStageSpareLeavesNothingWhenItCannotFinish(t *testing.T) {
	dir := t.TempDir()
	rels := filepath.Join(dir, "releases")
	must(t, os.MkdirAll(filepath.Join(rels, "2-bbbbbbb", "app"), 0o755))
	must(t, os.MkdirAll(filepath.Join(rels, RecyclePrefix+"1-aaaaaaa"), 0o755))
	err := StageSpare(context.Background(), rels, "2-bbbbbbb", "", 0)
	if err == nil || !strings.Contains(err.Error(), "already holds 1-aaaaaaa") {
		t.Fatalf("slot taken: got %v", err)
	}
	must(t, os.Remove(filepath.Join(rels, RecyclePrefix+"1-aaaaaaa")))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := StageSpare(ctx, rels, "2-bbbbbbb", "", 0); err == nil {
		t.Fatal("a cancelled staging succeeded")
	}
	// A release name that is a link to a tree elsewhere is not copied.
	must(t, os.Symlink(filepath.Join(rels, "2-bbbbbbb"), filepath.Join(rels, "3-ccccccc")))
	if err := StageSpare(context.Background(), rels, "3-ccccccc", "", 0); err == nil {
		t.Error("a release that is a symlink was staged")
	}
	must(t, os.Remove(filepath.Join(rels, "3-ccccccc")))
	for _, bad := range []string{"", ".recycle-x", "../2-bbbbbbb"} {
		if err := StageSpare(context.Background(), rels, bad, "", 0); err == nil {
			t.Errorf("release id %q accepted", bad)
		}
	}
	ents, err := os.ReadDir(rels)
	must(t, err)
	if len(ents) != 1 || ents[0].Name() != "2-bbbbbbb" {
		t.Errorf("releases/ holds %v, want only the release", ents)
	}
}

// Staging stops before it takes the disk's margin, and leaves nothing.
func TestStageSpareKeepsTheFreeSpaceMargin(t *testing.T) {
	dir := t.TempDir()
	rels := filepath.Join(dir, "releases")
	must(t, os.MkdirAll(filepath.Join(rels, "1-aaaaaaa", "app/code"), 0o755))
	err := StageSpare(context.Background(), rels, "1-aaaaaaa", "", 1<<62)
	if !errors.Is(err, ErrSpareNoSpace) {
		t.Fatalf("got %v, want ErrSpareNoSpace", err)
	}
	ents, err := os.ReadDir(rels)
	must(t, err)
	if len(ents) != 1 {
		t.Errorf("releases/ holds %v, want only the release", ents)
	}
}
