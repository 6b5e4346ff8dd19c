// Package testenv tells tests where the tools `make test` installs are, and
// what to do when they are missing: on a fresh checkout (`go test ./...`
// with nothing installed) a test that needs a service skips and names the
// make target that runs it; under `make test`, which exports TEMPORAL_CLI,
// a missing tool is a failure, never a skip.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNotInstalled means the tool is absent and nothing asked for it: the
// caller should skip, quoting the error.
var ErrNotInstalled = errors.New("not installed")

// TemporalCLI returns the path of the pinned Temporal CLI: $TEMPORAL_CLI,
// or bin/temporal at the module root. With TEMPORAL_CLI unset and no
// bin/temporal the error wraps ErrNotInstalled; with TEMPORAL_CLI set to a
// missing file it does not (make test promised the tool).
func TemporalCLI() (string, error) {
	if p := os.Getenv("TEMPORAL_CLI"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("TEMPORAL_CLI=%s: %w (make test installs it as bin/temporal)", p, err)
		}
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the Temporal CLI v1.5.1 (bin/temporal) is %w: run `make test`, which installs it and runs this test", ErrNotInstalled)
	}
	return p, nil
}

// moduleRoot is the nearest directory above the working directory that
// holds go.mod (tests run in their package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// TB is the part of testing.TB that TemporalCLIOrSkip uses.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// TemporalCLIOrSkip is TemporalCLI for a test: it skips when the CLI was
// never installed and fails when make test promised it.
func TemporalCLIOrSkip(t TB) string {
	t.Helper()
	p, err := TemporalCLI()
	if errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The explicit setting that points the integration suites at an external
// Temporal frontend (make test-cluster sets both). It is never
// TEMPORAL_ADDRESS: the client reads that one, so a test that set it would
// send the CLI and the worker to different servers.
const (
	EnvTemporal  = "MAGEFLOW_TEST_TEMPORAL"  // host:port of the frontend
	EnvNamespace = "MAGEFLOW_TEST_NAMESPACE" // a namespace registered for this run
)

// ErrHalfExternal means one of EnvTemporal and EnvNamespace is set
// without the other.
var ErrHalfExternal = errors.New("set both " + EnvTemporal + " and " + EnvNamespace + " (make test-cluster does), or neither")

// ExternalTemporal returns the frontend and namespace of the cluster the
// suites run against (make test-cluster); ok is false when neither is set,
// and the suites start their own dev server.
func ExternalTemporal() (hostPort, namespace string, ok bool, err error) {
	hostPort, namespace = os.Getenv(EnvTemporal), os.Getenv(EnvNamespace)
	if hostPort == "" && namespace == "" {
		return "", "", false, nil
	}
	if hostPort == "" || namespace == "" {
		return "", "", false, ErrHalfExternal
	}
	return hostPort, namespace, true, nil
}

// EnvWeed names the SeaweedFS binary (weed) the S3 store's tests run a
// real S3 server with; make test-cluster sets it to bin/weed.
const EnvWeed = "MAGEFLOW_TEST_WEED"

// Weed returns the path of the weed binary $MAGEFLOW_TEST_WEED names. With
// the variable unset the error wraps ErrNotInstalled (the tests against a
// real S3 server skip); set to a missing file it does not (make
// test-cluster promised the binary).
func Weed() (string, error) {
	p := os.Getenv(EnvWeed)
	if p == "" {
		return "", fmt.Errorf("the SeaweedFS S3 server (%s, bin/weed) is %w: run `make test-cluster`, which builds it and runs this test", EnvWeed, ErrNotInstalled)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s=%s: %w (make test-cluster builds it as bin/weed)", EnvWeed, p, err)
	}
	return p, nil
}

// WeedOrSkip is Weed for a test: it skips when nothing names the binary
// and fails when the named one is missing.
func WeedOrSkip(t TB) string {
	t.Helper()
	p, err := Weed()
	if errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ToolOrSkip handles err from finding a system tool that `make deps-test`
// installs (nginx, php-fpm): nil goes on; on a fresh checkout (`go test
// ./...`, TEMPORAL_CLI unset) the test skips, naming the make target; under
// `make test`, which exports TEMPORAL_CLI, a missing tool is a failure.
func ToolOrSkip(t TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("TEMPORAL_CLI") == "" {
		t.Skip(fmt.Errorf("%w (%v): run `make test`, which installs it (make deps-test) and runs this test", ErrNotInstalled, err))
		return
	}
	t.Fatal(err)
}
