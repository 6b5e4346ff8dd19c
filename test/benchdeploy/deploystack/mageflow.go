package deploystack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/agentapp"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/front/workerapp"
	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// WriteConfig writes a complete mageflow.yaml into dir for a control worker
// on queue of the Temporal server at address, with the stack's hosts and
// the app built from repo, creates the codec key and the secrets, and loads
// it. (The tests in package test use their harness's config instead.)
func (s *Stack) WriteConfig(dir, address, queue, repo string, hostExtra map[string]string, envs ...Env) (string, *config.Config, error) {
	yml := fmt.Sprintf(`temporal: {address: %q, namespace: default, task_queue: %q}
artifacts: {dir: ./artifacts}
secrets: {dir: ./secrets}
codec: {key_file: ./codec.key, key_env: MAGEFLOW_TEST_NO_SUCH_ENV}
worker: {metrics_listen: "127.0.0.1:0", work_dir: ./work}
git: {cache_dir: ./git}
%sapps:
%s`, address, queue, s.HostsYAML(hostExtra), s.AppYAML(repo, envs...))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	p := filepath.Join(dir, "mageflow.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o644); err != nil {
		return "", nil, err
	}
	cfg, err := config.Load(p, false)
	if err != nil {
		return "", nil, err
	}
	if _, err := codec.GenerateKeyFile(cfg.Codec.KeyFile); err != nil {
		return "", nil, err
	}
	if err := s.WriteSecrets(cfg.Secrets.Dir); err != nil {
		return "", nil, err
	}
	return p, cfg, nil
}

// Dial connects to Temporal with the config's data converter (payloads
// encrypted like production).
func Dial(cfg *config.Config) (client.Client, error) {
	dc, _, err := tclient.DataConverter(cfg)
	if err != nil {
		return nil, err
	}
	opts, err := tclient.Options(cfg, nil, dc, nil)
	if err != nil {
		return nil, err
	}
	return client.Dial(opts)
}

// StartControl runs the control worker (workflows, build and deploy
// activities) in this process, registered exactly as bin/mageflow-worker
// registers it.
func StartControl(ctx context.Context, c client.Client, cfg *config.Config) (stop func(), err error) {
	acts, err := workerapp.NewBuildActivities(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	acts.HeartbeatEvery = time.Second
	w := worker.New(c, cfg.Temporal.TaskQueue, worker.Options{})
	workerapp.Register(w, acts, &activities.DeployActivities{Config: cfg, Store: acts.Store, Client: c})
	if err := w.Start(); err != nil {
		return nil, err
	}
	return w.Stop, nil
}

// StartAgents runs an agent for every host in this process, each on its
// host's task queue with the host activities that ship.
func StartAgents(ctx context.Context, c client.Client, cfg *config.Config, hosts []string) (stop func(), err error) {
	var workers []worker.Worker
	var hostActs []*agent.HostActivities
	stop = func() {
		for _, w := range workers {
			w.Stop()
		}
		// The background work after Prune (spares, hashing) ends too,
		// before the caller removes the hosts' directories.
		for _, a := range hostActs {
			agent.StopSpares(a)
		}
	}
	for _, h := range hosts {
		acts, err := agentapp.NewHostActivities(ctx, cfg, h, "")
		if err != nil {
			stop()
			return nil, err
		}
		acts.HeartbeatEvery = time.Second
		hostActs = append(hostActs, acts)
		w := worker.New(c, agent.HostTaskQueue(h), agentapp.WorkerOptions())
		agentapp.Register(w, acts, nil)
		if err := w.Start(); err != nil {
			stop()
			return nil, err
		}
		workers = append(workers, w)
	}
	return stop, nil
}

// BuildWorker compiles bin/mageflow-worker into dir for tests that run the
// worker and agents as OS processes (so SIGKILL is real).
func BuildWorker(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "mageflow-worker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/mageflow/mageflow/worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./worker: %v\n%s", err, out)
	}
	return bin, nil
}

// Process is a mageflow-worker (control or agent) run as its own OS
// process, which a test can SIGKILL and start again.
type Process struct {
	Name string
	bin  string
	args []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// Starts counts how often the process was started.
	Starts int
}

// StartProcess starts bin with args; its output is appended to log.
func StartProcess(name, bin, log string, args ...string) (*Process, error) {
	p := &Process{Name: name, bin: bin, args: args, log: log}
	return p, p.Start()
}

// Start starts the process (again).
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is still running (pid %d)", p.Name, p.cmd.Process.Pid)
		}
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== start %d of %s at %s\n", p.Starts+1, p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so cleanup reaches the php processes an
	// agent started; a test's SIGKILL hits the process alone, as a crash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.Starts++
	return nil
}

