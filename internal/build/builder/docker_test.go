package builder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/mageflow/mageflow/test/fixtures"
)

// newDockerRunner fails (never skips) when the engine or image is missing.
func newDockerRunner(t testing.TB, opts DockerOptions) *Docker {
	t.Helper()
	d, err := NewDocker(opts)
	if err != nil {
		t.Fatalf("%v\n(the Docker runner tests need a running engine and the builder image: run internal/build/builder/image/build.sh)", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestDockerBuildsMagento2Fixture(t *testing.T) {
	d := newDockerRunner(t, DockerOptions{})
	if !strings.HasPrefix(d.Describe(), "docker image sha256:") {
		t.Errorf("Describe = %q", d.Describe())
	}
	dir := fixtures.Magento2App(t)
	steps, err := Plan(Spec{Type: TypeMagento2}, dir)
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	start := time.Now()
	durations, err := Execute(context.Background(), d, dir, steps, &log, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("docker build of the fixture: %.1fs %+v", time.Since(start).Seconds(), durations)
	checkFixtureBuilt(t, dir)
	if !strings.Contains(log.String(), "Generated code and dependency injection configuration successfully") {
		t.Errorf("container output not streamed:\n%s", log.String())
	}
}

func TestDockerStepErrorCarriesTail(t *testing.T) {
	d := newDockerRunner(t, DockerOptions{})
	dir := t.TempDir()
	steps := []Step{{Name: "php fatal", Dir: ".", Script: "echo to-stdout; php -r 'fwrite(STDERR, \"to-stderr\\n\"); exit(5);'"}}
	_, err := Execute(context.Background(), d, dir, steps, &syncBuffer{}, nil)
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *StepError", err)
	}
	if se.ExitCode != 5 || strings.Join(se.Tail, "|") != "to-stdout|to-stderr" {
		t.Errorf("StepError = %+v", se)
	}
}

func TestDockerEnvAndWorkdir(t *testing.T) {
	d := newDockerRunner(t, DockerOptions{})
	dir := tree(t, map[string]string{"sub/marker": "x"})
	var log syncBuffer
	code, err := d.Run(context.Background(), dir, Step{Name: "env", Dir: "sub", Script: "pwd; ls; id -u; echo FLAG=$FLAG; echo CH=$COMPOSER_HOME", Env: map[string]string{"FLAG": "on"}}, &log)
	if err != nil || code != 0 {
		t.Fatalf("%d %v\n%s", code, err, log.String())
	}
	for _, want := range []string{"/build/sub\n", "marker\n", "FLAG=on\n", "CH=/cache/composer\n", fmt.Sprintf("%d\n", os.Getuid())} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, log.String())
		}
	}
}

// hostAddressForContainers returns an address of this host that a container
// on the default bridge can reach: the bridge gateway (from IPAM, or by
// Docker's convention the subnet's first address) when it is a local address.
func hostAddressForContainers(t *testing.T, d *Docker) string {
	t.Helper()
	local := map[string]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			local[ipn.IP.String()] = true
		}
	}
	nw, err := d.cli.NetworkInspect(context.Background(), "bridge", network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect docker bridge network: %v", err)
	}
	for _, c := range nw.IPAM.Config {
		if local[c.Gateway] {
			return c.Gateway
		}
		if _, subnet, err := net.ParseCIDR(c.Subnet); err == nil {
			gw := subnet.IP.To4()
			if gw != nil {
				gw[3]++
				if local[gw.String()] {
					return gw.String()
				}
			}
		}
	}
	t.Fatalf("no local address of the docker bridge found (IPAM %+v, local %v)", nw.IPAM.Config, local)
	return ""
}

