package fleetstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/worker"

	"github.com/mageflow/mageflow/activities/agent"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/fleet"
	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
	"github.com/mageflow/mageflow/internal/front/agentapp"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"

	tclient "go.temporal.io/sdk/client"
)

// BaseImage is the instance image internal/fleet/docker/image/build.sh
// builds.
const BaseImage = "mageflow/instance:bookworm"

// Options configure Start.
type Options struct {
	// Dir holds the config, artifacts, the fleet's state, the balancer.
	Dir string
	// Temporal is the dev server's frontend on this machine (loopback).
	Temporal string
	// Queue is the control task queue (one per test).
	Queue string
	// App is the app name (default "fleetshop"); GroupKey the groups:
	// entry (default "web"); the provider's group name is derived from it
	// and a random suffix so runs never share containers.
	App, GroupKey string
	// Desired, Max, WarmPool shape the group (default 3, Desired+2, 1).
	Desired, Max, WarmPool int
	// Image the group launches (default BaseImage).
	Image string
	// WorkerBin is the control worker (BuildStaticWorker).
	WorkerBin string
	// AgentBin is a CGO_ENABLED=0 mageflow-agent (BuildStaticAgent),
	// mounted into every instance as its agent.
	AgentBin string
	// Log receives progress lines (nil: none).
	Log func(format string, args ...any)
}

// Stack is a running fleet: group, balancer, control worker.
type Stack struct {
	Opt Options
	Dir string
	// Group is the groups: entry, GroupName the provider's name.
	Group, GroupName string
	Gateway          string
	CfgPath          string
	Cfg              *config.Config
	Client           tclient.Client
	Store            store.Store
	Docker           *client.Client
	// Provider reads and changes the group's recorded state (it does not
	// reconcile: the control worker's controller does).
	Provider *dockerfleet.Provider
	// Release is what the environment runs.
	Release *release.Meta
	// BalancerURL is nginx's front (loopback), VerifyURL its member list.
	BalancerURL, VerifyURL string
	Balancer               *webstack.Proc
	// Control is the control worker process (workflows, fleet activities,
	// the provider's controller).
	Control *deploystack.Process
	Logs    string

	fwd     *Forwarder
	lbStop  func()
	cleanup []func()
}

func (s *Stack) logf(format string, args ...any) {
	if s.Opt.Log != nil {
		s.Opt.Log(format, args...)
	}
}

