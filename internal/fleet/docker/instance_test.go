package dockerfleet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

// InstanceImage is what the real-instance test launches; build.sh makes it.
const InstanceImage = "mageflow/instance:bookworm"

// ensureInstanceImage runs image/build.sh, which returns at once when the
// image matches the script and otherwise builds it (a few minutes, root).
func ensureInstanceImage(t *testing.T) {
	t.Helper()
	cmd := exec.Command("sh", "image/build.sh", InstanceImage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the instance image %s is missing and image/build.sh could not build it (needs root, debootstrap and a Debian mirror): %v\n%s", InstanceImage, err, out)
	}
}

// buildWorker builds the agent as the instance mounts it: static.
// MAGEFLOW_AGENT_BIN names a prebuilt one (make builds it once).
func buildWorker(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MAGEFLOW_AGENT_BIN"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "mageflow-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "../../../worker/agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build mageflow-agent: %s", out)
	return bin
}

// An instance from the real instance image is an app server: the mounted
// agent starts php-fpm and nginx (--serve-web) serving <root>/<app>/current
// on port 80 through php-fpm, and polls its host task queue on a Temporal
// server reached through the network's gateway.
func TestInstanceImageServesPHPAndRunsAgent(t *testing.T) {
	t.Parallel()
	cliPath := testenv.TemporalCLIOrSkip(t)
	start := time.Now()
	ensureInstanceImage(t)
	worker := buildWorker(t)
	t.Logf("image checked and agent built in %s", time.Since(start).Round(time.Millisecond))
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	gw, err := e.p.Gateway(ctx)
	require.NoError(t, err)
	require.NotNil(t, net.ParseIP(gw), gw)
	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath: cliPath, LogLevel: "error", ClientOptions: &client.Options{Namespace: "default"},
	})
	require.NoError(t, err, "start Temporal dev server with %s", cliPath)
	t.Cleanup(func() { _ = dev.Stop() })
	// The dev server only works bound to loopback; instances reach it
	// through a forwarder on the network's gateway.
	temporalAddr := forward(t, gw, dev.FrontendHostPort())

	// The instance's config, site and agent, mounted read-only.
	etc := t.TempDir()
	site := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(site, "pub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(site, "pub", "index.php"),
		[]byte("<?php echo 'sapi=' . PHP_SAPI . ' host=' . gethostname();\n"), 0o644))
	cfg := fmt.Sprintf(`temporal: {address: "%s", namespace: default}
artifacts: {dir: /var/lib/mageflow/artifacts}
secrets: {dir: /etc/mageflow/secrets}
codec: {disabled: true}
groups:
  web:
    provider: docker
    name: %s
    host: {root: /srv/mageflow}
apps:
  shop:
    repo: /nonexistent/shop.git
    type: magento2
    build: {builder: local}
    environments:
      production: {branch: main, group: web}
`, temporalAddr, e.group)
	require.NoError(t, os.WriteFile(filepath.Join(etc, "mageflow.yaml"), []byte(cfg), 0o644))

	s := e.spec()
	s.Image, s.Desired = InstanceImage, 1
	s.Mounts = []string{worker + ":/opt/mageflow/mageflow-agent:ro", etc + ":/etc/mageflow:ro", site + ":/srv/mageflow/shop/current:ro"}
	s.Env = []string{"MAGEFLOW_CONFIG=/etc/mageflow/mageflow.yaml"}
	s.Cmd = []string{"/usr/local/bin/mageflow-instance", "--log-level", "debug"}
	require.NoError(t, e.p.EnsureGroup(ctx, s))
	launch := time.Now()
	e.reconcile()
	t.Logf("instance launched (create + start) in %s", time.Since(launch).Round(time.Millisecond))
	g := e.describe()
	require.Len(t, g.Instances, 1)
	in := g.Instances[0]
	require.NotEmpty(t, in.PrivateIP)

	// PHP through nginx + php-fpm on port 80.
	var body string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + in.PrivateIP + "/index.php")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(b)
				break
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	require.Equal(t, "sapi=fpm-fcgi host="+in.ID, body, "logs:\n%s", logs(e, in.ID))
	t.Logf("PHP served through nginx + php-fpm %s after launch", time.Since(launch).Round(time.Millisecond))

	top, err := e.cli.ContainerTop(ctx, dockerfleet.ContainerName(e.group, in.ID), nil)
	require.NoError(t, err)
	var procs []string
	for _, p := range top.Processes {
		procs = append(procs, p[len(p)-1])
	}
	all := strings.Join(procs, "\n")
	for _, want := range []string{"/opt/mageflow/mageflow-agent --serve-web --group " + e.group + " --host " + in.ID, "php-fpm", "nginx"} {
		require.Contains(t, all, want)
	}

	// The agent polls mageflow-host-<instance id>.
	c, err := client.Dial(client.Options{HostPort: dev.FrontendHostPort(), Namespace: "default"})
	require.NoError(t, err)
	defer c.Close()
	queue := "mageflow-host-" + in.ID
	deadline = time.Now().Add(60 * time.Second)
	for {
		resp, err := c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: enumspb.TASK_QUEUE_TYPE_ACTIVITY,
		})
		if err == nil && len(resp.Pollers) > 0 {
			t.Logf("agent polls %s %s after launch", queue, time.Since(launch).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent polls %s (err %v); container logs:\n%s", queue, err, logs(e, in.ID))
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Stopped into a warm pool and started again, it serves again.
	require.NoError(t, e.cli.ContainerStop(ctx, dockerfleet.ContainerName(e.group, in.ID), container.StopOptions{}))
	info, _ := e.container(in.ID)
	require.Equal(t, 0, info.State.ExitCode, "the agent stops cleanly on SIGTERM; logs:\n%s", logs(e, in.ID))
}

func logs(e *env, id string) string {
	rc, err := e.cli.ContainerLogs(context.Background(), dockerfleet.ContainerName(e.group, id), container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "60"})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// forward accepts on ip:0 and copies each connection to target, until
// the test ends; it returns the listening address.
func forward(t *testing.T, ip, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	return l.Addr().String()
}
