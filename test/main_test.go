// Package test holds mageflow's integration tests: a real Temporal dev
// server (the pinned CLI, started through testsuite.StartDevServer with
// ExistingPath), the real worker registration, real git repositories, real
// builds (local and in Docker) and the real HTTP server.
package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

var dev *testsuite.DevServer

// TestMain starts one dev server for the package. Without the CLI the suite
// fails loudly: it cannot prove anything about durability without a server.
func TestMain(m *testing.M) {
	cli, err := testenv.TemporalCLI()
	if errors.Is(err, testenv.ErrNotInstalled) {
		// A fresh checkout: say so and pass, naming what runs the suite.
		fmt.Fprintf(os.Stderr, "SKIP the integration suite: %v\n", err)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration tests: %v\n", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	dev, err = testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:     cli,
		LogLevel:         "error",
		SearchAttributes: searchattr.DevServerAttributes(),
		ClientOptions:    &client.Options{Namespace: "default"},
		ExtraArgs:        []string{"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true"},
	})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start Temporal dev server with %s: %v\n", cli, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = dev.Stop()
	os.Exit(code)
}

// gitCount is the reference build number.
func gitCount(t *testing.T, repo, rev string) int {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "rev-list", "--count", rev).Output()
	if err != nil {
		t.Fatalf("git rev-list --count (install git: make deps): %v", err)
	}
	var n int
	fmt.Sscanf(strings.TrimSpace(string(out)), "%d", &n)
	return n
}

func gitRev(t *testing.T, repo, rev string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "rev-parse", rev).Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	return strings.TrimSpace(string(out))
}
