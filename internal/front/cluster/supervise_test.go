package cluster

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeCluster has a temporal-server that only sleeps, so Supervise can be
// exercised without a database.
func fakeCluster(t *testing.T) *Cluster {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "temporal-server"), []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Cluster{opts: Options{Dir: dir, Bin: bin, Log: io.Discard}}
}

func pidOf(t *testing.T, c *Cluster, name string) int {
	t.Helper()
	b, err := os.ReadFile(PidFile(c.opts.Dir, name))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitNewPid waits for the supervisor to record a pid other than old.
func waitNewPid(t *testing.T, c *Cluster, name string, old int) int {
	t.Helper()
	for range 100 {
		if p := pidOf(t, c, name); p != old {
			return p
		}
		time.Sleep(50 * time.Millisecond) // polling the supervisor
	}
	t.Fatalf("%s was not restarted", name)
	return 0
}

func TestSuperviseRestartsAKilledServiceUpToTheLimit(t *testing.T) {
	c := fakeCluster(t)
	if _, err := c.startService("history", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.startService("matching", nil); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Supervise(ctx) }()
	pid := pidOf(t, c, "temporal-history")
	for i := range restartLimit {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		pid = waitNewPid(t, c, "temporal-history", pid)
		if c.Proc("temporal-history") == nil {
			t.Fatalf("restart %d: no running temporal-history", i+1)
		}
		// The new process takes the old one's place: Stop keeps the
		// reverse start order (PostgreSQL, when restarted, still last).
		c.mu.Lock()
		names := []string{c.procs[0].Name, c.procs[1].Name}
		n := len(c.procs)
		c.mu.Unlock()
		if n != 2 || names[0] != "temporal-history" || names[1] != "temporal-matching" {
			t.Fatalf("restart %d: processes %v (%d)", i+1, names, n)
		}
	}
	// One death more than the limit within the window: left down, reported.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "exited 6 times") {
			t.Fatalf("Supervise = %v, want the restart limit", err)
		}
	case <-ctx.Done():
		t.Fatal("Supervise kept restarting past the limit")
	}
}

func TestNoRestartAfterStop(t *testing.T) {
	c := fakeCluster(t)
	p, err := c.startService("matching", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.restart(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if _, err := c.startService("matching", nil); err == nil {
		t.Fatal("a service started after Stop")
	}
	if c.Proc("temporal-matching") != nil {
		t.Fatal("a service runs after Stop")
	}
	if _, err := os.Stat(filepath.Join(c.opts.Dir, "run")); !os.IsNotExist(err) {
		t.Errorf("pid files left after Stop: %v", err)
	}
}
