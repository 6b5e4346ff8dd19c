package deploystack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/test/fixtures"
)

// StartDevServer starts the pinned Temporal CLI's dev server ($TEMPORAL_CLI,
// else bin/temporal under the working directory) with mageflow's search
// attributes, for the benchmarks, which have no testing.T.
func StartDevServer(ctx context.Context) (*testsuite.DevServer, error) {
	cli := os.Getenv("TEMPORAL_CLI")
	if cli == "" {
		cli, _ = filepath.Abs("bin/temporal")
	}
	if _, err := os.Stat(cli); err != nil {
		return nil, fmt.Errorf("the benchmark needs the Temporal CLI: run `make bin/temporal` from the module root or set TEMPORAL_CLI (%v)", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return testsuite.StartDevServer(sctx, testsuite.DevServerOptions{
		ExistingPath: cli, LogLevel: "error", SearchAttributes: searchattr.DevServerAttributes(),
		ClientOptions: &client.Options{Namespace: "default"},
		ExtraArgs:     []string{"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true"},
	})
}

// FixtureRepo copies the Magento 2 fixture into dir as a git repository
// with one commit on main (fixtures.Magento2App needs a *testing.T; the
// benchmarks have none).
func FixtureRepo(dir string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if out, err := exec.Command("cp", "-a", fixtures.Magento2AppSource(), dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy the fixture: %v: %s", err, out)
	}
	for _, p := range []string{"vendor", "generated", "pub/static", "var", "app/etc/env.php"} {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			return "", err
		}
	}
	if out, err := exec.Command("git", "-C", dir, "init", "-q", "-b", "main").CombinedOutput(); err != nil {
		return "", fmt.Errorf("git init: %v: %s", err, out)
	}
	return dir, Commit(dir, "Add Magento 2 fixture store")
}
