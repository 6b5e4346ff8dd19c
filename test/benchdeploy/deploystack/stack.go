// Package deploystack runs the web tier a ZeroDowntimeDeploy is proved on:
// two app hosts (web1, web2), each with its own root, its own php-fpm pool
// and its own nginx site, and an nginx balancer over both as the
// environment URL. It writes the matching mageflow config, starts the host
// agents (in the test process, or as real OS processes that can be killed),
// generates load through the balancer and watches what `current` points at.
//
// It is shared by the end-to-end deploy tests in package test and by the
// deploy benchmark (test/benchdeploy), so the figures the benchmark prints
// come from the very setup the tests assert on.
package deploystack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/platform/secrets"
)

// Secret names the stack writes into the config's secrets directory.
const (
	BypassSecretName = "bypass"
	envPHPSuffix     = "-env.php"
)

// Options configure Start.
type Options struct {
	// Dir holds everything: host roots, php-fpm and nginx directories, the
	// fixture database.
	Dir string
	// App is the app name the hosts serve (<root>/<App>/current/pub).
	App string
	// Hosts are the host names; default web1 and web2.
	Hosts []string
	// Roots overrides a host's root (e.g. a directory on a small tmpfs);
	// default Dir/<host>/srv.
	Roots map[string]string
	// PHPChildren is each pool's static worker count; default 4.
	PHPChildren int
}

// Host is one app server of the stack.
type Host struct {
	Name  string
	Root  string
	Addr  string // nginx listen address, 127.0.0.1:port
	URL   string // http://Addr
	Pool  webstack.Pool
	FPM   *webstack.Proc
	Nginx *webstack.Proc

	ctx context.Context
}

// Stack is the running web tier of one environment.
type Stack struct {
	App          string
	Dir          string
	Hosts        []*Host
	BalancerAddr string
	BalancerURL  string
	Balancer     *webstack.Proc
	// DBFile is the fixture's JSON "database", shared by both hosts as a
	// real database would be.
	DBFile string
	// BypassSecret lets health checks through maintenance.
	BypassSecret string

	cancel context.CancelFunc
	mu     sync.Mutex // guards the Proc fields of Hosts across restarts
}

// RequireBinaries fails with the Debian package to install when nginx,
// php-fpm or php-cli is missing.
func RequireBinaries() error {
	if _, err := webstack.NginxBinary(); err != nil {
		return err
	}
	if _, err := webstack.PHPFPMBinary(); err != nil {
		return err
	}
	if _, err := exec.LookPath("php"); err != nil {
		return errors.New("php not found: install the Debian package php-cli (make deps)")
	}
	return nil
}

// Start starts php-fpm and nginx for every host and the balancer. Nothing
// is deployed yet: hosts answer 404 until the first switch.
func Start(opt Options) (_ *Stack, err error) {
	if err := RequireBinaries(); err != nil {
		return nil, err
	}
	if opt.App == "" {
		return nil, errors.New("deploystack: Options.App is empty")
	}
	if len(opt.Hosts) == 0 {
		opt.Hosts = []string{"web1", "web2"}
	}
	if opt.PHPChildren == 0 {
		opt.PHPChildren = 4
	}
	dir, err := filepath.Abs(opt.Dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stack{App: opt.App, Dir: dir, DBFile: filepath.Join(dir, "db.json"), BypassSecret: "bypass-" + hostops.RandSuffix() + hostops.RandSuffix(), cancel: cancel}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	var upstreams []string
	for _, name := range opt.Hosts {
		root := opt.Roots[name]
		if root == "" {
			root = filepath.Join(dir, name, "srv")
		}
		if err := os.MkdirAll(filepath.Join(root, opt.App), 0o755); err != nil {
			return nil, err
		}
		port, err := webstack.FreePort()
		if err != nil {
			return nil, err
		}
		h := &Host{Name: name, Root: root, Addr: fmt.Sprintf("127.0.0.1:%d", port), ctx: ctx,
			Pool: webstack.Pool{Name: name, Dir: filepath.Join(dir, name, "fpm"), PM: "static", MaxChildren: opt.PHPChildren,
				ProcessControlTimeout: webstack.DefaultProcessControlTimeout}}
		h.URL = "http://" + h.Addr
		s.Hosts = append(s.Hosts, h)
		if h.FPM, err = webstack.StartPHPFPM(ctx, h.Pool); err != nil {
			return nil, fmt.Errorf("host %s php-fpm: %w", name, err)
		}
		site, err := webstack.RenderHost(webstack.HostSite{Host: name, App: opt.App, Root: root, Listen: h.Addr,
			FastCGI: h.Pool.SocketPath(), BypassSecret: s.BypassSecret, TrustedProxies: []string{"127.0.0.1"}})
		if err != nil {
			return nil, err
		}
		if h.Nginx, err = webstack.StartNginx(ctx, filepath.Join(dir, name, "nginx"), site); err != nil {
			return nil, fmt.Errorf("host %s nginx: %w", name, err)
		}
		upstreams = append(upstreams, h.Addr)
	}
	port, err := webstack.FreePort()
	if err != nil {
		return nil, err
	}
	s.BalancerAddr = fmt.Sprintf("127.0.0.1:%d", port)
	s.BalancerURL = "http://" + s.BalancerAddr
	lb, err := webstack.RenderBalancer(webstack.Balancer{Name: opt.App, Listen: s.BalancerAddr, Upstreams: upstreams})
	if err != nil {
		return nil, err
	}
	if s.Balancer, err = webstack.StartNginx(ctx, filepath.Join(dir, "balancer"), lb); err != nil {
		return nil, fmt.Errorf("balancer nginx: %w", err)
	}
	return s, nil
}

// Close stops every daemon. Safe to call more than once.
func (s *Stack) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	procs := []*webstack.Proc{s.Balancer}
	for _, h := range s.Hosts {
		procs = append(procs, h.Nginx, h.FPM)
	}
	for _, p := range procs {
		if p != nil {
			errs = append(errs, p.Stop())
		}
	}
	s.cancel()
	return errors.Join(errs...)
}

