package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
)

// server is a running Temporal server under test.
type server struct {
	address, namespace string
	// pid is the process whose descendants (and itself) are measured.
	pid  int
	stop func()
}

var errClusterExited = errors.New("mageflow cluster exited before it was ready")

// startServer starts the dev server or the cluster.
func startServer(ctx context.Context, o options, target, dir string) (*server, error) {
	if target == "dev" {
		dev, err := deploystack.StartDevServer(ctx)
		if err != nil {
			return nil, err
		}
		return &server{address: dev.FrontendHostPort(), namespace: "default", pid: childNamed(os.Getpid(), "temporal"),
			stop: func() { _ = dev.Stop() }}, nil
	}
	return startCluster(ctx, o, dir)
}

// startCluster runs `bin/mageflow cluster --temporal-only` and waits for
// its ready file.
func startCluster(ctx context.Context, o options, dir string) (*server, error) {
	bin, err := filepath.Abs("bin")
	if err != nil {
		return nil, err
	}
	cdir := filepath.Join(dir, "cluster")
	if err := os.MkdirAll(filepath.Join(cdir, "log"), 0o755); err != nil {
		return nil, err
	}
	ready := filepath.Join(cdir, "ready")
	logf, err := os.Create(filepath.Join(cdir, "log", "supervisor.log"))
	if err != nil {
		return nil, err
	}
	ns := "bench-scale"
	cmd := exec.Command(filepath.Join(bin, "mageflow"), "cluster", "--temporal-only", "--dir", cdir, "--bin", bin,
		"--pg-port", fmt.Sprint(o.pgPort), "--temporal-port", fmt.Sprint(o.temporalPort),
		"--metrics-port", fmt.Sprint(o.metricsPort), "--ui-port", fmt.Sprint(o.uiPort),
		"--namespace", ns, "--ready-file", ready)
	if o.shards > 0 {
		cmd.Args = append(cmd.Args, "--shards", fmt.Sprint(o.shards))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	began := time.Now()
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			fmt.Printf("cluster ready in %s at %s\n", time.Since(began).Round(time.Millisecond), strings.TrimSpace(string(b)))
			return &server{address: strings.TrimSpace(string(b)), namespace: ns, pid: cmd.Process.Pid, stop: stop}, nil
		}
		select {
		case <-done:
			return nil, fmt.Errorf("%w (see %s)", errClusterExited, logf.Name())
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