// Kill sends SIGKILL to the process (not its children: a crashed agent
// leaves its bin/magento running) and waits for it to exit.
func (p *Process) Kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-done
	return nil
}

// Stop kills the process and its group; for cleanup.
func (p *Process) Stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Build builds ref of app through BuildRelease and waits for the release.
func Build(ctx context.Context, c client.Client, cfg *config.Config, app, ref string) (*release.Meta, error) {
	run, err := (&start.Builds{Client: c, Config: cfg}).Start(ctx, start.BuildRequest{App: app, Ref: ref, Trigger: "deploystack"})
	if err != nil {
		return nil, err
	}
	var m release.Meta
	if err := run.Get(ctx, &m); err != nil {
		return nil, fmt.Errorf("build %s of %s: %w", ref, app, err)
	}
	return &m, nil
}

// Deployer starts deploys through the deploy client (the per-environment
// lock the CLI and dashboard use) and waits for their durable records.
type Deployer struct {
	*start.Deploys
}

// Run deploys and waits: it returns the deploy record (read back from the
// catalog when the workflow failed) and the workflow's error.
func (d *Deployer) Run(ctx context.Context, req activities.DeployRequest) (*catalog.Deploy, error) {
	if req.RequestedBy == "" {
		req.RequestedBy = "deploystack"
	}
	run, err := d.Start(ctx, req, false)
	if err != nil {
		return nil, err
	}
	return d.Wait(ctx, req.App, req.Env, run)
}

// Wait waits for a started deploy and returns its record and error.
func (d *Deployer) Wait(ctx context.Context, app, env string, run client.WorkflowRun) (*catalog.Deploy, error) {
	var rec catalog.Deploy
	werr := run.Get(ctx, &rec)
	if werr == nil {
		return &rec, nil
	}
	if ctx.Err() != nil {
		return nil, werr
	}
	r, err := d.Record(ctx, app, env, run.GetRunID())
	if err != nil {
		return nil, fmt.Errorf("%w (and its record: %v)", werr, err)
	}
	return r, werr
}

// Record reads the deploy record of runID from the catalog.
func (d *Deployer) Record(ctx context.Context, app, env, runID string) (*catalog.Deploy, error) {
	list, err := catalog.Deploys(ctx, d.Store, app, env, 0)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].RunID == runID {
			return &list[i], nil
		}
	}
	return nil, fmt.Errorf("no deploy record of run %s of %s/%s", runID, app, env)
}

var markerRE = regexp.MustCompile(`fixture-marker-[A-Za-z0-9-]+`)

// greetingFile is the fixture file whose marker the page prints.
const greetingFile = "app/code/Vendor/Module/Model/Greeting.php"

// CommitMarker commits a new greeting marker on main, the smallest change
// that makes a new release without a database upgrade.
func CommitMarker(repo, marker string) error {
	return CommitEdit(repo, greetingFile, "Greeting "+marker, func(s string) (string, error) {
		if !markerRE.MatchString(s) {
			return "", fmt.Errorf("%s has no fixture-marker-…", greetingFile)
		}
		return markerRE.ReplaceAllString(s, "fixture-marker-"+marker), nil
	})
}

var setupVersionRE = regexp.MustCompile(`setup_version="([0-9]+)\.([0-9]+)\.([0-9]+)"`)

// CommitUpgrade bumps Vendor_Module's setup_version, so setup:db:status
// reports the database out of date and the deploy must upgrade it.
func CommitUpgrade(repo string) error {
	const f = "app/code/Vendor/Module/etc/module.xml"
	return CommitEdit(repo, f, "Bump Vendor_Module setup_version", func(s string) (string, error) {
		m := setupVersionRE.FindStringSubmatch(s)
		if m == nil {
			return "", fmt.Errorf("%s has no setup_version", f)
		}
		var patch int
		fmt.Sscanf(m[3], "%d", &patch)
		return setupVersionRE.ReplaceAllString(s, fmt.Sprintf(`setup_version="%s.%s.%d"`, m[1], m[2], patch+1)), nil
	})
}

// CommitEdit rewrites one file of the repository and commits it on main.
func CommitEdit(repo, file, msg string, edit func(string) (string, error)) error {
	p := filepath.Join(repo, file)
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	out, err := edit(string(b))
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		return err
	}
	return Commit(repo, msg)
}

// Commit commits everything in the work tree on main.
func Commit(repo, msg string) error {
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "--allow-empty", "-m", msg}} {
		cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
		cmd.Env = append(os.Environ(),
			"GIT_AUTHOR_NAME=Fixture Author", "GIT_AUTHOR_EMAIL=fixture@example.com",
			"GIT_COMMITTER_NAME=Fixture Author", "GIT_COMMITTER_EMAIL=fixture@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s (install git: make deps): %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
