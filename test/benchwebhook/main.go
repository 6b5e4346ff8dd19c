// Command bench-webhook measures how many signed GitHub push deliveries per
// second `mageflow serve` answers with 202, and the latency distribution, on
// a real loopback HTTP server with a real client. In the same run it measures
// two baselines on the same server: GET /healthz (no body, no work) and a
// POST of the same bodies to a handler that only reads and discards them, so
// the ratios isolate the cost of reading, verifying, parsing, deduplicating
// and starting (a fake StartBuild sleeping -build-latency).
//
//	go run ./test/benchwebhook [-n 20000] [-c 32] [-dup 0.2]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mageflow/mageflow/internal/front/server"
	"github.com/mageflow/mageflow/internal/platform/webhook"
)

type sleepyBuilds struct {
	latency time.Duration
	calls   atomic.Int64
	mu      sync.Mutex
	ids     map[string]bool
}

// StartBuild simulates a Temporal round trip and, like the real one, derives
// the workflow id from the commit.
func (b *sleepyBuilds) StartBuild(ctx context.Context, req server.BuildRequest) (string, error) {
	b.calls.Add(1)
	select {
	case <-time.After(b.latency):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	id := "build-" + req.App + "-" + req.Commit
	b.mu.Lock()
	b.ids[id] = true
	b.mu.Unlock()
	return id, nil
}

type request struct {
	method, path string
	body         []byte
	header       http.Header
	delivery     int // index of the unique delivery, -1 for baselines
}

type result struct {
	name                string
	n                   int
	elapsed             time.Duration
	lat                 []time.Duration
	statuses            map[int]int
	accepted, duplicate int
}

func (r result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r result) pct(p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(r.lat)))) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

const secret = "bench-secret-0123456789"

