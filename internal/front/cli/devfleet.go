package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/agentapp"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/front/tclient"
	"github.com/mageflow/mageflow/internal/host/lbconf"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/workflows"
)

// fleetLeftRunning is what `mageflow dev --fleet` says when it stops: the
// group's containers outlive it on purpose (the next run reuses the group
// and its warm pool, as an Auto Scaling group outlives its console).
const fleetLeftRunning = `
the containers of docker group %s keep running (the next make run-fleet reuses them):
  list:   docker ps -a --filter label=org.mageflow.fleet.group=%s
  remove: docker rm -f $(docker ps -aq --filter label=org.mageflow.fleet.group=%s)
`

// fleetTarget is the docker group `mageflow dev --fleet` shows, and the
// environment deploying to it.
type fleetTarget struct {
	key      string // groups: entry
	group    *config.Group
	app, env string
	url      string // the environment's URL: the balancer's front
}

// findFleet picks the docker group of the demo app ("web" first).
func findFleet(cfg *config.Config) (*fleetTarget, error) {
	var keys []string
	for k, g := range cfg.Groups {
		if g != nil && g.Provider == "docker" {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] == "web" || (keys[j] != "web" && keys[i] < keys[j]) })
	for _, k := range keys {
		for _, app := range cfg.AppNames() {
			a := cfg.Apps[app]
			for _, env := range sortedEnvNames(a) {
				if e := a.Environments[env]; e.Group == k {
					return &fleetTarget{key: k, group: cfg.Groups[k], app: app, env: env, url: strings.TrimRight(e.URL, "/")}, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("--fleet needs a docker group (groups: NAME: {provider: docker, …}) that an environment names (group: NAME) in %s; see docs/configuration.md", cfg.File)
}

// startFleetBalancer runs the group's balancer — nginx on this machine,
// listening on the environment's URL, proxying to the upstream include the
// balancer host's agent owns — when that host is a local one.
func startFleetBalancer(ctx context.Context, cfg *config.Config, ft *fleetTarget, stdout io.Writer) (*webstack.Proc, error) {
	b := ft.group.Balancer
	h := cfg.Hosts[b.Host]
	if h == nil || !h.Local {
		return nil, fmt.Errorf("--fleet: group %s's balancer host %q must be a local host (local: true) so `mageflow dev` runs its nginx and agent", ft.key, b.Host)
	}
	u, err := url.Parse(ft.url)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--fleet: environment %s/%s needs url: http://127.0.0.1:PORT (where the balancer listens)", ft.app, ft.env)
	}
	if h.Nginx.Prefix == "" || h.Nginx.Conf == "" || h.Nginx.PIDFile == "" {
		return nil, fmt.Errorf("--fleet: host %s needs nginx.prefix, conf and pid_file (the balancer nginx `mageflow dev` starts and its agent reloads)", b.Host)
	}
	if filepath.Dir(h.Nginx.Conf) != strings.TrimRight(h.Nginx.Prefix, "/") {
		return nil, fmt.Errorf("--fleet: host %s: keep nginx.conf inside nginx.prefix (%s)", b.Host, h.Nginx.Prefix)
	}
	// The include must exist before nginx reads it; the agent writes the
	// same (idempotent) empty include at its start.
	for _, d := range []string{filepath.Dir(b.File), h.Nginx.Prefix, h.Root} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
	}
	if _, err := agentapp.NewLBActivities(cfg, b.Host); err != nil {
		return nil, err
	}
	site := fmt.Sprintf(`include %s;
server {
    listen %s;
    location / {
        proxy_pass http://%s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_next_upstream error timeout http_502;
        proxy_connect_timeout 2s;
    }
}`, b.File, u.Host, b.Upstream)
	p, err := webstack.StartNginx(ctx, strings.TrimRight(h.Nginx.Prefix, "/"), site)
	if err != nil {
		return nil, fmt.Errorf("balancer nginx of %s: %w", ft.key, err)
	}
	fmt.Fprintf(stdout, "balancer %s: nginx on %s in front of group %s (docker)\n", b.Host, ft.url, ft.key)
	return p, nil
}

// runFleetDemo shows the group's life: its instances made ready by
// ScaleOutReadiness with the demo release, a scale-out from the warm pool,
// and a WarmPoolImageRefresh that rolls every instance (onto the demo
// release too), each with its Web UI link.
//
// since bounds the readiness runs listed first (the ones of this session).
func runFleetDemo(ctx context.Context, cfg *config.Config, c client.Client, ft *fleetTarget, rel *release.Meta, since time.Time, stdout io.Writer) error {
	st0, err := store.Configured(ctx, cfg.Artifacts)
	if err != nil {
		return err
	}
	p, err := activities.OpenFleet(ctx, ft.group)
	if err != nil {
		return err
	}
	name := ft.group.Name
	fmt.Fprintf(stdout, "\nfleet demo: group %s (docker) for %s/%s behind %s\n", ft.key, ft.app, ft.env, ft.url)

	// Instances get the environment's release from ScaleOutReadiness. The
	// demo records its new release as the environment's: every instance
	// launched from here on (the scale-out, the refresh's replacements)
	// receives it. (A ZeroDowntimeDeploy to the group works too, but the
	// demo store's first deploy runs setup:upgrade, which needs the
	// fixture's database shared with the containers and a maintenance
	// bypass in the group's host template.)
	if err := setFleetRelease(ctx, st0, ft, rel, stdout); err != nil {
		return err
	}
	g, err := p.Describe(ctx, name)
	if err != nil {
		return fmt.Errorf("group %s: %w (the control worker creates it from the config at its start)", name, err)
	}
	const base = 2
	if g.Desired != base {
		if err := p.SetDesired(ctx, name, base, false); err != nil {
			return err
		}
	}
	verify := ft.group.Balancer.VerifyURL
	fmt.Fprintf(stdout, "fleet demo: waiting for %d instances to be ready and in nginx (each through ScaleOutReadiness) …\n", base)
	if _, err := waitFleetMembers(ctx, verify, func(ids []string) bool { return len(ids) == base }); err != nil {
		return err
	}
	printReadiness(ctx, cfg, c, name, since, stdout)

	// Scale-out: the warm pool's instance is started and made ready.
	t0 := time.Now()
	fmt.Fprintf(stdout, "\nfleet demo: scale-out %d → %d (the warm pool's instance starts; ScaleOutReadiness adds it to nginx) …\n", base, base+1)
	if err := p.SetDesired(ctx, name, base+1, false); err != nil {
		return err
	}
	if _, err := waitFleetMembers(ctx, verify, func(ids []string) bool { return len(ids) == base+1 }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  in nginx after %s\n", time.Since(t0).Round(10*time.Millisecond))
	printReadiness(ctx, cfg, c, name, t0, stdout)

	return runFleetRefresh(ctx, cfg, c, ft, stdout)
}

// setFleetRelease records rel as the environment's current release (when
// it is not yet), so every instance launched from here on receives it.
func setFleetRelease(ctx context.Context, st0 store.Store, ft *fleetTarget, rel *release.Meta, stdout io.Writer) error {
	cur, err := catalog.Env(ctx, st0, ft.app, ft.env)
	if err != nil {
		return err
	}
	if cur != nil && cur.Current == rel.ID {
		return nil
	}
	st := &catalog.EnvState{App: ft.app, Env: ft.env, Current: rel.ID, Release: rel, DeployedAt: time.Now().UTC(), DeployedBy: "mageflow dev --fleet"}
	if cur != nil {
		st.Previous, st.UpgradedAtBuild = cur.Current, cur.UpgradedAtBuild
	}
	if err := catalog.PutEnv(ctx, st0, st); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fleet demo: new instances of %s receive release %s\n", ft.key, rel.ID)
	return nil
}

// runFleetRefresh runs WarmPoolImageRefresh: an image of a running
// instance rolled through the pool and the group, add-before-remove.
func runFleetRefresh(ctx context.Context, cfg *config.Config, c client.Client, ft *fleetTarget, stdout io.Writer) error {
	t0 := time.Now()
	rr, err := (&start.Fleet{Client: c, Config: cfg}).Refresh(ctx, workflows.RefreshInput{Group: ft.key, Batch: 1})
	if err != nil {
		return err
	}
	link := WorkflowURL(cfg, rr.GetID(), rr.GetRunID())
	fmt.Fprintf(stdout, "\nfleet demo: WarmPoolImageRefresh of %s (image taken from a running instance, batch 1) …\n  follow it: %s\n", ft.key, link)
	var res workflows.RefreshResult
	if err := rr.Get(ctx, &res); err != nil {
		return fmt.Errorf("refresh of %s: %w (open %s)", ft.key, err, link)
	}
	fmt.Fprintf(stdout, "  refreshed in %s to %s (template version %s): replaced %v with %v\n", time.Since(t0).Round(10*time.Millisecond),
		res.NewTemplate.ImageID, res.NewTemplate.Version, res.Replaced, res.Added)
	fmt.Fprintf(stdout, "\n  the store through the group: %s\n  instances: docker ps --filter label=org.mageflow.fleet.group=%s\n  readiness runs: %s\n",
		ft.url, ft.group.Name, tclient.WorkflowsURL(cfg.Temporal.UIURL, cfg.Temporal.Namespace, "WorkflowType='ScaleOutReadiness'"))
	return nil
}

// waitFleetMembers polls the balancer's verify endpoint (what nginx
// serves) until ok accepts the member set; bounded by 5 minutes.
func waitFleetMembers(ctx context.Context, verify string, ok func([]string) bool) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last []string
	for {
		if ids, err := readMembers(ctx, hc, verify); err == nil {
			if ok(ids) {
				return ids, nil
			}
			last = ids
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("nginx still serves %v after 5 minutes: look at the ScaleOutReadiness runs in the Web UI and `docker logs` of the instances", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readMembers(ctx context.Context, hc *http.Client, verify string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, verify, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	if resp.Header.Get(lbconf.SumHeader) == "" {
		return nil, errors.New("not a mageflow member list")
	}
	return strings.Fields(string(b)), nil
}

// printReadiness lists the group's ScaleOutReadiness runs started since
// (zero: all) with their links.
func printReadiness(ctx context.Context, cfg *config.Config, c client.Client, group string, since time.Time, stdout io.Writer) {
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: cfg.Temporal.Namespace, PageSize: 50,
		Query: fmt.Sprintf("WorkflowType = 'ScaleOutReadiness' AND TaskQueue = %q", cfg.Temporal.TaskQueue),
	})
	if err != nil {
		return
	}
	prefix := "readiness/" + group + "/"
	for _, e := range resp.Executions {
		if !strings.HasPrefix(e.Execution.WorkflowId, prefix) || e.StartTime.AsTime().Before(since) {
			continue
		}
		id := strings.TrimPrefix(e.Execution.WorkflowId, prefix)
		id, _, _ = strings.Cut(id, "/")
		fmt.Fprintf(stdout, "  readiness of %s: %s\n    %s\n", id, strings.ToLower(strings.TrimPrefix(e.Status.String(), "WORKFLOW_EXECUTION_STATUS_")), WorkflowURL(cfg, e.Execution.WorkflowId, e.Execution.RunId))
	}
}

// relayTemporal relays <gateway>:<temporal port> of the group's docker
// network to the dev server on loopback, and sets the instances'
// TEMPORAL_ADDRESS to it. (The dev server itself must stay on loopback: bound
// to another address, its own services still dial 127.0.0.1 and fail.)
func relayTemporal(ctx context.Context, cfg *config.Config, ft *fleetTarget) (net.Listener, error) {
	p, err := activities.OpenFleet(ctx, ft.group)
	if err != nil {
		return nil, fmt.Errorf("--fleet: %w", err)
	}
	gw, ok := p.(interface {
		Gateway(context.Context) (string, error)
	})
	if !ok {
		return nil, fmt.Errorf("--fleet: group %s's provider has no docker network gateway", ft.key)
	}
	ip, err := gw.Gateway(ctx)
	if err != nil {
		return nil, err
	}
	_, port, err := net.SplitHostPort(cfg.Temporal.Address)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err != nil {
		return nil, fmt.Errorf("--fleet: listen on the docker network's gateway for the instances' Temporal connections: %w", err)
	}
	target := cfg.Temporal.Address
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				select {
				case <-done:
				case <-ctx.Done():
				}
			}()
		}
	}()
	d := ft.group.Docker
	if d == nil {
		ln.Close()
		return nil, fmt.Errorf("--fleet: group %s has no docker settings", ft.key)
	}
	if d.Env == nil {
		d.Env = map[string]string{}
	}
	if d.Env["TEMPORAL_ADDRESS"] == "" {
		d.Env["TEMPORAL_ADDRESS"] = ln.Addr().String()
	}
	return ln, nil
}