// Start brings up everything and returns once nginx serves Desired
// instances of the group with the app's release.
func Start(ctx context.Context, opt Options) (_ *Stack, err error) {
	if err := deploystack.RequireBinaries(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	if opt.WorkerBin == "" || opt.AgentBin == "" {
		return nil, errors.New("fleetstack: Options.WorkerBin and AgentBin are needed: build them with BuildStaticWorker and BuildStaticAgent")
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	// The groups: key is the provider's name too: an instance's agent
	// is started with the provider's name as its --group.
	s := &Stack{Opt: opt, Dir: dir, GroupName: opt.GroupKey + "-" + randSuffix(), Logs: filepath.Join(dir, "logs")}
	s.Group = s.GroupName
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.startServices(ctx); err != nil {
		return nil, err
	}
	if err := s.buildRelease(ctx); err != nil {
		return nil, err
	}
	if err := s.startFleet(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// withDefaults fills the options left zero.
func (opt Options) withDefaults() Options {
	if opt.App == "" {
		opt.App = "fleetshop"
	}
	if opt.GroupKey == "" {
		opt.GroupKey = "web"
	}
	if opt.Desired == 0 {
		opt.Desired = 3
	}
	if opt.Max == 0 {
		opt.Max = opt.Desired + 2
	}
	if opt.Image == "" {
		opt.Image = BaseImage
	}
	return opt
}

// startServices connects to Docker and the fleet provider, forwards
// Temporal to the instances, writes the config, dials Temporal, opens the
// artifact store and starts the balancer.
func (s *Stack) startServices(ctx context.Context) (err error) {
	dir, opt := s.Dir, s.Opt
	if err := os.MkdirAll(s.Logs, 0o755); err != nil {
		return err
	}
	if s.Docker, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation()); err != nil {
		return err
	}
	if _, err := s.Docker.ImageInspect(ctx, opt.Image); err != nil {
		return fmt.Errorf("fleetstack: image %s: %w (build it: sudo internal/fleet/docker/image/build.sh)", opt.Image, err)
	}
	// The control worker's controller records the fleet here (work_dir is
	// ./work beside the config).
	if s.Provider, err = dockerfleet.New(dockerfleet.Options{StateDir: filepath.Join(dir, "mageflow", "work", "fleet"), Network: dockerfleet.DefaultNetwork, Docker: s.Docker}); err != nil {
		return err
	}
	if s.Gateway, err = s.Provider.Gateway(ctx); err != nil {
		return err
	}
	// Temporal as the instances see it.
	if s.fwd, err = Forward(net.JoinHostPort(s.Gateway, "0"), opt.Temporal); err != nil {
		return err
	}
	if err := s.writeConfig(); err != nil {
		return err
	}
	if s.Client, err = deploystack.Dial(s.Cfg); err != nil {
		return err
	}
	if s.Store, err = store.NewLocal(s.Cfg.Artifacts.Dir); err != nil {
		return err
	}
	return s.startBalancer(ctx)
}

// buildRelease builds the release and makes it production's current one.
// The release exists before any instance: ScaleOutReadiness puts the
// environment's release on every instance it lets in. The build runs on a
// worker in this process, before the control worker (and with it the
// fleet's controller) starts.
func (s *Stack) buildRelease(ctx context.Context) (err error) {
	opt := s.Opt
	if _, err := deploystack.FixtureRepo(filepath.Join(s.Dir, "repo")); err != nil {
		return err
	}
	stopBuild, err := deploystack.StartControl(ctx, s.Client, s.Cfg)
	if err != nil {
		return err
	}
	t0 := time.Now()
	s.Release, err = deploystack.Build(ctx, s.Client, s.Cfg, opt.App, "main")
	stopBuild()
	if err != nil {
		return err
	}
	s.logf("built %s in %s", s.Release.ID, time.Since(t0).Round(time.Millisecond))
	return catalog.PutEnv(ctx, s.Store, &catalog.EnvState{App: opt.App, Env: "production", Current: s.Release.ID, Release: s.Release,
		DeployedAt: time.Now().UTC(), DeployedBy: "fleetstack"})
}

// startFleet starts the control worker and waits until the group's
// members are in nginx and the warm pool is full.
func (s *Stack) startFleet(ctx context.Context) (err error) {
	opt := s.Opt
	if s.Control, err = deploystack.StartProcess("control worker", opt.WorkerBin, filepath.Join(s.Logs, "control.log"),
		"--config", s.CfgPath, "--log-level", "warn"); err != nil {
		return err
	}
	t0 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if _, err := WaitMembers(wctx, s.VerifyURL, func(ids []string) bool { return len(ids) == opt.Desired }); err != nil {
		return fmt.Errorf("fleetstack: the group never reached %d members in nginx: %w", opt.Desired, err)
	}
	if err := s.WaitPool(wctx, opt.WarmPool); err != nil {
		return err
	}
	s.logf("%d instances in nginx and %d in the warm pool after %s", opt.Desired, opt.WarmPool, time.Since(t0).Round(time.Millisecond))
	return nil
}

// startBalancer starts the balancer's agent (in this process) and nginx,
// whose site includes the group's upstream the agent owns.
func (s *Stack) startBalancer(ctx context.Context) error {
	host, err := agentapp.NewHostActivities(ctx, s.Cfg, "lb", "")
	if err != nil {
		return err
	}
	lb, err := agentapp.NewLBActivities(s.Cfg, "lb")
	if err != nil {
		return err
	}
	if lb == nil {
		return errors.New("fleetstack: host lb balances no group: the config's balancer section is wrong")
	}
	b := s.Cfg.Groups[s.Group].Balancer
	site := fmt.Sprintf(`include %s;
server {
    listen %s;
    location / {
        proxy_pass http://%s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_next_upstream error timeout http_502;
        proxy_connect_timeout 2s;
        proxy_read_timeout 60s;
    }
}`, b.File, strings.TrimPrefix(s.BalancerURL, "http://"), b.Upstream)
	if s.Balancer, err = webstack.StartNginx(ctx, filepath.Join(s.Dir, "balancer"), site); err != nil {
		return err
	}
	w := worker.New(s.Client, agent.HostTaskQueue("lb"), agentapp.WorkerOptions())
	agentapp.Register(w, host, lb)
	if err := w.Start(); err != nil {
		return err
	}
	s.lbStop = w.Stop
	return nil
}

// WaitPool waits until the warm pool holds exactly n stopped (prepared)
// instances.
func (s *Stack) WaitPool(ctx context.Context, n int) error {
	for {
		g, err := s.Describe(ctx)
		if err != nil {
			return err
		}
		got, all := 0, 0
		if g.WarmPool != nil {
			all = len(g.WarmPool.Instances)
			for _, i := range g.WarmPool.Instances {
				if i.LifecycleState == fleet.StateWarmedStopped {
					got++
				}
			}
		}
		if got == n && all == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleetstack: the warm pool never held %d stopped instances (%d of %d): %w", n, got, all, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// DeriveImage is DeriveImage on the stack's engine; the image is removed
// with the stack.
func (s *Stack) DeriveImage(ctx context.Context, ref string, files map[string]string) (string, error) {
	id, err := DeriveImage(ctx, s.Docker, BaseImage, ref, files)
	if err == nil {
		s.cleanup = append(s.cleanup, func() {
			_, _ = s.Docker.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
		})
	}
	return id, err
}

// Describe reads the group.
func (s *Stack) Describe(ctx context.Context) (*fleet.Group, error) {
	return s.Provider.Describe(ctx, s.GroupName)
}

// Close stops everything and removes the group's containers.
func (s *Stack) Close() {
	if s.Control != nil {
		s.Control.Stop()
	}
	if s.lbStop != nil {
		s.lbStop()
	}
	if s.Provider != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_ = s.Provider.DeleteGroup(ctx, s.GroupName)
		cancel()
		_ = s.Provider.Close()
	}
	if s.Balancer != nil {
		_ = s.Balancer.Stop()
	}
	if s.Client != nil {
		s.Client.Close()
	}
	if s.fwd != nil {
		s.fwd.Close()
	}
	for _, f := range s.cleanup {
		f()
	}
	if s.Docker != nil {
		s.Docker.Close()
	}
}

// ControlLog returns the control worker's log (for failing tests).
func (s *Stack) ControlLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Logs, "control.log"))
	return string(b)
}

// InstanceLogs returns the last lines of every container of the group.
func (s *Stack) InstanceLogs() string {
	out, _ := exec.Command("sh", "-c", fmt.Sprintf(
		`for c in $(docker ps -aq --filter label=%s=%s); do echo "== $(docker inspect -f '{{.Name}} {{.State.Status}}' $c)"; docker logs --tail 30 $c 2>&1; done`,
		dockerfleet.LabelGroup, s.GroupName)).CombinedOutput()
	return string(out)
}

func randSuffix() string {
	b := make([]byte, 3)
	f, err := os.Open("/dev/urandom")
	if err == nil {
		_, _ = f.Read(b)
		f.Close()
	}
	return fmt.Sprintf("%x", b)
}

// writeConfig writes the stack's mageflow.yaml and its codec key.
func (s *Stack) writeConfig() error {
	cfgDir := filepath.Join(s.Dir, "mageflow")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return err
	}
	front, err := webstack.FreePort()
	if err != nil {
		return err
	}
	verify, err := webstack.FreePort()
	if err != nil {
		return err
	}
	s.BalancerURL = fmt.Sprintf("http://127.0.0.1:%d", front)
	s.VerifyURL = fmt.Sprintf("http://127.0.0.1:%d/.mageflow-members", verify)
	ngx := filepath.Join(s.Dir, "balancer")
	yml := fmt.Sprintf(`temporal: {address: %q, namespace: default, task_queue: %q}
artifacts: {dir: ./artifacts}
secrets: {dir: ./secrets}
codec: {key_file: ./codec.key, key_env: MAGEFLOW_TEST_NO_SUCH_ENV}
worker: {metrics_listen: "127.0.0.1:0", work_dir: ./work}
git: {cache_dir: ./git}
hosts:
  lb:
    root: %q
    nginx: {prefix: %q, conf: %q, pid_file: %q, error_log: %q}
groups:
  %s:
%s
    balancer: {host: lb, port: 80, file: %q, upstream: mageflow_%s, verify_url: %q}
apps:
  %s:
    repo: %q
    type: magento2
    build: {builder: local}
    environments:
      production:
        branch: main
        group: %s
        url: %q
        env_php: "file:%s-env.php"
        health_paths: [/]
        warm_paths: [/]
        keep_releases: 3
`, s.fwd.Addr, s.Opt.Queue,
		filepath.Join(s.Dir, "lb"), ngx, filepath.Join(ngx, "nginx.conf"), filepath.Join(ngx, "nginx.pid"), filepath.Join(ngx, "error.log"),
		s.Group, s.groupYAML(), filepath.Join(s.Dir, "balancer-include", "upstream-"+s.Group+".conf"), s.Group, s.VerifyURL,
		s.Opt.App, filepath.Join(s.Dir, "repo"), s.Group, s.BalancerURL, s.Opt.App)
	if err := os.MkdirAll(filepath.Join(s.Dir, "balancer-include"), 0o755); err != nil {
		return err
	}
	s.CfgPath = filepath.Join(cfgDir, "mageflow.yaml")
	if err := os.WriteFile(s.CfgPath, []byte(yml), 0o644); err != nil {
		return err
	}
	cfg, err := config.Load(s.CfgPath, false)
	if err != nil {
		return err
	}
	if _, err := codec.GenerateKeyFile(cfg.Codec.KeyFile); err != nil {
		return err
	}
	// The fixture's env.php; its "database" is used by bin/magento only,
	// which readiness does not run.
	env := fmt.Sprintf("<?php return ['MAGE_MODE' => 'production', 'fixture_db' => %q];\n", filepath.Join(s.Dir, "db.json"))
	if err := (secrets.Area{Dir: cfg.Secrets.Dir}).Write(s.Opt.App+"-env.php", []byte(env)); err != nil {
		return err
	}
	s.Cfg = cfg
	return nil
}

// groupYAML is the group's entry below its key (indented by four
// spaces): the instances' host settings and the group's shape. The control
// worker creates the group from it and mounts the config, artifacts and
// codec key into every instance (internal/front/workerapp/fleet.go).
func (s *Stack) groupYAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "    provider: docker\n    name: %s\n    host: {root: /srv/mageflow}\n", s.GroupName)
	fmt.Fprintf(&b, "    docker:\n      image: %q\n      min: 0\n      max: %d\n      desired: %d\n      agent: %q\n",
		s.Opt.Image, s.Opt.Max, s.Opt.Desired, s.Opt.AgentBin)
	if s.Opt.WarmPool > 0 {
		fmt.Fprintf(&b, "      warm_pool: {min_size: %d, max_prepared_capacity: %d}\n", s.Opt.WarmPool, s.Opt.Desired+s.Opt.WarmPool)
	}
	return b.String()
}
