package builder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mageflow/mageflow/internal/build/release"
)

// Runner executes build steps somewhere: in the builder container or on the
// host.
type Runner interface {
	// Run executes one step in the checkout dir, streaming combined output to
	// log. A step that runs and fails returns its non-zero exit code and a nil
	// error; err is for not being able to run it at all, or ctx ending (the
	// process/container is then stopped).
	Run(ctx context.Context, checkoutDir string, step Step, log io.Writer) (exitCode int, err error)
	// Describe says where steps run, for release.json ("local",
	// "docker image sha256:…").
	Describe() string
}

// tailLines is how much of a failing step's output StepError keeps: enough to
// show a composer or PHP fatal error with context, short enough for a
// workflow failure message.
const tailLines = 30

// StepError is a step that ran and exited non-zero.
type StepError struct {
	Step     string
	ExitCode int
	Tail     []string // last lines of the step's output
}

func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "build step %q failed with exit code %d", e.Step, e.ExitCode)
	if len(e.Tail) > 0 {
		b.WriteString("; last output:\n")
		b.WriteString(strings.Join(e.Tail, "\n"))
	}
	return b.String()
}

// Execute runs steps in order, writing a header per step to log and calling
// progress(i, n, name) before each (i counts from 1). It returns the duration
// and exit code of every step that ran, including a failing one, and stops at
// the first failure with a *StepError.
func Execute(ctx context.Context, r Runner, checkoutDir string, steps []Step, log io.Writer, progress func(i, n int, name string)) ([]release.StepDuration, error) {
	durations := make([]release.StepDuration, 0, len(steps))
	for i, step := range steps {
		if err := ctx.Err(); err != nil {
			return durations, fmt.Errorf("build cancelled before step %q: %w", step.Name, err)
		}
		if progress != nil {
			progress(i+1, len(steps), step.Name)
		}
		fmt.Fprintf(log, "\n==> [%d/%d] %s (in %s)\n%s\n", i+1, len(steps), step.Name, step.Dir, describeEnv(step.Env))
		tail := newTailWriter(log, tailLines)
		start := time.Now()
		code, err := r.Run(ctx, checkoutDir, step, tail)
		d := release.StepDuration{Name: step.Name, Seconds: time.Since(start).Seconds(), ExitCode: code}
		durations = append(durations, d)
		fmt.Fprintf(log, "==> %s: exit %d after %.1fs\n", step.Name, code, d.Seconds)
		if err != nil {
			return durations, fmt.Errorf("build step %q: %w", step.Name, err)
		}
		if code != 0 {
			return durations, &StepError{Step: step.Name, ExitCode: code, Tail: tail.Lines()}
		}
	}
	return durations, nil
}

// describeEnv lists the variable names a step gets (not values: build env
// is not meant for secrets, but logs are kept and shared, so be careful).
func describeEnv(env map[string]string) string {
	if len(env) == 0 {
		return "    env: (none)"
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "    env: " + strings.Join(keys, " ")
}

// tailWriter passes writes through and remembers the last n complete lines
// (plus a trailing partial one). Runners may write from several goroutines.
type tailWriter struct {
	mu      sync.Mutex
	w       io.Writer
	n       int
	lines   []string
	partial []byte
}

func newTailWriter(w io.Writer, n int) *tailWriter { return &tailWriter{w: w, n: n} }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	data := append(t.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, strings.TrimRight(string(data[:i]), "\r"))
		if len(t.lines) > t.n {
			t.lines = t.lines[len(t.lines)-t.n:]
		}
		data = data[i+1:]
	}
	t.partial = append([]byte(nil), data...)
	return t.w.Write(p)
}

// Lines returns the remembered tail.
func (t *tailWriter) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if len(t.partial) > 0 {
		out = append(out, string(t.partial))
		if len(out) > t.n {
			out = out[len(out)-t.n:]
		}
	}
	return out
}
