package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/internal/platform/secrets"
	"github.com/mageflow/mageflow/test/fixtures"
)

// envCompose turns TestCompose on: it starts the whole docker-compose.yml.
const envCompose = "MAGEFLOW_TEST_COMPOSE"

const composeSkip = "docker-compose.yml is started only with " + envCompose +
	"=1: run `make test-compose` (it builds the images and runs this test)"

const composeMissingImage = "image %s is missing: `make test-compose` builds it (make cluster-images, builder-image, fleet-image)"

// composeImages are what docker-compose.yml and its builds run, all built
// locally by make cluster-images, builder-image and fleet-image.
var composeImages = []string{
	"mageflow/postgresql:15-bookworm", "mageflow/temporal:v1.29.1", "mageflow/temporal-ui:v2.55.0",
	"mageflow/mageflow:dev", "mageflow/instance:bookworm", "mageflow/builder:bookworm",
}

// composeServices are the long-running services (with healthchecks) and
// composeOneShots those that must have exited 0.
var (
	composeServices = []string{"postgresql", "temporal", "temporal-ui", "mageflow-worker", "mageflow-serve", "store"}
	composeOneShots = []string{"temporal-schema", "temporal-bootstrap"}
)

// Bounds: images are local, so start-up is PostgreSQL's initdb, the schema
// and Temporal's start; the build runs composer and bin/magento in the
// builder image.
const (
	composeUpTimeout     = 8 * time.Minute
	composeHealthTimeout = 5 * time.Minute
	composeBuildTimeout  = 10 * time.Minute
	composeDeployTimeout = 5 * time.Minute
)

// TestCompose starts docker-compose.yml under a project of its own, waits
// for every healthcheck, builds the fixture store and deploys it to the
// compose file's store host with the mageflow CLI inside the worker
// container, checks that the store serves the new release and the Web UI
// carries the codec endpoint, and always tears the project down (down -v).
func TestCompose(t *testing.T) {
	if os.Getenv(envCompose) != "1" {
		t.Skip(composeSkip) // names make test-compose, which runs it
	}
	s := newComposeStack(t)
	t0 := time.Now()
	s.compose(composeUpTimeout, "up", "-d")
	tUp := time.Since(t0)
	s.waitHealthy(composeHealthTimeout)
	tHealthy := time.Since(t0)
	t.Logf("compose: up -d %s, all healthy after %s", tUp.Round(time.Second), tHealthy.Round(time.Second))

	s.requireHTTP(s.url(s.servePort, "/healthz"), "")
	s.requireUICodec()
	s.requireNamespace()

	t1 := time.Now()
	var m release.Meta
	s.mageflowJSON(composeBuildTimeout, &m, "build", "--app", "shop", "--ref", "main", "--wait", "--json")
	require.NotEmpty(t, m.ID, "the build returned no release id")
	require.Equal(t, "docker", m.Builder, "the build ran in the builder image")
	tBuild := time.Since(t1)

	t2 := time.Now()
	var rec catalog.Deploy
	s.mageflowJSON(composeDeployTimeout, &rec, "deploy", "--app", "shop", "--env", "production", "--release", m.ID, "--wait", "--json")
	require.Equal(t, catalog.OutcomeSucceeded, rec.Outcome, "deploy %s", m.ID)
	require.Equal(t, m.ID, rec.ReleaseID)
	tDeploy := time.Since(t2)

	s.requireHTTP(s.url(s.storePort, webstack.ReleaseMarker), m.ID)
	s.requireHTTP(s.url(s.storePort, "/"), fixtures.MarkerV2)
	t.Logf("compose: build %s (%s) %s, deploy %s; total %s", m.ID, m.Builder, tBuild.Round(time.Second),
		tDeploy.Round(time.Second), time.Since(t0).Round(time.Second))
}

// composeStack is one docker-compose project of docker-compose.yml.
type composeStack struct {
	t                                          *testing.T
	root, project, dataDir                     string
	env                                        []string
	temporalPort, uiPort, servePort, storePort int
}