// Logs returns the daemons' logs, for failing tests.
func (s *Stack) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, h := range s.Hosts {
		for _, p := range []*webstack.Proc{h.Nginx, h.FPM} {
			if p != nil {
				fmt.Fprintf(&b, "== %s\n%s", h.Name, p.Logs())
			}
		}
	}
	if s.Balancer != nil {
		fmt.Fprintf(&b, "== balancer\n%s", s.Balancer.Logs())
	}
	return b.String()
}

// Host returns the host named name.
func (s *Stack) Host(name string) *Host {
	for _, h := range s.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// HostNames lists the hosts in order.
func (s *Stack) HostNames() []string {
	var n []string
	for _, h := range s.Hosts {
		n = append(n, h.Name)
	}
	return n
}

// HostsYAML is the top-level hosts: section of the config. extra, keyed by
// host name, adds lines (already indented by four spaces) to a host.
func (s *Stack) HostsYAML(extra map[string]string) string {
	var b strings.Builder
	b.WriteString("hosts:\n")
	for _, h := range s.Hosts {
		p := h.Pool
		fmt.Fprintf(&b, "  %s:\n    root: %q\n    url: %q\n    php_fpm: {pid_file: %q, config: %q, socket: %q}\n    nginx: {maintenance_bypass: \"file:%s\"}\n",
			h.Name, h.Root, h.URL, filepath.Join(p.Dir, "php-fpm.pid"), p.ConfFile(), p.SocketPath(), BypassSecretName)
		if e := extra[h.Name]; e != "" {
			b.WriteString(strings.TrimRight(e, "\n") + "\n")
		}
	}
	return b.String()
}

// Env is one environment of the app in the config.
type Env struct {
	Name string
	// Branch feeding it; default main (a branch feeds one environment).
	Branch string
	// Extra lines (indented by eight spaces), e.g. "        approval: required".
	Extra string
}

// AppYAML is the app's entry under apps: (indented by two spaces): built
// with the local builder from repo, every environment on all hosts behind
// the balancer with health and warm-up on /.
func (s *Stack) AppYAML(repo string, envs ...Env) string {
	if len(envs) == 0 {
		envs = []Env{{Name: "production"}}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n    repo: %q\n    type: magento2\n    build: {builder: local}\n    environments:\n", s.App, repo)
	for _, e := range envs {
		if e.Branch == "" {
			e.Branch = "main"
		}
		fmt.Fprintf(&b, "      %s:\n        branch: %s\n        hosts: [%s]\n        url: %q\n        env_php: \"file:%s%s\"\n        health_paths: [/]\n        warm_paths: [/]\n        keep_releases: 3\n",
			e.Name, e.Branch, strings.Join(s.HostNames(), ", "), s.BalancerURL, s.App, envPHPSuffix)
		if e.Extra != "" {
			b.WriteString(strings.TrimRight(e.Extra, "\n") + "\n")
		}
	}
	return b.String()
}

// WriteSecrets writes the bypass secret and env.php (pointing the fixture
// at DBFile) into the config's secrets directory.
func (s *Stack) WriteSecrets(dir string) error {
	area := secrets.Area{Dir: dir}
	if err := area.Write(BypassSecretName, []byte(s.BypassSecret)); err != nil {
		return err
	}
	env := fmt.Sprintf("<?php return ['MAGE_MODE' => 'production', 'fixture_db' => %q];\n", s.DBFile)
	return area.Write(s.App+envPHPSuffix, []byte(env))
}

// Current reads which release host's current points at ("" before the
// first deploy).
func (s *Stack) Current(host string) (string, error) {
	h := s.Host(host)
	if h == nil {
		return "", fmt.Errorf("no host %s", host)
	}
	return hostops.ReadCurrent(h.Root, s.App)
}

// Served asks url for the static release marker (with the bypass header,
// so it answers during maintenance too).
func (s *Stack) Served(url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, strings.TrimRight(url, "/")+webstack.ReleaseMarker, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set(webstack.BypassHeader, s.BypassSecret)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s%s: HTTP %d", url, webstack.ReleaseMarker, resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

// NaiveSwitch is the baseline a zero-downtime deploy is compared with: what
// a hand-written deploy script does on every host at once — `ln -sfn` of
// current (unlink, then symlink: a moment with no current) and a php-fpm
// restart (stop, then start: what `systemctl restart` does), instead of an
// atomic rename and a graceful reload.
func (s *Stack) NaiveSwitch(id string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.Hosts))
	for i, h := range s.Hosts {
		wg.Go(func() {
			link := hostops.CurrentLink(h.Root, s.App)
			if out, err := exec.Command("ln", "-sfn", filepath.Join("releases", id), link).CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("ln -sfn on %s: %v: %s", h.Name, err, out)
				return
			}
			errs[i] = s.RestartPHPFPM(h)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RestartPHPFPM stops the host's php-fpm and starts it again.
func (s *Stack) RestartPHPFPM(h *Host) error {
	s.mu.Lock()
	old := h.FPM
	s.mu.Unlock()
	if err := old.Stop(); err != nil {
		return err
	}
	p, err := webstack.StartPHPFPM(h.ctx, h.Pool)
	if err != nil {
		return fmt.Errorf("restart php-fpm on %s: %w", h.Name, err)
	}
	s.mu.Lock()
	h.FPM = p
	s.mu.Unlock()
	return nil
}