func TestDockerNetworkIsNone(t *testing.T) {
	d := newDockerRunner(t, DockerOptions{})
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	addr := net.JoinHostPort(hostAddressForContainers(t, d), fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	connect := Step{Name: "connect", Dir: ".", Script: fmt.Sprintf(
		`php -r '$s = @stream_socket_client("tcp://%s", $no, $msg, 3); if (!$s) { echo "no route: $msg\n"; exit(7); } echo "connected\n";'`, addr)}

	// Control: the same step on the bridge network reaches the listener, so
	// a failure below is the network mode, not the probe.
	bridge := newDockerRunner(t, DockerOptions{Network: "bridge"})
	var log syncBuffer
	if code, err := bridge.Run(context.Background(), t.TempDir(), connect, &log); err != nil || code != 0 {
		t.Fatalf("control on bridge network could not connect to %s: %d %v\n%s", addr, code, err, log.String())
	}

	log = syncBuffer{}
	code, err := d.Run(context.Background(), t.TempDir(), connect, &log)
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Errorf("build container reached %s (exit %d):\n%s", addr, code, log.String())
	}
	log = syncBuffer{}
	if _, err := d.Run(context.Background(), t.TempDir(), Step{Name: "ifaces", Dir: ".", Script: "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"}, &log); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(log.String()); got != "lo" {
		t.Errorf("interfaces in build container = %q, want only lo", got)
	}
}

// signalWriter closes ready when marker has been written.
type signalWriter struct {
	syncBuffer
	marker string
	ready  chan struct{}
	once   bool
}

func (s *signalWriter) Write(p []byte) (int, error) {
	n, err := s.syncBuffer.Write(p)
	s.mu.Lock()
	if !s.once && strings.Contains(s.b.String(), s.marker) {
		s.once = true
		close(s.ready)
	}
	s.mu.Unlock()
	return n, err
}

func TestDockerCancelStopsContainer(t *testing.T) {
	d := newDockerRunner(t, DockerOptions{})
	name := fmt.Sprintf("cancel-test-%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &signalWriter{marker: "started", ready: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := d.Run(ctx, t.TempDir(), Step{Name: name, Dir: ".", Script: "echo started; sleep 300"}, w)
		done <- err
	}()
	select {
	case <-w.ready:
	case err := <-done:
		t.Fatalf("step ended before cancel: %v\n%s", err, w.String())
	case <-time.After(60 * time.Second):
		t.Fatal("container never started")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	left, err := d.cli.ContainerList(context.Background(), container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", "org.mageflow.builder.step="+name)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("container still exists after cancel: %s %s", left[0].ID[:12], left[0].State)
	}
}

func TestNewDockerErrorsTellWhatToDo(t *testing.T) {
	_, err := NewDocker(DockerOptions{Image: "mageflow/does-not-exist:never"})
	if err == nil || !strings.Contains(err.Error(), "make builder-image") || !strings.Contains(err.Error(), "build.image") {
		t.Errorf("missing image error = %v", err)
	}
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	_, err = NewDocker(DockerOptions{})
	if err == nil || !strings.Contains(err.Error(), "Docker engine not reachable at unix:///nonexistent/docker.sock") || !strings.Contains(err.Error(), "build.builder: local") {
		t.Errorf("unreachable engine error = %v", err)
	}
}

// BenchmarkFixtureBuild builds the fixture with the Local runner (baseline)
// and the Docker runner each iteration and reports the Docker overhead as a
// ratio, so the cost of isolation is visible on any machine.
func BenchmarkFixtureBuild(b *testing.B) {
	requireTools(b, "php", "composer")
	d := newDockerRunner(b, DockerOptions{})
	var local, docker time.Duration
	for i := 0; i < b.N; i++ {
		for _, r := range []Runner{NewLocal(), d} {
			b.StopTimer()
			dir := fixtures.Magento2App(b)
			steps, err := Plan(Spec{Type: TypeMagento2}, dir)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			if _, err := Execute(context.Background(), r, dir, steps, &syncBuffer{}, nil); err != nil {
				b.Fatal(err)
			}
			if r == Runner(d) {
				docker += time.Since(start)
			} else {
				local += time.Since(start)
			}
		}
	}
	b.ReportMetric(local.Seconds()/float64(b.N), "local-s/build")
	b.ReportMetric(docker.Seconds()/float64(b.N), "docker-s/build")
	b.ReportMetric(docker.Seconds()/local.Seconds(), "docker/local")
}