func newComposeStack(t *testing.T) *composeStack {
	t.Helper()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Fatalf("docker-compose is not installed (make deps-test installs it): %v", err)
	}
	for _, img := range composeImages {
		if err := exec.Command("docker", "image", "inspect", img).Run(); err != nil {
			t.Fatalf(composeMissingImage, img)
		}
	}
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	agent := os.Getenv("MAGEFLOW_AGENT_BIN")
	if agent == "" {
		agent = filepath.Join(root, "bin", "mageflow-agent")
	}
	if _, err := os.Stat(agent); err != nil {
		t.Fatalf("the store host runs the static agent %s: build it with make build (%v)", agent, err)
	}
	s := &composeStack{t: t, root: root, project: fmt.Sprintf("mfcompose%d", time.Now().UnixNano()%1e9), dataDir: t.TempDir()}
	// mageflow serve (uid 65532) reads the data dir through its mount.
	require.NoError(t, os.Chmod(s.dataDir, 0o755))
	cfgPath := s.writeConfig(serveGit(t, s.dataDir, hostAddr(t)) + "/repo.git")
	s.temporalPort, s.uiPort, s.servePort, s.storePort = freePort(t), freePort(t), freePort(t), freePort(t)
	s.env = append(os.Environ(),
		"MAGEFLOW_CODEC_KEY="+randomKey(t), "POSTGRES_PASSWORD="+randomHex(t),
		"MAGEFLOW_DATA_DIR="+s.dataDir, "MAGEFLOW_CONFIG_FILE="+cfgPath, "MAGEFLOW_AGENT_BIN="+agent,
		"MAGEFLOW_TEMPORAL_PORT="+strconv.Itoa(s.temporalPort), "MAGEFLOW_UI_PORT="+strconv.Itoa(s.uiPort),
		"MAGEFLOW_SERVE_PORT="+strconv.Itoa(s.servePort), "MAGEFLOW_STORE_PORT="+strconv.Itoa(s.storePort),
		"MAGEFLOW_PUBLIC_URL="+s.url(s.servePort, ""))
	t.Cleanup(s.down)
	return s
}

// writeConfig writes the shipped docs/compose/mageflow.yaml with its data
// paths moved to the test's data dir and the fixture store, fetched from
// repoURL, declared on the compose file's store host. It also lays out the
// data dir: the fixture's bare repository, the env.php secret and the
// artifacts folder mageflow serve reads (its mount is read-only).
func (s *composeStack) writeConfig(repoURL string) string {
	t := s.t
	path := filepath.Join(s.dataDir, "mageflow.yaml")
	bare := filepath.Join(s.dataDir, "repo.git")
	out, err := exec.Command("git", "clone", "-q", "--bare", fixtures.Magento2App(t), bare).CombinedOutput()
	require.NoError(t, err, "git clone --bare: %s", out)
	area := secrets.Area{Dir: filepath.Join(s.dataDir, "secrets")}
	env := fmt.Sprintf("<?php return ['MAGE_MODE' => 'production', 'fixture_db' => %q];\n", filepath.Join(s.dataDir, "db.json"))
	require.NoError(t, area.Write("shop-env.php", []byte(env)))
	require.NoError(t, area.Write("maintenance-bypass", []byte(randomHex(t))))
	require.NoError(t, os.MkdirAll(filepath.Join(s.dataDir, "artifacts"), 0o755))
	src, err := os.ReadFile(filepath.Join(s.root, "docs", "compose", "mageflow.yaml"))
	require.NoError(t, err)
	yml := string(src)
	require.Contains(t, yml, "/var/lib/mageflow/", "docs/compose/mageflow.yaml no longer keeps its data under /var/lib/mageflow")
	require.Contains(t, yml, "\napps: {}\n", "docs/compose/mageflow.yaml no longer ends with an empty apps: section")
	yml = strings.ReplaceAll(yml, "/var/lib/mageflow/", s.dataDir+"/")
	yml = strings.Replace(yml, "\napps: {}\n", fmt.Sprintf(`
apps:
  shop:
    repo: %q
    type: magento2
    build: {builder: docker, env: {COMPOSER_MIRROR_PATH_REPOS: "1"}}
    environments:
      production: {branch: main, hosts: [store], env_php: "file:shop-env.php", health_paths: [/], keep_releases: 3}
`, repoURL), 1)
	require.NoError(t, os.WriteFile(path, []byte(yml), 0o644))
	return path
}

// hostAddr is the host's address on Docker's default bridge, which
// containers of any bridge network reach (as the host, not forwarded).
func hostAddr(t *testing.T) string {
	t.Helper()
	ifc, err := net.InterfaceByName("docker0")
	require.NoError(t, err, "the Docker engine's docker0 bridge")
	addrs, err := ifc.Addrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil {
			return ip.IP.String()
		}
	}
	t.Fatalf("docker0 has no IPv4 address")
	return ""
}

