package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/front/workerapp"
	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// harness is one isolated mageflow: its own config, directories, task queue
// and worker, against the shared dev server.
type harness struct {
	t       *testing.T
	dir     string
	cfgPath string
	cfg     *config.Config
	client  client.Client
	acts    *activities.BuildActivities
}

// newHarness writes a config whose apps section is appsYAML (indented under
// "apps:") and starts a worker for it.
func newHarness(t *testing.T, appsYAML string) *harness {
	t.Helper()
	return newHarnessWith(t, "artifacts: {dir: ./artifacts}", appsYAML)
}

// newHarnessWith also sets the artifacts section.
func newHarnessWith(t *testing.T, artifactsYAML, appsYAML string) *harness {
	t.Helper()
	dir := t.TempDir()
	queue := "it-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	yml := fmt.Sprintf(`temporal: {address: %q, namespace: default, task_queue: %q}
%s
secrets: {dir: ./secrets}
codec: {key_file: ./codec.key, key_env: MAGEFLOW_TEST_NO_SUCH_ENV}
worker: {metrics_listen: "127.0.0.1:0", work_dir: ./work}
git: {cache_dir: ./git}
apps:
%s`, dev.FrontendHostPort(), queue, artifactsYAML, appsYAML)
	cfgPath := filepath.Join(dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(yml), 0o644))
	cfg, err := config.Load(cfgPath, false)
	require.NoError(t, err)
	_, err = codec.GenerateKeyFile(cfg.Codec.KeyFile)
	require.NoError(t, err)

	dc, _, err := tclient.DataConverter(cfg)
	require.NoError(t, err)
	opts, err := tclient.Options(cfg, nil, dc, nil)
	require.NoError(t, err)
	opts.HostPort = dev.FrontendHostPort()
	c, err := client.Dial(opts)
	require.NoError(t, err)
	t.Cleanup(c.Close)

	acts, err := workerapp.NewBuildActivities(context.Background(), cfg, nil)
	require.NoError(t, err)
	acts.HeartbeatEvery = time.Second
	w := worker.New(c, cfg.Temporal.TaskQueue, worker.Options{})
	workerapp.Register(w, acts, &activities.DeployActivities{Config: cfg, Store: acts.Store, Client: c})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return &harness{t: t, dir: dir, cfgPath: cfgPath, cfg: cfg, client: c, acts: acts}
}

func (h *harness) starter() *start.Builds { return &start.Builds{Client: h.client, Config: h.cfg} }

// build starts a build of ref and waits for its release.
func (h *harness) build(app, ref string, timeout time.Duration) (*release.Meta, client.WorkflowRun, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	run, err := h.starter().Start(ctx, start.BuildRequest{App: app, Ref: ref, Trigger: "test"})
	if err != nil {
		return nil, nil, err
	}
	var m release.Meta
	err = run.Get(ctx, &m)
	return &m, run, err
}
