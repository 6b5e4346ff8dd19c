// Package devserver runs `temporal server start-dev` for `mageflow dev`:
// SQLite under ./var (so a second run keeps its history), the Web UI with
// mageflow's codec endpoint, and mageflow's search attributes registered.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/platform/searchattr"
)

// Options configures the dev server.
type Options struct {
	CLI           string // path to the temporal CLI (pinned v1.5.1)
	IP            string
	Port          int
	UIPort        int
	DBFile        string
	Namespace     string
	CodecEndpoint string
	Log           io.Writer
}

// Server is a running dev server.
type Server struct {
	cmd  *exec.Cmd
	done chan error
	Addr string
}

// CheckPort fails with advice when something already listens on addr.
func CheckPort(what, addr, flag string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s port %s is taken (%v): stop what uses it (`ss -ltnp | grep %s`) or pick another with %s", what, addr, err, portOf(addr), flag)
	}
	return ln.Close()
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return ":" + p
}

// Start launches the server and waits until the namespace answers and the
// search attributes are registered.
func Start(ctx context.Context, o Options) (*Server, error) {
	if _, err := os.Stat(o.CLI); err != nil {
		return nil, fmt.Errorf("temporal CLI not found at %s: run `make bin/temporal` (installs v1.5.1 with go install) or pass --temporal-cli", o.CLI)
	}
	addr := net.JoinHostPort(o.IP, strconv.Itoa(o.Port))
	if err := CheckPort("Temporal frontend", addr, "--temporal-port"); err != nil {
		return nil, err
	}
	if err := CheckPort("Temporal Web UI", net.JoinHostPort(o.IP, strconv.Itoa(o.UIPort)), "--ui-port"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(o.DBFile), 0o755); err != nil {
		return nil, err
	}
	args := []string{"server", "start-dev",
		"--ip", o.IP, "--port", strconv.Itoa(o.Port), "--ui-port", strconv.Itoa(o.UIPort),
		"--db-filename", o.DBFile, "--namespace", o.Namespace, "--log-level", "error",
		// Custom search attributes become queryable at once.
		"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true",
	}
	if o.CodecEndpoint != "" {
		args = append(args, "--ui-codec-endpoint", o.CodecEndpoint)
	}
	args = append(args, searchattr.DevServerFlags()...)
	cmd := exec.Command(o.CLI, args...)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	// Own process group: Ctrl-C in the terminal reaches us, and we stop the
	// server in order after the worker.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start temporal dev server: %w", err)
	}
	s := &Server{cmd: cmd, done: make(chan error, 1), Addr: addr}
	go func() { s.done <- cmd.Wait() }()
	if err := s.waitReady(ctx, o.Namespace); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, ns string) error {
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			return fmt.Errorf("temporal dev server exited during start-up (%v): see its log above", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		c, err := client.Dial(client.Options{HostPort: s.Addr, Namespace: ns, Logger: nopLogger{}})
		if err != nil {
			last = err
			continue
		}
		resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
		c.Close()
		if err != nil {
			last = err
			continue
		}
		missing := ""
		for _, d := range searchattr.All() {
			if _, ok := resp.GetCustomAttributes()[d.Name]; !ok {
				missing = d.Name
			}
		}
		if missing == "" {
			return nil
		}
		last = fmt.Errorf("search attribute %s not registered yet", missing)
	}
	return fmt.Errorf("temporal dev server at %s not ready after 90s: %v", s.Addr, last)
}

// Stop terminates the server and waits for it.
func (s *Server) Stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Done reports the server's exit.
func (s *Server) Done() <-chan error { return s.done }

// ErrExited is returned when the server stops on its own.
var ErrExited = errors.New("temporal dev server exited")

type nopLogger struct{}

func (nopLogger) Debug(string, ...any) {}
func (nopLogger) Info(string, ...any)  {}
func (nopLogger) Warn(string, ...any)  {}
func (nopLogger) Error(string, ...any) {}