// serveGit serves the bare repositories under root over git's smart HTTP
// protocol (git http-backend as CGI) on addr and returns the base URL. The
// worker fetches with go-git, which needs a git binary only for local
// paths; the mageflow image has none, as production repositories are
// remote (https or ssh).
func serveGit(t *testing.T, root, addr string) string {
	t.Helper()
	exe, err := exec.Command("git", "--exec-path").Output()
	require.NoError(t, err, "git --exec-path (install git: make deps)")
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(exe)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// compose runs docker-compose on the project and fails the test on error.
func (s *composeStack) compose(timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.run(timeout, args...)
	if err != nil {
		s.t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// run runs docker-compose on the project and returns its standard output
// (with its standard error when it failed).
func (s *composeStack) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-compose", append([]string{"-f", "docker-compose.yml", "-p", s.project, "--ansi", "never"}, args...)...)
	cmd.Dir, cmd.Env = s.root, s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// down always tears the project down, with its volumes, after printing
// the services' logs when the test failed.
func (s *composeStack) down() {
	if s.t.Failed() {
		logs, _ := s.run(time.Minute, "logs", "--no-color", "--tail", "60")
		s.t.Logf("docker-compose logs:\n%s", logs)
	}
	if out, err := s.run(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
		s.t.Errorf("docker-compose down -v: %v\n%s", err, out)
	}
}

// waitHealthy waits until every service's healthcheck passes and both
// one-shots exited 0.
func (s *composeStack) waitHealthy(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		state := s.states()
		if state == "" {
			return
		}
		if strings.Contains(state, "exited") && !strings.Contains(state, "exited 0") || time.Now().After(deadline) {
			s.t.Fatalf("compose services not ready after %s: %s", timeout, state)
		}
		time.Sleep(2 * time.Second)
	}
}

// states describes the services not ready yet ("" when all are).
func (s *composeStack) states() string {
	var notReady []string
	check := func(svc, format, want string) {
		id := strings.TrimSpace(s.compose(time.Minute, "ps", "-q", svc))
		if id == "" {
			notReady = append(notReady, svc+": no container")
			return
		}
		out, err := exec.Command("docker", "inspect", "-f", format, id).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			notReady = append(notReady, fmt.Sprintf("%s: %s", svc, got))
		}
	}
	for _, svc := range composeServices {
		check(svc, "{{if .State.Health}}{{.State.Health.Status}}{{else}}no healthcheck{{end}}", "healthy")
	}
	for _, svc := range composeOneShots {
		check(svc, "{{.State.Status}} {{.State.ExitCode}}", "exited 0")
	}
	return strings.Join(notReady, "; ")
}

// mageflowJSON runs the mageflow CLI in the worker container and decodes
// its JSON output into v.
func (s *composeStack) mageflowJSON(timeout time.Duration, v any, args ...string) {
	s.t.Helper()
	out, err := s.run(timeout, append([]string{"exec", "-T", "mageflow-worker", "/mageflow"}, args...)...)
	require.NoError(s.t, err, "mageflow %s:\n%s", strings.Join(args, " "), out)
	start := strings.Index(out, "{")
	require.GreaterOrEqual(s.t, start, 0, "mageflow %s printed no JSON:\n%s", args[0], out)
	require.NoError(s.t, json.Unmarshal([]byte(out[start:]), v), "mageflow %s:\n%s", args[0], out)
}

// requireUICodec checks that the Web UI answers with mageflow serve's codec
// endpoint in its settings.
func (s *composeStack) requireUICodec() {
	s.t.Helper()
	body := s.requireHTTP(s.url(s.uiPort, "/api/v1/settings"), "")
	var st struct{ Codec struct{ Endpoint string } }
	require.NoError(s.t, json.Unmarshal([]byte(body), &st), body)
	require.Equal(s.t, s.url(s.servePort, "/codec"), st.Codec.Endpoint)
}

// requireNamespace checks, through the published frontend port, that the
// bootstrap job registered the mageflow namespace with every search
// attribute mageflow sets.
func (s *composeStack) requireNamespace() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: "127.0.0.1:" + strconv.Itoa(s.temporalPort), Namespace: "mageflow"})
	require.NoError(s.t, err, "the published Temporal frontend")
	defer c.Close()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "mageflow"})
	require.NoError(s.t, err)
	for _, d := range searchattr.All() {
		require.Equal(s.t, d.Type, resp.GetCustomAttributes()[d.Name], "search attribute %s in namespace mageflow", d.Name)
	}
}

// requireHTTP GETs url, requires 200 and a body containing want.
func (s *composeStack) requireHTTP(url, want string) string {
	s.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(s.t, err)
	require.Equal(s.t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, b)
	require.Contains(s.t, string(b), want, "GET %s", url)
	return string(b)
}

func (s *composeStack) url(port int, path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(port) + path
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomKey(t *testing.T) string {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b)
}

func randomHex(t *testing.T) string {
	b := make([]byte, 18)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}
