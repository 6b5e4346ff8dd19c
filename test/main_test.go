// Package test holds mageflow's integration tests: a real Temporal dev
// server (the pinned CLI, started through testsuite.StartDevServer with
// ExistingPath) or, under make test-cluster, a real cluster
// (MAGEFLOW_TEST_TEMPORAL, MAGEFLOW_TEST_NAMESPACE), the real worker
// registration, real git repositories, real builds (local and in Docker)
// and the real HTTP server.
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

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

// temporalServer is the server the suite runs against: the dev server
// TestMain starts, or the external cluster make test-cluster names.
type temporalServer struct {
	hostPort string
	dev      *testsuite.DevServer
}

// FrontendHostPort is the frontend's gRPC address.
func (s *temporalServer) FrontendHostPort() string { return s.hostPort }

var dev *temporalServer

// TestMain starts one dev server for the package, or uses the cluster of
// make test-cluster. Without the CLI the suite fails loudly: it cannot
// prove anything about durability without a server.
func TestMain(m *testing.M) {
	if addr, ns, ok, err := testenv.ExternalTemporal(); ok || err != nil {
		os.Exit(runExternal(m, addr, ns, err))
	}
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
	ds, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
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
	dev = &temporalServer{hostPort: ds.FrontendHostPort(), dev: ds}
	code := m.Run()
	_ = ds.Stop()
	os.Exit(code)
}

// runExternal runs the suite against the cluster at addr in namespace ns.
// Every mageflow client and worker the tests start (tclient) takes the
// namespace from TEMPORAL_NAMESPACE, so it is set here, from the explicit
// setting; the address comes from the configs the tests write.
func runExternal(m *testing.M, addr, ns string, err error) int {
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration tests: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: addr, Namespace: ns})
	if err == nil {
		_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
		c.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration tests: the cluster %s=%s, namespace %s=%s does not answer: %v\n",
			testenv.EnvTemporal, addr, testenv.EnvNamespace, ns, err)
		return 1
	}
	os.Unsetenv("TEMPORAL_ADDRESS")
	os.Setenv("TEMPORAL_NAMESPACE", ns)
	testNamespace = ns
	dev = &temporalServer{hostPort: addr}
	fmt.Fprintf(os.Stderr, "integration tests on the cluster at %s, namespace %s\n", addr, ns)
	return m.Run()
}

// testNamespace is the namespace the suite's workflows run in.
var testNamespace = "default"

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
