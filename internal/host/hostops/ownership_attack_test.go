package hostops

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// baitState is the owner and mode of every entry of a bait tree.
func baitState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s uid=%d gid=%d mode=%v\n", p, st.Uid, st.Gid, fi.Mode())
		return nil
	}))
	return b.String()
}

func newBaitDir(t *testing.T) string {
	t.Helper()
	bait := filepath.Join(t.TempDir(), "bait")
	must(t, os.Mkdir(bait, 0o700))
	must(t, os.WriteFile(filepath.Join(bait, "shadow"), []byte("root:hash\n"), 0o600))
	return bait
}

// testUsers are deploy_user daemon and php_user www-data as root; as
// another user, chown can only hand files to oneself, and the attack is
// then seen in the modes alone (a followed link would get 0770/0660).
func testUsers() Users {
	if os.Geteuid() == 0 {
		return Users{Deploy: Owner{1, 33}, PHP: Owner{33, 33}}
	}
	return Users{Deploy: Owner{os.Getuid(), os.Getgid()}, PHP: Owner{os.Getuid(), os.Getgid()}}
}

// TestAttackOwnershipSymlinkSwapRace is the PHP user's race against
// ApplyOwnership: once a writable directory is theirs, they swap its
// children (directories and files) for symlinks to a root-only directory
// and back, in a tight loop, while the agent hands the tree over — the old
// code chowned by name and then chmodded by path, so a swap in between
// made the agent chmod the link's target. The attacker here is a goroutine
// of the test (running as the test's user, root in CI) doing exactly the
// renames and symlinks the PHP user can do in a directory it owns. Over
// many runs, the bait must never change owner or mode.
func TestAttackOwnershipSymlinkSwapRace(t *testing.T) {
	rel := filepath.Join(t.TempDir(), "release")
	const n = 24
	for i := range n {
		d := filepath.Join(rel, "var2", fmt.Sprintf("d%02d", i))
		must(t, os.MkdirAll(filepath.Join(d, "sub"), 0o755))
		must(t, os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644))
	}
	bait := newBaitDir(t)
	want := baitState(t, bait)
	u := testUsers()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var swaps int
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d := filepath.Join(rel, "var2", fmt.Sprintf("d%02d", i%n))
			// Swap the directory for a link to the bait, then a file in it
			// for a link to the bait's file, and put everything back.
			if os.Rename(d, d+".moved") == nil {
				_ = os.Symlink(bait, d)
				runtime.Gosched()
				_ = os.Remove(d)
				_ = os.Rename(d+".moved", d)
			}
			f := filepath.Join(d, "f")
			if os.Rename(f, f+".moved") == nil {
				_ = os.Symlink(filepath.Join(bait, "shadow"), f)
				runtime.Gosched()
				_ = os.Remove(f)
				_ = os.Rename(f+".moved", f)
			}
			swaps++
		}
	})
	deadline := time.Now().Add(3 * time.Second)
	runs, failures := 0, 0
	for ; runs < 400 && time.Now().Before(deadline); runs++ {
		if err := ApplyOwnership(rel, u, []string{"var2"}); err != nil {
			failures++ // a step racing the attacker may fail; it is retried
		}
		if got := baitState(t, bait); got != want {
			close(stop)
			wg.Wait()
			t.Fatalf("run %d: the bait changed through a swapped-in symlink:\n%s\nwant\n%s", runs, got, want)
		}
	}
	close(stop)
	wg.Wait()
	if swaps < 100 {
		t.Fatalf("only %d swaps happened during %d runs: the race was not exercised", swaps, runs)
	}
	t.Logf("%d runs, %d swaps, %d runs ended in an error", runs, swaps, failures)
	// Without the attacker, the tree is handed over completely.
	must(t, ApplyOwnership(rel, u, []string{"var2"}))
	fi, err := os.Stat(filepath.Join(rel, "var2", "d03", "f"))
	must(t, err)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.PHP.UID || fi.Mode().Perm() != 0o660 {
		t.Fatalf("var2/d03/f: uid %d mode %o, want %d 0660", st.Uid, fi.Mode().Perm(), u.PHP.UID)
	}
}

// TestAttackOwnershipHardLink: a PHP user hard-links a root file into a
// writable directory (possible where fs.protected_hardlinks is off); the
// next deploy must not hand the linked inode over.
func TestAttackOwnershipHardLink(t *testing.T) {
	rel := filepath.Join(t.TempDir(), "release")
	must(t, os.MkdirAll(filepath.Join(rel, "var2"), 0o755))
	bait := newBaitDir(t)
	if err := os.Link(filepath.Join(bait, "shadow"), filepath.Join(rel, "var2", "shadow")); err != nil {
		t.Fatalf("hard link (release and bait share a file system under the test's temp dir): %v", err)
	}
	want := baitState(t, bait)
	must(t, ApplyOwnership(rel, testUsers(), []string{"var2"}))
	if got := baitState(t, bait); got != want {
		t.Fatalf("the hard-linked root file was handed over:\n%s\nwant\n%s", got, want)
	}
}

// TestAttackSharedWritableLink: the PHP user owns shared/var and plants
// shared/var/log -> the bait before a deploy makes var/log writable.
func TestAttackSharedWritableLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the planted link must belong to php_user (another uid), which needs root: run it with `make test`, as CI does")
	}
	shared := filepath.Join(t.TempDir(), "shared")
	must(t, os.MkdirAll(filepath.Join(shared, "var"), 0o755))
	bait := newBaitDir(t)
	must(t, os.Symlink(bait, filepath.Join(shared, "var", "log")))
	u := testUsers()
	must(t, os.Lchown(filepath.Join(shared, "var", "log"), u.PHP.UID, u.PHP.GID))
	want := baitState(t, bait)
	err := SharedWritable(shared, "var/log", u)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(shared, "var", "log")+" is a symlink") {
		t.Fatalf("got %v, want a refusal naming the link", err)
	}
	// A path below a planted link is refused too.
	must(t, os.Symlink(bait, filepath.Join(shared, "var", "up")))
	must(t, os.Lchown(filepath.Join(shared, "var", "up"), u.PHP.UID, u.PHP.GID))
	if err := SharedWritable(shared, "var/up/x", u); err == nil {
		t.Fatal("a path below a planted link was accepted")
	}
	if got := baitState(t, bait); got != want {
		t.Fatalf("bait changed:\n%s\nwant\n%s", got, want)
	}
}
