package m1audit

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// permFixture builds a tree whose every path is owned by owner:group. As
// root the tree is chowned to an unprivileged uid/gid so the owner identity
// is not root; otherwise the current user owns it.
type permFixture struct {
	root         string
	owner, group int
	asRoot       bool
}

func newPermFixture(t *testing.T, entries []struct {
	path string
	mode fs.FileMode
	dir  bool
}) permFixture {
	t.Helper()
	f := permFixture{root: t.TempDir(), owner: os.Getuid(), group: os.Getgid(), asRoot: os.Getuid() == 0}
	if f.asRoot {
		f.owner, f.group = 4242, 4242
		// Other users must reach the tree for the kernel cross-check.
		for _, d := range []string{filepath.Dir(f.root), f.root} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, e := range entries {
		p := filepath.Join(f.root, e.path)
		if e.dir {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Modes last (deepest first), so a 0700 or 0500 parent does not stop
	// the creation of its children.
	for i := len(entries) - 1; i >= 0; i-- {
		p := filepath.Join(f.root, entries[i].path)
		if f.asRoot {
			if err := os.Lchown(p, f.owner, f.group); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(p, entries[i].mode); err != nil {
			t.Fatal(err)
		}
	}
	if f.asRoot {
		if err := os.Chown(f.root, f.owner, f.group); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(f.root, 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// kernelWritable asks the kernel whether id may write path: as root by
// running `test -w` as that user, otherwise with access(2) when id is the
// current user. ok=false means the kernel cannot be asked for this id.
func kernelWritable(t *testing.T, path string, id Identity) (writable, ok bool) {
	t.Helper()
	if os.Getuid() != 0 {
		if id.UID != os.Getuid() {
			return false, false
		}
		return syscall.Access(path, 2 /* W_OK */) == nil, true
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("the kernel cross-check runs `sh -c 'test -w'` as another user; install a POSIX sh: %v", err)
	}
	cmd := exec.Command(sh, "-c", `test -w "$1"`, "sh", path)
	groups := make([]uint32, len(id.GIDs))
	for i, g := range id.GIDs {
		groups[i] = uint32(g)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(id.UID), Gid: groups[0], Groups: groups}}
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, true
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return false, true
	default:
		t.Fatalf("run test -w as uid %d: %v", id.UID, err)
		return false, false
	}
}

func TestPermBitsPOSIXClassOrder(t *testing.T) {
	owner := Identity{UID: 10, GIDs: []int{20}}
	member := Identity{UID: 11, GIDs: []int{99, 20}}
	other := Identity{UID: 12, GIDs: []int{30}}
	cases := []struct {
		mode                fs.FileMode
		owner, member, othr bool
	}{
		{0o600, true, false, false},
		{0o060, false, true, false}, // owner class wins even though group may write
		{0o006, false, false, true}, // group class wins for members
		{0o666, true, true, true},
		{0o444, false, false, false},
	}
	for _, c := range cases {
		for _, x := range []struct {
			id   Identity
			want bool
		}{{owner, c.owner}, {member, c.member}, {other, c.othr}, {Identity{UID: 0}, true}} {
			if got := permBits(x.id, 10, 20, c.mode)&2 != 0; got != x.want {
				t.Errorf("mode %o uid %d: writable=%v, want %v", c.mode, x.id.UID, got, x.want)
			}
		}
	}
}

var permEntries = []struct {
	path string
	mode fs.FileMode
	dir  bool
}{
	{"app", 0o755, true},
	{"app/etc", 0o755, true},
	{"app/etc/local.xml", 0o440, false},
	{"app/code", 0o755, true},
	{"app/code/local", 0o775, true},
	{"lib", 0o755, true},
	{"lib/w.php", 0o606, false},
	{"skin", 0o755, true},
	{"skin/x.css", 0o664, false},
	{"var", 0o770, true},
	{"var/cache", 0o770, true},
	{"var/cache/x", 0o660, false},
	{"media", 0o775, true},
	{"media/x.jpg", 0o664, false},
	{"hidden", 0o750, true},
	{"hidden/secret", 0o700, true},
	{"hidden/secret/f", 0o666, false},
}

func TestWritableByMatchesKernel(t *testing.T) {
	f := newPermFixture(t, permEntries)
	ids := map[string]Identity{
		"owner":  {UID: f.owner, GIDs: []int{f.group}},
		"member": {UID: f.owner + 1, GIDs: []int{f.owner + 100, f.group}},
		"other":  {UID: f.owner + 2, GIDs: []int{f.owner + 101}},
	}
	want := map[string]map[string]bool{ // path -> identity -> writable by mode
		"app/etc/local.xml": {"owner": false, "member": false, "other": false},
		"app/code/local":    {"owner": true, "member": true, "other": false},
		"lib/w.php":         {"owner": true, "member": false, "other": true},
		"skin/x.css":        {"owner": true, "member": true, "other": false},
	}
	checked := 0
	for p, byID := range want {
		for name, w := range byID {
			got, err := WritableBy(filepath.Join(f.root, p), ids[name])
			if err != nil {
				t.Fatal(err)
			}
			if got != w {
				t.Errorf("WritableBy(%s, %s) = %v, want %v", p, name, got, w)
			}
			// Only paths whose parents the identity can traverse, since
			// WritableBy deliberately judges the path alone.
			if k, ok := kernelWritable(t, filepath.Join(f.root, p), ids[name]); ok {
				checked++
				if k != got {
					t.Errorf("kernel says %s writable by %s = %v, WritableBy says %v", p, name, k, got)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no kernel cross-check ran")
	}
	if _, err := WritableBy(filepath.Join(f.root, "nope"), ids["owner"]); err == nil {
		t.Error("missing path: no error")
	}
}

func TestWritableTree(t *testing.T) {
	f := newPermFixture(t, permEntries)
	member := Identity{UID: f.owner + 1, GIDs: []int{f.owner + 100, f.group}}
	other := Identity{UID: f.owner + 2, GIDs: []int{f.owner + 101}}
	owner := Identity{UID: f.owner, GIDs: []int{f.group}}
	if err := os.Symlink("/etc/passwd", filepath.Join(f.root, "app/link")); err != nil {
		t.Fatal(err)
	}
	allow := []string{"var", "media/"}

	list := func(id Identity) map[string]string {
		t.Helper()
		ws, err := WritableTree(context.Background(), f.root, id, allow)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, w := range ws {
			m[w.Path] = w.Why
		}
		return m
	}
	str := func(m map[string]string) string {
		var parts []string
		for _, e := range permEntries {
			if why, ok := m[e.path]; ok {
				parts = append(parts, e.path+"="+why)
			}
		}
		if why, ok := m["."]; ok {
			parts = append([]string{".=" + why}, parts...)
		}
		return strings.Join(parts, " ")
	}

	// The PHP user in the code group: the group-writable code dir and CSS,
	// not the 0606 file (group bits apply to members), not the unreachable
	// hidden/secret/f, nothing under var/ or media/.
	if got, want := str(list(member)), "app/code/local=mode skin/x.css=mode"; got != want {
		t.Errorf("member: %s, want %s", got, want)
	}
	if got, want := str(list(other)), "lib/w.php=mode"; got != want {
		t.Errorf("other: %s, want %s", got, want)
	}
	// The PHP user owning the code: every path, read-only ones as "owner"
	// because it can chmod them back.
	ownerList := list(owner)
	if ownerList["app/etc/local.xml"] != "owner" || ownerList["hidden/secret/f"] != "mode" || ownerList["."] != "mode" {
		t.Errorf("owner: %s", str(ownerList))
	}
	for p := range ownerList {
		if strings.HasPrefix(p, "var") || strings.HasPrefix(p, "media") || p == "app/link" {
			t.Errorf("owner: allowed or symlink path %s listed", p)
		}
	}

	// Every path the kernel lets an identity write (outside the allowed
	// subtrees) must be listed as "mode", and nothing else.
	checked := 0
	for _, id := range []Identity{member, other, owner} {
		listed := list(id)
		for _, e := range permEntries {
			if strings.HasPrefix(e.path, "var") || strings.HasPrefix(e.path, "media") {
				continue
			}
			k, ok := kernelWritable(t, filepath.Join(f.root, e.path), id)
			if !ok {
				continue
			}
			checked++
			if k != (listed[e.path] == "mode") {
				t.Errorf("uid %d %s: kernel writable=%v, WritableTree=%q", id.UID, e.path, k, listed[e.path])
			}
		}
	}
	if checked == 0 {
		t.Fatal("no kernel cross-check ran")
	}

	if _, err := WritableTree(context.Background(), f.root, member, []string{"/"}); err == nil {
		t.Error("allow list of the whole tree accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WritableTree(ctx, f.root, member, allow); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
