package dockerfleet_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/fleet"
	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
)

// sleeperSrc is the tiny instance the lifecycle tests launch: it answers
// HTTP on :8080 with its instance id (so a test can prove PrivateIP is the
// container's real address) and exits on SIGTERM like a well-behaved agent.
const sleeperSrc = `package main

import (
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	go http.ListenAndServe(":8080", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(os.Getenv("MAGEFLOW_INSTANCE_ID")))
	}))
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
`

var (
	sleeperOnce sync.Once
	sleeperRef  string
	sleeperErr  error
)

// sleeperImage builds (once per content) a FROM-scratch image holding one
// static Go binary: seconds to build, milliseconds to start, no registry.
func sleeperImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	sleeperOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mageflow-sleeper")
		if err != nil {
			sleeperErr = err
			return
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(sleeperSrc), 0o644); err != nil {
			sleeperErr = err
			return
		}
		_ = os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module sleeper\n\ngo 1.22\n"), 0o644)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", "sleeper", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			sleeperErr = fmt.Errorf("build sleeper: %v\n%s", err, out)
			return
		}
		bin, err := os.ReadFile(filepath.Join(dir, "sleeper"))
		if err != nil {
			sleeperErr = err
			return
		}
		sum := sha256.Sum256(bin)
		ref := "mageflow/fleet-test-sleeper:" + hex.EncodeToString(sum[:6])
		ctx := context.Background()
		if _, err := cli.ImageInspect(ctx, ref); err == nil {
			sleeperRef = ref
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Name: "sleeper", Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0)})
		_, _ = tw.Write(bin)
		_ = tw.Close()
		rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref,
			image.ImportOptions{Changes: []string{`CMD ["/sleeper"]`}})
		if err != nil {
			sleeperErr = fmt.Errorf("docker import sleeper: %w", err)
			return
		}
		_, _ = io.Copy(io.Discard, rc)
		rc.Close()
		sleeperRef = ref
	})
	require.NoError(t, sleeperErr)
	return sleeperRef
}

func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		t.Fatalf("these tests need a running Docker engine (systemctl start docker): %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// clock is a test clock the provider reads; tests move it to expire hooks.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// inbox collects notified lifecycle actions.
type inbox struct {
	mu   sync.Mutex
	got  []fleet.LifecycleAction
	fail bool
}

func (b *inbox) notify(_ context.Context, a fleet.LifecycleAction) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail {
		return errors.New("notification target down")
	}
	b.got = append(b.got, a)
	return nil
}

// take returns and forgets what arrived.
func (b *inbox) take() []fleet.LifecycleAction {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.got
	b.got = nil
	return out
}

type env struct {
	t       *testing.T
	cli     *client.Client
	p       *dockerfleet.Provider
	clk     *clock
	box     *inbox
	dir     string
	network string
	image   string
	group   string
}

// newEnv gives a test its own network, state dir and group name, removed
// (with every container) when the test ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	cli := dockerClient(t)
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	id := hex.EncodeToString(suffix)
	e := &env{
		t: t, cli: cli, clk: &clock{t: time.Now()}, box: &inbox{}, dir: t.TempDir(),
		network: "mageflow-fleet-test-" + id, group: "t" + id, image: sleeperImage(t, cli),
	}
	e.p = e.provider()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = e.p.DeleteGroup(ctx, e.group)
		_ = cli.NetworkRemove(ctx, e.network)
	})
	return e
}

// provider opens another Provider on the same state: the multi-process model.
func (e *env) provider() *dockerfleet.Provider {
	p, err := dockerfleet.New(dockerfleet.Options{StateDir: e.dir, Network: e.network, Notify: e.box.notify, Docker: e.cli, Now: e.clk.Now})
	require.NoError(e.t, err)
	return p
}

func (e *env) spec() dockerfleet.GroupSpec {
	return dockerfleet.GroupSpec{Name: e.group, Min: 0, Max: 4, Desired: 0, Image: e.image, StopTimeoutSeconds: 2}
}

func (e *env) reconcile() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(e.t, e.p.Reconcile(ctx, e.group))
}

func (e *env) describe() *fleet.Group {
	e.t.Helper()
	g, err := e.p.Describe(context.Background(), e.group)
	require.NoError(e.t, err)
	return g
}

// states maps instance id to lifecycle state, live and warm.
func (e *env) states() map[string]fleet.LifecycleState {
	g := e.describe()
	out := map[string]fleet.LifecycleState{}
	for _, in := range g.Instances {
		out[in.ID] = in.LifecycleState
	}
	if g.WarmPool != nil {
		for _, in := range g.WarmPool.Instances {
			out[in.ID] = in.LifecycleState
		}
	}
	return out
}

func (e *env) container(id string) (container.InspectResponse, bool) {
	info, err := e.cli.ContainerInspect(context.Background(), dockerfleet.ContainerName(e.group, id))
	if err != nil {
		return container.InspectResponse{}, false
	}
	return info, true
}

// get fetches the sleeper's answer from an instance's private IP.
func get(t *testing.T, ip string) string {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	var last error
	for i := 0; i < 50; i++ {
		resp, err := c.Get("http://" + ip + ":8080/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("instance at %s does not answer: %v", ip, last)
	return ""
}
