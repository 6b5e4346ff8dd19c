// Package magento runs bin/magento in a release directory and interprets
// its answers the way a deploy needs them: "is an upgrade needed?" (exit 2
// of setup:db:status / app:config:status), "did it work?" (exit 0), and
// "what went wrong?" (the tail of the output, with secret values removed).
package magento

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ExitUpgradeRequired is what setup:db:status and app:config:status exit
// with when setup:upgrade or app:config:import has to run.
const ExitUpgradeRequired = 2

// CLI runs `PHP bin/magento …` in Dir.
type CLI struct {
	// PHP is the php binary (default "php" from PATH).
	PHP string
	// Dir is the release directory holding bin/magento.
	Dir string
	// Credential, when set, runs the command as that user (the PHP user on
	// a hardened host, so files bin/magento writes into var/ stay writable
	// by php-fpm).
	Credential *syscall.Credential
	// Env is added to the inherited environment.
	Env []string
}

// Result is a finished command.
type Result struct {
	ExitCode int
	// Output is stdout and stderr interleaved, as an operator would see it.
	Output  string
	Elapsed time.Duration
}

// FirstLine is the first non-empty line of the output.
func (r Result) FirstLine() string {
	for l := range strings.SplitSeq(r.Output, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// Tail is the last n lines of the output, for error messages.
func (r Result) Tail(n int) string { return Tail(r.Output, n) }

// Tail returns the last n non-empty lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// Redact replaces every occurrence of the secret values in s. Values
// shorter than 4 bytes are replaced too: a short secret is still a secret,
// and over-redacting an error message costs nothing.
func Redact(s string, secrets ...string) string {
	for _, v := range secrets {
		if v = strings.TrimSpace(v); v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// syncBuffer lets stdout and stderr share one buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Run runs bin/magento with args. A non-zero exit is not an error (the
// status commands exit 2 by design): err is set only when the command
// could not run at all or ctx ended.
func (c CLI) Run(ctx context.Context, args ...string) (Result, error) {
	return c.run(ctx, name(args), nil, append([]string{"bin/magento"}, args...)...)
}

// run runs php with argv in Dir, stdin (if not nil) as its standard input;
// what names the command in errors.
func (c CLI) run(ctx context.Context, what string, stdin io.Reader, argv ...string) (Result, error) {
	php := c.PHP
	if php == "" {
		php = "php"
	}
	cmd := exec.CommandContext(ctx, php, argv...)
	cmd.Dir = c.Dir
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), c.Env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so cancelling also stops what bin/magento
	// forked (static content deploy jobs, indexer workers).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.Credential}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := Result{Output: out.String(), Elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("bin/magento %s: %w", what, ctx.Err())
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		return res, nil
	case err != nil:
		return res, fmt.Errorf("run %s bin/magento %s in %s: %w (is php-cli installed and the release complete?)", php, what, c.Dir, err)
	}
	return res, nil
}

// name is the command name for messages: never the arguments, which may be
// secret config values.
func name(args []string) string {
	if len(args) == 0 {
		return "list"
	}
	return args[0]
}

// Status is Magento's answer to "does this code need setup:upgrade or
// app:config:import?".
type Status struct {
	Needed  bool
	Reasons []string
}

// UpgradeStatus runs setup:db:status and app:config:status. Exit 2 means
// needed (the reason quotes the first output line); any other non-zero
// exit is an error with the output's tail, because a status that cannot be
// read (database down, broken env.php) must stop the deploy, not be guessed.
func (c CLI) UpgradeStatus(ctx context.Context) (Status, error) {
	var st Status
	for _, cmd := range []string{"setup:db:status", "app:config:status"} {
		r, err := c.Run(ctx, cmd)
		if err != nil {
			return st, err
		}
		switch r.ExitCode {
		case 0:
		case ExitUpgradeRequired:
			st.Needed = true
			st.Reasons = append(st.Reasons, cmd+": "+r.FirstLine())
		default:
			return st, fmt.Errorf("bin/magento %s exited %d in %s:\n%s", cmd, r.ExitCode, c.Dir, r.Tail(15))
		}
	}
	return st, nil
}

// CommandError is a bin/magento command that exited non-zero.
type CommandError struct {
	Command  string
	ExitCode int
	Tail     string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("bin/magento %s exited %d:\n%s", e.Command, e.ExitCode, e.Tail)
}

// Must runs a command that has to succeed; a non-zero exit is a
// *CommandError carrying the output tail. redact lists values that must not
// appear in the error (config values passed as arguments).
func (c CLI) Must(ctx context.Context, redact []string, args ...string) (Result, error) {
	r, err := c.Run(ctx, args...)
	r.Output = Redact(r.Output, redact...)
	if err != nil {
		return r, errors.New(Redact(err.Error(), redact...))
	}
	if r.ExitCode != 0 {
		return r, &CommandError{Command: name(args), ExitCode: r.ExitCode, Tail: Redact(r.Tail(15), redact...)}
	}
	return r, nil
}
