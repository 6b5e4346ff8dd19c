package hostops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPaths(t *testing.T) {
	for got, want := range map[string]string{
		ReleasesDir("/srv", "shop"):     "/srv/shop/releases",
		SharedDir("/srv", "shop"):       "/srv/shop/shared",
		CurrentLink("/srv", "shop"):     "/srv/shop/current",
		MaintenanceFlag("/srv", "shop"): "/srv/shop/maintenance.flag",
		ReleaseMarkerPath("magento2"):   "pub/.mageflow-release",
		ReleaseMarkerPath("magento1"):   ".mageflow-release",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "env.php")
	must(t, WriteFileAtomic(p, []byte("one"), 0o640, NoChange))
	must(t, WriteFileAtomic(p, []byte("two"), 0o640, NoChange))
	b, err := os.ReadFile(p)
	must(t, err)
	fi, err := os.Stat(p)
	must(t, err)
	if string(b) != "two" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("got %q mode %o", b, fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestLinkShared(t *testing.T) {
	dir := t.TempDir()
	rel, shared := filepath.Join(dir, "rel"), filepath.Join(dir, "shared")
	must(t, os.MkdirAll(filepath.Join(rel, "pub/media/catalog"), 0o755))
	must(t, os.WriteFile(filepath.Join(rel, "pub/media/catalog/x.jpg"), []byte("x"), 0o644))
	must(t, os.MkdirAll(filepath.Join(rel, "app/etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(rel, "app/etc/settings.ini"), []byte("default"), 0o644))

	// A directory in the release is replaced by the link; twice is fine.
	for range 2 {
		must(t, LinkShared(rel, shared, "pub/media", false, NoChange))
	}
	if l, _ := os.Readlink(filepath.Join(rel, "pub/media")); l != filepath.Join(shared, "pub/media") {
		t.Fatalf("pub/media -> %q", l)
	}
	if fi, err := os.Stat(filepath.Join(shared, "pub/media")); err != nil || !fi.IsDir() {
		t.Fatalf("shared pub/media not created: %v", err)
	}
	// A missing shared file is seeded from the release's copy.
	must(t, LinkShared(rel, shared, "app/etc/settings.ini", true, NoChange))
	b, err := os.ReadFile(filepath.Join(rel, "app/etc/settings.ini"))
	must(t, err)
	if string(b) != "default" {
		t.Fatalf("seeded %q", b)
	}
	// An existing shared file wins over the release's copy.
	must(t, os.WriteFile(filepath.Join(shared, "app/etc/settings.ini"), []byte("host"), 0o644))
	must(t, LinkShared(rel, shared, "app/etc/settings.ini", true, NoChange))
	b, _ = os.ReadFile(filepath.Join(rel, "app/etc/settings.ini"))
	if string(b) != "host" {
		t.Fatalf("got %q", b)
	}
	// A parent that leaves the release is refused.
	outside := filepath.Join(dir, "outside")
	must(t, os.MkdirAll(outside, 0o755))
	must(t, os.Symlink(outside, filepath.Join(rel, "evil")))
	if err := LinkShared(rel, shared, "evil/x", false, NoChange); err == nil || !strings.Contains(err.Error(), filepath.Join(rel, "evil")+" is a symlink") {
		t.Fatalf("got %v", err)
	}
	for _, bad := range []string{"../x", "/etc", "."} {
		if err := LinkShared(rel, shared, bad, false, NoChange); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestCurrent(t *testing.T) {
	root := t.TempDir()
	if id, err := ReadCurrent(root, "shop"); err != nil || id != "" {
		t.Fatalf("no current: %q %v", id, err)
	}
	must(t, os.MkdirAll(ReleaseDir(root, "shop", "1-abcdef0"), 0o755))
	must(t, SwitchCurrent(root, "shop", "1-abcdef0"))
	if id, err := ReadCurrent(root, "shop"); err != nil || id != "1-abcdef0" {
		t.Fatalf("got %q %v", id, err)
	}
	must(t, os.Remove(CurrentLink(root, "shop")))
	must(t, os.Symlink("/etc", CurrentLink(root, "shop")))
	if _, err := ReadCurrent(root, "shop"); err == nil {
		t.Fatal("a current outside releases/ was accepted")
	}
}

func TestRemoveTreeAndList(t *testing.T) {
	root := t.TempDir()
	rels := ReleasesDir(root, "shop")
	must(t, os.MkdirAll(filepath.Join(rels, "1-abcdef0", "ro"), 0o755))
	must(t, os.WriteFile(filepath.Join(rels, "1-abcdef0", CompleteMarker), nil, 0o644))
	must(t, os.MkdirAll(filepath.Join(rels, ".tmp-2-abcdef1-x"), 0o755))
	must(t, os.MkdirAll(filepath.Join(rels, "3-abcdef2"), 0o755))
	must(t, os.Chmod(filepath.Join(rels, "1-abcdef0", "ro"), 0o555))

	rs, err := ListReleases(rels)
	must(t, err)
	if len(rs) != 2 || !rs[0].Complete || rs[1].Complete || time.Since(rs[1].ChangedAt) > time.Minute {
		t.Fatalf("releases %+v", rs)
	}
	ts, err := ListTemps(rels)
	must(t, err)
	if len(ts) != 1 || ts[0].ID != ".tmp-2-abcdef1-x" {
		t.Fatalf("temps %+v", ts)
	}
	must(t, RemoveTree(rels, "1-abcdef0"))
	must(t, RemoveTree(rels, "1-abcdef0"))
	ents, _ := os.ReadDir(rels)
	for _, e := range ents {
		if strings.Contains(e.Name(), "1-abcdef0") {
			t.Fatalf("left %s", e.Name())
		}
	}
}

func TestCodeMode(t *testing.T) {
	for _, c := range []struct {
		in    os.FileMode
		dir   bool
		code  os.FileMode
		write os.FileMode
	}{
		{0o644, false, 0o640, 0o660},
		{0o755, false, 0o750, 0o770},
		{0o777, true, 0o750, 0o770},
		{0o600, false, 0o640, 0o660},
	} {
		if got := CodeMode(c.in, c.dir); got != c.code {
			t.Errorf("CodeMode(%o) = %o, want %o", c.in, got, c.code)
		}
		if got := WritableMode(c.in, c.dir); got != c.write {
			t.Errorf("WritableMode(%o) = %o, want %o", c.in, got, c.write)
		}
	}
}
