package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// Local runs steps with sh -euc directly on the host (build.builder: local),
// for hosts without Docker. Builds then use the host's PHP/composer/node and
// have whatever network the host has, so Docker stays the default.
type Local struct {
	// Path is the PATH steps get; the host's is not inherited so builds do
	// not depend on the shell mageflow was started from.
	Path string
}

// NewLocal returns a runner with a conventional system PATH.
func NewLocal() *Local {
	return &Local{Path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
}

// Describe implements Runner.
func (l *Local) Describe() string { return "local" }

// killGrace is how long a cancelled step gets after SIGTERM before SIGKILL.
const killGrace = 5 * time.Second

// Run implements Runner. The step runs in its own process group so that
// cancelling kills composer/npm children too, not only the shell.
func (l *Local) Run(ctx context.Context, checkoutDir string, step Step, log io.Writer) (int, error) {
	dir, err := stepDir(checkoutDir, step.Dir)
	if err != nil {
		return -1, err
	}
	cmd := exec.CommandContext(ctx, "sh", "-euc", step.Script)
	cmd.Dir = dir
	cmd.Env = l.env(step.Env)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Negative pid: the whole process group.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = killGrace
	err = cmd.Run()
	if ctx.Err() != nil {
		// Make sure nothing of the group survives a SIGTERM-ignoring child.
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return -1, fmt.Errorf("step stopped: %w", ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("cannot run sh: %w", err)
	}
	return 0, nil
}

func (l *Local) env(stepEnv map[string]string) []string {
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	base := map[string]string{"PATH": l.Path, "HOME": home, "LANG": "C.UTF-8"}
	for k, v := range stepEnv {
		base[k] = v
	}
	return envList(base)
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// stepDir resolves a step's directory and makes sure it exists inside the
// checkout.
func stepDir(checkoutDir, rel string) (string, error) {
	clean, err := cleanRelDir(rel)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(checkoutDir, clean)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("step directory %s does not exist in the checkout", clean)
	}
	return dir, nil
}