func main() {
	n := flag.Int("n", 20000, "requests per measurement")
	conc := flag.Int("c", 32, "concurrent clients")
	dup := flag.Float64("dup", 0.2, "fraction of deliveries that are redeliveries of an earlier one")
	latency := flag.Duration("build-latency", time.Millisecond, "simulated StartBuild latency")
	commits := flag.Int("commits", 20, "commits per push payload (payload size)")
	flag.Parse()
	if *n <= 0 || *conc <= 0 || *dup < 0 || *dup >= 1 {
		fmt.Fprintln(os.Stderr, "bench-webhook: -n and -c must be positive and 0 <= -dup < 1")
		os.Exit(2)
	}

	builds := &sleepyBuilds{latency: *latency, ids: map[string]bool{}}
	app := server.App{Name: "shop", RepoURL: "git@github.com:acme/shop.git", Provider: webhook.GitHub,
		Secret: func() ([]byte, error) { return []byte(secret), nil }, Branches: map[string]string{"main": "production"}}
	// The access log runs (formatting included) but is discarded so the
	// terminal is not the bottleneck.
	h := server.New(server.Options{Apps: []server.App{app}, Builds: builds, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /bench/noop", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.Handle("/", h)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-webhook:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: *conc * 2, MaxIdleConnsPerHost: *conc * 2, DisableCompression: true}}

	hooks, unique := deliveries(*n, *dup, *commits)
	noop := make([]request, len(hooks))
	for i, r := range hooks {
		noop[i] = request{method: http.MethodPost, path: "/bench/noop", body: r.body, header: http.Header{"Content-Type": {"application/json"}}, delivery: -1}
	}
	health := make([]request, *n)
	for i := range health {
		health[i] = request{method: http.MethodGet, path: "/healthz", delivery: -1}
	}

	fmt.Printf("bench-webhook: %d requests, concurrency %d, %.0f%% redeliveries, StartBuild %v, body %d bytes, GOMAXPROCS %d\n",
		*n, *conc, *dup*100, *latency, len(hooks[0].body), runtime.GOMAXPROCS(0))
	run(client, base, "warm-up (healthz)", health[:min(len(health), 2000)], *conc)
	resHealth := run(client, base, "baseline GET /healthz", health, *conc)
	resNoop := run(client, base, "baseline POST noop (same bodies, unsigned)", noop, *conc)
	resHook := run(client, base, "signed GitHub push -> 202", hooks, *conc)

	fmt.Println()
	fmt.Printf("%-44s %10s %10s %10s %10s\n", "", "req/s", "p50", "p99", "max")
	for _, r := range []result{resHealth, resNoop, resHook} {
		fmt.Printf("%-44s %10.0f %10v %10v %10v\n", r.name, r.rps(), r.pct(0.50).Round(time.Microsecond), r.pct(0.99).Round(time.Microsecond), r.lat[len(r.lat)-1].Round(time.Microsecond))
	}
	fmt.Println()
	fmt.Printf("throughput ratio webhook/healthz: %.3f   webhook/noop: %.3f\n", resHook.rps()/resHealth.rps(), resHook.rps()/resNoop.rps())
	fmt.Printf("p99 ratio        webhook/healthz: %.2f   webhook/noop: %.2f\n",
		float64(resHook.pct(0.99))/float64(resHealth.pct(0.99)), float64(resHook.pct(0.99))/float64(resNoop.pct(0.99)))
	fmt.Printf("webhook answers: %d accepted, %d duplicate (from the delivery cache); StartBuild calls %d, distinct workflow ids %d for %d unique deliveries\n",
		resHook.accepted, resHook.duplicate, builds.calls.Load(), len(builds.ids), unique)

	ok := resHook.statuses[http.StatusAccepted] == len(hooks) && resHealth.statuses[http.StatusOK] == len(health) && len(builds.ids) == unique
	if !ok {
		fmt.Printf("FAIL: statuses healthz %v noop %v webhook %v\n", resHealth.statuses, resNoop.statuses, resHook.statuses)
		os.Exit(1)
	}
}

// deliveries builds n signed push requests; a fraction dup of them repeat an
// earlier delivery (same id and body, as a provider's redelivery does) that
// is far enough back to have been answered already.
func deliveries(n int, dup float64, commits int) ([]request, int) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	var uniq []request
	out := make([]request, 0, n)
	const gap = 256 // > concurrency, so the original has usually completed
	for len(out) < n {
		if len(uniq) > gap && rng.Float64() < dup {
			j := len(uniq) - gap - rng.IntN(min(len(uniq)-gap, 1000))
			out = append(out, uniq[j])
			continue
		}
		body := pushBody(commits)
		r := request{method: http.MethodPost, path: "/hooks/github", body: body, delivery: len(uniq), header: http.Header{
			"Content-Type":        {"application/json"},
			"User-Agent":          {"GitHub-Hookshot/bench"},
			"X-Github-Event":      {"push"},
			"X-Github-Delivery":   {randHex(16)},
			"X-Hub-Signature-256": {webhook.Sign([]byte(secret), body)},
		}}
		uniq = append(uniq, r)
		out = append(out, r)
	}
	return out, len(uniq)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pushBody is a GitHub push payload of realistic shape and size.
func pushBody(commits int) []byte {
	after := randHex(20)
	type person struct{ Name, Email, Username string }
	cs := make([]map[string]any, commits)
	for i := range cs {
		cs[i] = map[string]any{"id": randHex(20), "tree_id": randHex(20), "distinct": true,
			"message": "Update catalog module " + randHex(4) + "\n\nAdjusts price indexer batching.", "timestamp": "2024-05-01T10:00:00Z",
			"url":    "https://github.com/acme/shop/commit/" + after,
			"author": person{"Alice", "alice@example.com", "alice"},
			"added":  []string{}, "removed": []string{}, "modified": []string{"app/code/Acme/Catalog/Model/Indexer.php", "composer.lock"}}
	}
	b, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": randHex(20), "after": after, "created": false, "deleted": false, "forced": false,
		"compare": "https://github.com/acme/shop/compare/x...y",
		"repository": map[string]any{"id": 1, "name": "shop", "full_name": "acme/shop", "private": true,
			"html_url": "https://github.com/acme/shop", "clone_url": "https://github.com/acme/shop.git",
			"ssh_url": "git@github.com:acme/shop.git", "git_url": "git://github.com/acme/shop.git", "default_branch": "main"},
		"pusher":      map[string]any{"name": "alice", "email": "alice@example.com"},
		"sender":      map[string]any{"login": "alice", "id": 42},
		"commits":     cs,
		"head_commit": cs[len(cs)-1],
	})
	return b
}

func run(client *http.Client, base, name string, reqs []request, conc int) result {
	res := result{name: name, n: len(reqs), lat: make([]time.Duration, len(reqs)), statuses: map[int]int{}}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[int]int{}
			var acc, dup int
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					break
				}
				r := reqs[i]
				hr, _ := http.NewRequest(r.method, base+r.path, bytes.NewReader(r.body))
				for k, v := range r.header {
					hr.Header[k] = v
				}
				t0 := time.Now()
				resp, err := client.Do(hr)
				if err != nil {
					local[-1]++
					res.lat[i] = time.Since(t0)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				res.lat[i] = time.Since(t0)
				local[resp.StatusCode]++
				if r.delivery >= 0 {
					var ans struct{ Status string }
					_ = json.Unmarshal(body, &ans)
					switch ans.Status {
					case "accepted":
						acc++
					case "duplicate":
						dup++
					}
				}
			}
			mu.Lock()
			for k, v := range local {
				res.statuses[k] += v
			}
			res.accepted += acc
			res.duplicate += dup
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.lat)
	return res
}
