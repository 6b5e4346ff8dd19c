package webstack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/testkit/testenv"
	"github.com/mageflow/mageflow/test/fixtures"
)

// indexPHP prints its release three ways — from its own directory, from a
// file of its release read after a pause, and from DOCUMENT_ROOT — so a
// response mixing two releases shows up as a mismatch.
const indexPHP = `<?php
$id = basename(dirname(__DIR__, 1));
header('X-Mageflow-Release: ' . $id);
echo "dir=", $id, "\n";
usleep(3000);
echo "file=", trim(file_get_contents(__DIR__ . '/../release.txt')), "\n";
echo "docroot=", basename(dirname($_SERVER['DOCUMENT_ROOT'])), "\n";
echo "client=", $_SERVER['REMOTE_ADDR'], "\n";
`

// busyPHP is the app answering 503 itself (its own maintenance): the
// balancer must pass it through, not retry it on the other host.
const busyPHP = `<?php
http_response_code(503);
header('X-App-Busy: 1');
echo "app busy\n";
`

type hostTree struct{ root, app string }

// newHostTree builds <root>/shop/releases/{r1,r2,r3…} with current -> r1;
// r3's directory name is much longer than the others' (release ids grow:
// 9-… to 10-…).
func newHostTree(t *testing.T, root string) hostTree {
	t.Helper()
	h := hostTree{root: root, app: "shop"}
	for _, id := range []string{"r1", "r2", longRelease} {
		rel := filepath.Join(root, "shop", "releases", id)
		files := map[string]string{
			"release.txt":             id + "\n",
			"pub/index.php":           indexPHP,
			"pub/busy.php":            busyPHP,
			"pub/.mageflow-release":   id + "\n",
			"pub/static/hello.txt":    "static " + id + "\n",
			"pub/.env":                "SECRET=1\n",
			"pub/.well-known/x.txt":   "well-known " + id + "\n",
			"pub/.git/config":         "[core]\n",
			"pub/static/.hidden.php":  "<?php echo 'hidden';",
			"pub/media/catalog/a.txt": "media\n",
		}
		for name, content := range files {
			p := filepath.Join(rel, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.switchTo(t, "r1")
	return h
}

// switchTo points current at a release the way the deploy does: a new
// symlink under a temporary name renamed over current (rename(2) is atomic).
func (h hostTree) switchTo(t *testing.T, id string) {
	t.Helper()
	dir := filepath.Join(h.root, h.app)
	tmp := filepath.Join(dir, ".current.tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Join("releases", id), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "current")); err != nil {
		t.Fatal(err)
	}
}

// longRelease is a release whose path is longer than r1's.
const longRelease = "r3-a-release-id-much-longer-than-r1"

func (h hostTree) maintenance(t *testing.T, on bool) {
	t.Helper()
	f := MaintenanceFlag(h.root, h.app)
	if on {
		if err := os.WriteFile(f, []byte("deploy\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

func requireStack(t *testing.T) {
	t.Helper()
	_, err := NginxBinary()
	testenv.ToolOrSkip(t, err)
	_, err = PHPFPMBinary()
	testenv.ToolOrSkip(t, err)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

type reply struct {
	status  int
	header  http.Header
	body    string
	latency time.Duration
	err     error
}

func get(c *http.Client, url string, hdr map[string]string) reply {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return reply{err: err}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err, latency: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b), latency: time.Since(start), err: err}
}

// clientFrom dials from a chosen loopback address, so allow lists can tell
// clients apart (Linux routes all of 127.0.0.0/8 to lo).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 32}}
}

// releaseOf checks one response is wholly one release and returns it.
func releaseOf(r reply) (string, error) {
	id := r.header.Get(ReleaseHeader)
	for _, part := range []string{"dir=", "file=", "docroot="} {
		if !strings.Contains(r.body, part+id+"\n") {
			return "", fmt.Errorf("response mixes releases: header %q, body %q", id, r.body)
		}
	}
	return id, nil
}

type stack struct {
	h1, h2         hostTree
	fpm, ngx       *Proc
	socket         string
	a1, a2, lb     string
	secret         string
	sites          func(edit func(*HostSite)) []string
	balancerConfig string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	requireStack(t)
	base := t.TempDir()
	s := &stack{
		h1:     newHostTree(t, filepath.Join(base, "host1")),
		h2:     newHostTree(t, filepath.Join(base, "host2")),
		a1:     freeAddr(t),
		a2:     freeAddr(t),
		lb:     freeAddr(t),
		secret: "test-bypass-0123456789",
	}
	var err error
	s.fpm, err = StartPHPFPM(t.Context(), Pool{Dir: filepath.Join(base, "fpm"), PM: "static", MaxChildren: 6, ProcessControlTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.fpm.Stop(); err != nil {
			t.Error(err)
		}
	})
	s.socket = Pool{Dir: filepath.Join(base, "fpm")}.SocketPath()
	s.sites = func(edit func(*HostSite)) []string {
		var out []string
		for i, h := range []hostTree{s.h1, s.h2} {
			site := HostSite{Host: fmt.Sprintf("host%d", i+1), App: h.app, Root: h.root, Listen: []string{s.a1, s.a2}[i], FastCGI: s.socket, BypassSecret: s.secret}
			if edit != nil {
				edit(&site)
			}
			conf, err := RenderHost(site)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, conf)
		}
		return out
	}
	s.balancerConfig, err = RenderBalancer(Balancer{Name: "shop", Listen: s.lb, Upstreams: []string{s.a1, s.a2}})
	if err != nil {
		t.Fatal(err)
	}
	s.ngx, err = StartNginx(t.Context(), filepath.Join(base, "nginx"), append(s.sites(nil), s.balancerConfig)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx logs:\n%s\nphp-fpm logs:\n%s", s.ngx.Logs(), s.fpm.Logs())
		}
		if err := s.ngx.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestStack(t *testing.T) {
	s := startStack(t)
	c := clientFrom("127.0.0.1")

	t.Run("balancer reaches both hosts", func(t *testing.T) {
		hosts := map[string]int{}
		for range 10 {
			r := get(c, "http://"+s.lb+"/", nil)
			if r.err != nil || r.status != 200 {
				t.Fatalf("GET / via balancer: %d %v %s", r.status, r.err, r.body)
			}
			if id, err := releaseOf(r); err != nil || id != "r1" {
				t.Fatalf("release %q, %v", id, err)
			}
			hosts[r.header.Get(HostHeader)]++
		}
		if hosts["host1"] == 0 || hosts["host2"] == 0 {
			t.Errorf("balancer spread %v, want both host1 and host2", hosts)
		}
	})

	t.Run("static files, marker and dotfiles", func(t *testing.T) {
		cases := []struct {
			path   string
			status int
			body   string
		}{
			{"/static/hello.txt", 200, "static r1\n"},
			{"/.mageflow-release", 200, "r1\n"},
			{"/.well-known/x.txt", 200, "well-known r1\n"},
			{"/media/catalog/a.txt", 200, "media\n"},
			{"/.env", 403, ""},
			{"/.git/config", 403, ""},
			{"/static/.hidden.php", 403, ""},
			{"/missing.php", 404, ""},
		}
		for _, tc := range cases {
			r := get(c, "http://"+s.a1+tc.path, nil)
			if r.err != nil || r.status != tc.status || (tc.body != "" && r.body != tc.body) {
				t.Errorf("GET %s: %d %q %v, want %d %q", tc.path, r.status, r.body, r.err, tc.status, tc.body)
			}
			if got := r.header.Get(HostHeader); got != "host1" {
				t.Errorf("GET %s: %s = %q, want host1", tc.path, HostHeader, got)
			}
		}
		r := get(c, "http://"+s.a1+"/.mageflow-release", nil)
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("release marker Cache-Control = %q, want no-store", cc)
		}
		// Front controller: unknown paths run index.php with the query.
		r = get(c, "http://"+s.lb+"/catalog/product/view?id=1", nil)
		if r.status != 200 || !strings.Contains(r.body, "dir=r1") {
			t.Errorf("front controller: %d %q", r.status, r.body)
		}
	})

	t.Run("app 503 passes the balancer unchanged", func(t *testing.T) {
		r := get(c, "http://"+s.lb+"/busy.php", nil)
		if r.status != 503 || r.header.Get("X-App-Busy") != "1" || r.header.Get("Retry-After") != "" {
			t.Errorf("app 503 through balancer: %d %v %q", r.status, r.header, r.body)
		}
	})

	t.Run("switch current under load", func(t *testing.T) {
		switchUnderLoad(t, s, c)
	})

	t.Run("switches to a longer release path under load", func(t *testing.T) {
		flapUnderLoad(t, s, c)
	})

	t.Run("maintenance with bypass secret", func(t *testing.T) {
		s.h1.maintenance(t, true)
		s.h2.maintenance(t, true)
		defer s.h1.maintenance(t, false)
		defer s.h2.maintenance(t, false)
		for _, url := range []string{"http://" + s.lb + "/", "http://" + s.a1 + "/", "http://" + s.a2 + "/static/hello.txt"} {
			r := get(c, url, nil)
			if r.status != 503 || r.header.Get("Retry-After") != "30" || !strings.Contains(r.body, "maintenance") || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("GET %s in maintenance: %d Retry-After=%q %q", url, r.status, r.header.Get("Retry-After"), r.body)
			}
			if r.header.Get(HostHeader) == "" || r.header.Get(ReleaseHeader) != "" {
				t.Errorf("GET %s in maintenance: host %q release %q: want the host header and no PHP", url, r.header.Get(HostHeader), r.header.Get(ReleaseHeader))
			}
			r = get(c, url, map[string]string{BypassHeader: s.secret})
			if r.status != 200 {
				t.Errorf("GET %s with bypass secret: %d %q", url, r.status, r.body)
			}
			r = get(c, url, map[string]string{BypassHeader: s.secret + "x"})
			if r.status != 503 {
				t.Errorf("GET %s with wrong secret: %d", url, r.status)
			}
		}
		s.h1.maintenance(t, false)
		if r := get(c, "http://"+s.a1+"/", nil); r.status != 200 {
			t.Errorf("flag removed: %d", r.status)
		}
	})

	t.Run("maintenance allow list", func(t *testing.T) {
		// Config 1: 127.0.0.1 allowed — every test client passes.
		allowLocal := s.sites(func(h *HostSite) { h.MaintenanceAllow = []string{"127.0.0.1"}; h.BypassSecret = "" })
		if err := s.ngx.Reload(append(allowLocal, s.balancerConfig)...); err != nil {
			t.Fatal(err)
		}
		s.h1.maintenance(t, true)
		s.h2.maintenance(t, true)
		defer s.h1.maintenance(t, false)
		defer s.h2.maintenance(t, false)
		for _, url := range []string{"http://" + s.a1 + "/", "http://" + s.lb + "/"} {
			if r := get(c, url, nil); r.status != 200 {
				t.Errorf("allow-listed 127.0.0.1, GET %s: %d %q", url, r.status, r.body)
			}
		}
		// Config 2: only 127.0.0.2, with the balancer trusted for X-Real-IP:
		// the allow list sees the balancer's client, which cannot forge it.
		allowOther := s.sites(func(h *HostSite) {
			h.MaintenanceAllow = []string{"127.0.0.2/32"}
			h.TrustedProxies = []string{"127.0.0.1"}
		})
		if err := s.ngx.Reload(append(allowOther, s.balancerConfig)...); err != nil {
			t.Fatal(err)
		}
		other := clientFrom("127.0.0.2")
		if r := get(other, "http://"+s.lb+"/", nil); r.status != 200 || !strings.Contains(r.body, "client=127.0.0.2") {
			t.Errorf("allow-listed 127.0.0.2 via balancer: %d %q", r.status, r.body)
		}
		if r := get(c, "http://"+s.lb+"/", nil); r.status != 503 || r.header.Get("Retry-After") != "30" {
			t.Errorf("127.0.0.1 via balancer, not allow-listed: %d", r.status)
		}
		if r := get(c, "http://"+s.lb+"/", map[string]string{"X-Real-IP": "127.0.0.2"}); r.status != 503 {
			t.Errorf("forged X-Real-IP passed maintenance: %d", r.status)
		}
		if r := get(c, "http://"+s.a1+"/", map[string]string{BypassHeader: s.secret}); r.status != 200 {
			t.Errorf("bypass header with allow list configured: %d", r.status)
		}
		// Back to the base config for later subtests.
		if err := s.ngx.Reload(append(s.sites(nil), s.balancerConfig)...); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("balancer retries a dead host", func(t *testing.T) {
		dead := freeAddr(t) // nothing listens there
		lb2 := freeAddr(t)
		b, err := RenderBalancer(Balancer{Name: "withdead", Listen: lb2, Upstreams: []string{dead, s.a1, s.a2}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ngx.Reload(append(s.sites(nil), s.balancerConfig, b)...); err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			if r := get(c, "http://"+lb2+"/", nil); r.status != 200 {
				t.Fatalf("request %d via balancer with a dead upstream: %d %q %v", i, r.status, r.body, r.err)
			}
		}
	})

	t.Run("bad config keeps nginx serving", func(t *testing.T) {
		before, err := os.ReadFile(s.ngx.ConfFile())
		if err != nil {
			t.Fatal(err)
		}
		err = s.ngx.Reload("server {\n    listen " + freeAddr(t) + ";\n    mageflow_bogus on;\n}")
		if err == nil || !strings.Contains(err.Error(), `unknown directive "mageflow_bogus"`) {
			t.Fatalf("reload with a bad directive: %v", err)
		}
		after, _ := os.ReadFile(s.ngx.ConfFile())
		if string(after) != string(before) {
			t.Error("nginx.conf not restored after a rejected reload")
		}
		if r := get(c, "http://"+s.lb+"/", nil); r.status != 200 {
			t.Errorf("after rejected reload: %d", r.status)
		}
	})

	t.Run("php-fpm graceful reload under load", func(t *testing.T) {
		pid := s.fpm.PID()
		var err error
		l := loadWhile(c, "http://"+s.lb+"/", 4, func() {
			time.Sleep(200 * time.Millisecond) // load before the reload
			err = s.fpm.Reload()
			time.Sleep(200 * time.Millisecond) // and after it
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.fpm.PID() != pid {
			t.Errorf("php-fpm pid changed %d -> %d", pid, s.fpm.PID())
		}
		t.Logf("php-fpm reload: %d requests, %d failed", l.served, l.failed)
		if l.failed > 0 {
			t.Errorf("%d requests failed during the php-fpm reload, first: %s", l.failed, l.first)
		}
	})
}

// switchUnderLoad switches both hosts from r1 to r2 while 8 clients request
// through the balancer, and checks no request fails or mixes releases and
// none started after the switch is served by r1.
func switchUnderLoad(t *testing.T, s *stack, c *http.Client) {
	const workers, before, after = 8, 200, 200
	type sample struct {
		start   time.Time
		latency time.Duration
		release string
	}
	var (
		mu       sync.Mutex
		samples  []sample
		failures []string
		count    atomic.Int64
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				r := get(c, "http://"+s.lb+"/?n="+strconv.FormatInt(count.Add(1), 10), nil)
				id, err := releaseOf(r)
				mu.Lock()
				switch {
				case r.err != nil || r.status != 200:
					failures = append(failures, fmt.Sprintf("%d %v %q", r.status, r.err, r.body))
				case err != nil:
					failures = append(failures, err.Error())
				}
				samples = append(samples, sample{start, r.latency, id})
				mu.Unlock()
			}
		})
	}
	waitFor := func(n int) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			got := len(samples)
			mu.Unlock()
			if got >= n || time.Now().After(deadline) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(before)
	s.h1.switchTo(t, "r2")
	s.h2.switchTo(t, "r2")
	switchedAt := time.Now()
	waitFor(before + after)
	close(stop)
	wg.Wait()

	var r1, r2, staleAfter int
	var lat []time.Duration
	for _, sm := range samples {
		lat = append(lat, sm.latency)
		switch sm.release {
		case "r1":
			r1++
			if sm.start.After(switchedAt) {
				staleAfter++
			}
		case "r2":
			r2++
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	t.Logf("switch under load: %d requests (%d r1, %d r2), %d failed, %d served by r1 after the switch; latency min %s p50 %s p95 %s p99 %s max %s",
		len(samples), r1, r2, len(failures), staleAfter, lat[0], pct(.5), pct(.95), pct(.99), lat[len(lat)-1])
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the switch, first: %s", len(failures), len(samples), failures[0])
	}
	if r1 < before/2 || r2 < after/2 {
		t.Errorf("releases served: r1 %d, r2 %d: want both", r1, r2)
	}
	if staleAfter > 0 {
		t.Errorf("%d requests started after the switch were served by r1", staleAfter)
	}
}

func TestStartNginxReportsConfigError(t *testing.T) {
	requireStack(t)
	_, err := StartNginx(t.Context(), t.TempDir(), "server {\n    listen "+freeAddr(t)+";\n    root /nonexistent\n}")
	if err == nil {
		t.Fatal("nginx started with a broken config")
	}
	// nginx's own words, with the file it read, reach the caller.
	for _, want := range []string{"nginx -t rejected", "nginx.conf", "[emerg]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestStartNginxStopsWithContext(t *testing.T) {
	requireStack(t)
	addr := freeAddr(t)
	site, err := RenderHost(HostSite{Host: "h", App: "a", Root: t.TempDir(), Listen: addr, FastCGI: "/nonexistent.sock"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	p, err := StartNginx(ctx, t.TempDir(), site)
	if err != nil {
		t.Fatal(err)
	}
	if p.PID() <= 0 {
		t.Errorf("PID %d", p.PID())
	}
	cancel()
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("nginx still running 20s after its context was cancelled")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after stop (a worker left behind?)", addr)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestFixtureAppServed serves the Magento 2 fixture the e2e deploy tests use
// through the rendered config: its page and its own maintenance 503 carry
// X-Mageflow-Release.
func TestFixtureAppServed(t *testing.T) {
	requireStack(t)
	if _, err := exec.LookPath("composer"); err != nil {
		t.Fatal("composer not found: install composer and php-cli (make deps)")
	}
	app := fixtures.Magento2App(t)
	if out, err := exec.Command("composer", "--working-dir", app, "install", "--no-dev", "--no-interaction", "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("composer install in the fixture: %v\n%s", err, out)
	}
	root := t.TempDir()
	const id = "7-abcdef1"
	rel := filepath.Join(root, "shop", "releases", id)
	if err := os.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(app, rel); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "release.json"), []byte(`{"id":"`+id+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := hostTree{root: root, app: "shop"}
	h.switchTo(t, id)

	pool := Pool{Dir: filepath.Join(t.TempDir(), "fpm")}
	fpm, err := StartPHPFPM(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	defer fpm.Stop()
	addr := freeAddr(t)
	site, err := RenderHost(HostSite{Host: "local", App: "shop", Root: root, Listen: addr, FastCGI: pool.SocketPath()})
	if err != nil {
		t.Fatal(err)
	}
	ngx, err := StartNginx(t.Context(), filepath.Join(t.TempDir(), "nginx"), site)
	if err != nil {
		t.Fatal(err)
	}
	defer ngx.Stop()
	c := clientFrom("127.0.0.1")
	r := get(c, "http://"+addr+"/", nil)
	if r.status != 200 || r.header.Get(ReleaseHeader) != id || !strings.Contains(r.body, `data-release="`+id+`"`) || r.header.Get(HostHeader) != "local" {
		t.Fatalf("fixture page: %d %v %v\n%s\n%s%s", r.status, r.err, r.header, r.body, ngx.Logs(), fpm.Logs())
	}
	// The app's own maintenance (bin/magento maintenance:enable) answers 503
	// from PHP and still names the release.
	if err := os.MkdirAll(filepath.Join(rel, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "var", ".maintenance.flag"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r = get(c, "http://"+addr+"/", nil)
	if r.status != 503 || r.header.Get(ReleaseHeader) != id {
		t.Errorf("fixture in app maintenance: %d %v %q", r.status, r.header, r.body)
	}
}

// flapUnderLoad switches host 1's current between two releases whose paths
// differ in length, as fast as it can, while 8 clients request PHP pages
// from host 1 directly: nginx must resolve current once per request. It
// once did it twice (the length and the copy pass of `set … $realpath_root`),
// and a switch between the two answered 500 "no buffer space in script copy"
// (seen in a deploy from release 9-… to 10-…).
func flapUnderLoad(t *testing.T, s *stack, c *http.Client) {
	defer s.h1.switchTo(t, "r2")
	flips := 0
	l := loadWhile(c, "http://"+s.a1+"/", 8, func() {
		for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); flips++ {
			s.h1.switchTo(t, []string{"r1", longRelease}[flips%2])
		}
	})
	t.Logf("%d switches between releases of different path lengths, %d requests, %d failed", flips, l.served, l.failed)
	if l.failed > 0 {
		t.Errorf("%d of %d requests failed while current switched, first: %s", l.failed, l.served, l.first)
	}
}

// loadResult counts what loadWhile's clients saw.
type loadResult struct {
	served, failed int64
	first          string // the first failure
}

// loadWhile runs clients that GET url in a loop while during runs, and
// counts the answers that are not 200.
func loadWhile(c *http.Client, url string, clients int, during func()) loadResult {
	var served, failed atomic.Int64
	var first atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := get(c, url, nil)
				served.Add(1)
				if r.err != nil || r.status != 200 {
					failed.Add(1)
					first.CompareAndSwap(nil, fmt.Sprintf("%d %v %q", r.status, r.err, r.body))
				}
			}
		})
	}
	during()
	close(stop)
	wg.Wait()
	f, _ := first.Load().(string)
	return loadResult{served: served.Load(), failed: failed.Load(), first: f}
}
