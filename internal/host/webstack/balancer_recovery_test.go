package webstack

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/host/lbconf"
)

// TestBalancerBurstAfterEveryHostFailed is the balancer right after an
// outage of every host (both php-fpm pools restarting, say): each host
// failed once, so nginx marked it down for fail_timeout, and afterwards
// tries it again with one request at a time. A burst of requests arriving
// while those first requests run must still be served, not answered 502
// "no live upstreams" (seen in benchdeploy: a load starting after the
// naive-switch phase). Every response is counted. Both upstreams mageflow
// writes are tried: the local stack's balancer and the autoscaling group's
// include (lbconf) behind a proxy as docs/operations.md sets it up.
func TestBalancerBurstAfterEveryHostFailed(t *testing.T) {
	requireStack(t)
	t.Run("webstack balancer", func(t *testing.T) {
		burstAfterOutage(t, func(lb string, hosts []string) string {
			conf, err := RenderBalancer(Balancer{Name: "burst", Listen: lb, Upstreams: hosts})
			if err != nil {
				t.Fatal(err)
			}
			return conf
		})
	})
	t.Run("lbconf include", func(t *testing.T) {
		burstAfterOutage(t, func(lb string, hosts []string) string {
			u := lbconf.Upstream{Group: "web", Name: "group_web", Port: 80, VerifyURL: "http://" + freeAddr(t) + lbconf.DefaultVerifyPath}
			var ms []lbconf.Member
			for i, h := range hosts {
				ms = append(ms, lbconf.Member{ID: fmt.Sprintf("i-%d", i), Addr: h})
			}
			inc, _, err := lbconf.Render(u, ms)
			if err != nil {
				t.Fatal(err)
			}
			return string(inc) + "\nserver {\n    listen " + lb + ";\n    location / {\n        proxy_pass http://group_web;\n" +
				"        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n" +
				"        proxy_next_upstream error timeout http_502;\n    }\n}\n"
		})
	})
}

// burstAfterOutage runs the outage and the bursts against the balancer
// conf(lb, hosts) renders.
func burstAfterOutage(t *testing.T, conf func(lb string, hosts []string) string) {
	var failing atomic.Bool
	failing.Store(true)
	var hosts []string
	for i := range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if failing.Load() {
				w.WriteHeader(http.StatusBadGateway) // a host whose php-fpm is down
				return
			}
			time.Sleep(50 * time.Millisecond) // a page being rendered
			fmt.Fprintf(w, "host%d\n", i+1)
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		hosts = append(hosts, ln.Addr().String())
	}
	lb := freeAddr(t)
	ngx, err := StartNginx(t.Context(), filepath.Join(t.TempDir(), "nginx"), conf(lb, hosts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx logs:\n%s", ngx.Logs())
		}
		_ = ngx.Stop()
	})

	burst := func(n int) map[int]int {
		statuses := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
				<-start
				code := 0
				if resp, err := c.Get("http://" + lb + "/"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		return statuses
	}
	// The outage: enough requests that both nginx workers see both
	// hosts fail.
	for range 5 {
		if got := burst(16); got[http.StatusBadGateway] != 16 {
			t.Fatalf("during the outage: statuses %v, want only 502s", got)
		}
	}
	failing.Store(false)
	time.Sleep(3500 * time.Millisecond) // fail_timeout (2 s) over, in whole seconds
	for round := range 3 {
		if got := burst(24); got[http.StatusOK] != 24 {
			t.Fatalf("burst %d after the hosts recovered: statuses %v, want 24 × 200", round, got)
		}
	}
}
