package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStopEscalatesToSIGKILL(t *testing.T) {
	dir := t.TempDir()
	// Ignores SIGTERM, as a wedged service would; its child too.
	p, err := StartProc("stubborn", dir, exec.Command("sh", "-c", `trap "" TERM; sleep 60 & wait; sleep 60`))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	err = p.Stop(500 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop = %v, want the kill reported", err)
	}
	if !p.Exited() || time.Since(start) > 5*time.Second {
		t.Errorf("exited %v after %s", p.Exited(), time.Since(start))
	}
	b, _ := os.ReadFile(filepath.Join(dir, "stubborn.log"))
	if !strings.Contains(string(b), "start: ") {
		t.Errorf("log %q", b)
	}
}

func TestStopEndsTheWholeGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	p, err := StartProc("parent", dir, exec.Command("sh", "-c", `sleep 60 & echo $! > `+pidFile+`; wait`))
	if err != nil {
		t.Fatal(err)
	}
	var pid string
	for i := 0; i < 50 && pid == ""; i++ {
		b, _ := os.ReadFile(pidFile)
		pid = strings.TrimSpace(string(b))
		time.Sleep(50 * time.Millisecond)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if b, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil && !strings.Contains(string(b), ") Z ") {
		t.Errorf("child %s of the stopped process still runs: %s", pid, b)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop = %v", err)
	}
}

// A link planted where a config or the password file goes is replaced,
// never written through (the supervisor runs as root).
func TestWriteFileAtomicReplacesAPlantedLink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "frontend.yaml")
	if err := os.Symlink(victim, target); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(target, []byte("config"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the link's target was written: %q", b)
	}
	fi, err := os.Lstat(target)
	if err != nil || fi.Mode()&os.ModeSymlink != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("target %v %v", fi.Mode(), err)
	}
	if _, err := readFileNoFollow(filepath.Join(dir, "link2")); err == nil {
		t.Error("read a missing file")
	}
	if err := os.Symlink(victim, filepath.Join(dir, "link2")); err != nil {
		t.Fatal(err)
	}
	if _, err := readFileNoFollow(filepath.Join(dir, "link2")); err == nil {
		t.Error("readFileNoFollow followed a link")
	}
}

func TestOwnedDirRefusesALink(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "pg")); err != nil {
		t.Fatal(err)
	}
	pg := &postgres{uid: -1, gid: -1}
	if err := pg.ownedDir(filepath.Join(dir, "pg"), 0o700); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("ownedDir on a link = %v", err)
	}
}
