package m1fix

import (
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// TestWorldWritableDataDirsClosed is the stock-host case: var/ and media/
// world-writable (0777 from an installer's umask(0)). Apply and the audit's
// fix text must agree: nothing stays world-writable, and PHP keeps its
// write under var/ and media/ through owner or group.
func TestWorldWritableDataDirsClosed(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	writeTree(t, root)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	ng, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Fatal(err)
	}
	phpUID, _ := strconv.Atoi(nobody.Uid)
	phpGID, _ := strconv.Atoi(ng.Gid)
	// var/ and media/ as a stock install leaves them: some owned by the PHP
	// user, some by root, everything world-writable.
	for p, owner := range map[string]int{"var": 0, "var/log": phpUID, "var/log/system.log": phpUID, "media": phpUID, "media/catalog/product/a.jpg": 0, "media/catalog": 0} {
		if err := os.Lchown(filepath.Join(root, p), owner, 0); err != nil {
			t.Fatalf("chown (tests run as root): %v", err)
		}
	}
	_ = filepath.WalkDir(filepath.Join(root, "var"), chmodWorld)
	_ = filepath.WalkDir(filepath.Join(root, "media"), chmodWorld)
	if err := os.Chmod(filepath.Join(root, "app/etc/local.xml"), 0o666); err != nil {
		t.Fatal(err)
	}
	tg := &m1audit.Target{WebRoot: root, PHPUser: "nobody", PHPGroup: "nogroup"}
	o := Options{DeployUser: currentUserName(t)}
	r := applyOwnership(tg, o)
	if r.Status != m1audit.StatusFixed || !strings.Contains(r.Evidence.Detail, "under the writable paths (media, var") {
		t.Fatalf("%s %q", r.Status, r.Evidence.Detail)
	}
	if strings.Contains(r.Evidence.Detail, "left writable") {
		t.Errorf("apply still says it left paths writable: %q", r.Evidence.Detail)
	}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, _ := d.Info()
		rel, _ := filepath.Rel(root, p)
		if fi.Mode().Perm()&0o002 != 0 {
			t.Errorf("%s still world-writable: %v", rel, fi.Mode())
		}
		if rel == "var" || strings.HasPrefix(rel, "var/") || rel == "media" || strings.HasPrefix(rel, "media/") {
			st := fi.Sys().(*syscall.Stat_t)
			byOwner := int(st.Uid) == phpUID && fi.Mode().Perm()&0o200 != 0
			byGroup := int(st.Gid) == phpGID && fi.Mode().Perm()&0o020 != 0
			if !byOwner && !byGroup {
				t.Errorf("%s: PHP lost write (%v %d:%d)", rel, fi.Mode(), st.Uid, st.Gid)
			}
		}
		return nil
	})
	if r := applyOwnership(tg, o); r.Status != m1audit.StatusPass || r.Evidence.Detail != unchanged {
		t.Errorf("second run: %s %q", r.Status, r.Evidence.Detail)
	}
}

func chmodWorld(p string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	if d.IsDir() {
		return os.Chmod(p, 0o777)
	}
	return os.Chmod(p, 0o666)
}
