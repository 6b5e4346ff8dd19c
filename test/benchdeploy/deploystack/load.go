package deploystack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mageflow/mageflow/internal/host/webstack"
)

// Sample is one request of the load generator.
type Sample struct {
	Start   time.Time
	Latency time.Duration
	Status  int
	// Release is the X-Mageflow-Release header (which release PHP ran).
	Release    string
	RetryAfter string
	Host       string // X-Mageflow-Host: which host answered
	Err        string // transport error, "" when an answer came
}

// End is when the answer was complete.
func (s Sample) End() time.Time { return s.Start.Add(s.Latency) }

// OK is a complete 200 answer.
func (s Sample) OK() bool { return s.Err == "" && s.Status == http.StatusOK }

func (s Sample) String() string {
	if s.Err != "" {
		return fmt.Sprintf("%s +%s error %s", s.Start.Format("15:04:05.000"), s.Latency.Round(time.Millisecond), s.Err)
	}
	return fmt.Sprintf("%s +%s HTTP %d release=%q host=%q retry-after=%q", s.Start.Format("15:04:05.000"), s.Latency.Round(time.Millisecond), s.Status, s.Release, s.Host, s.RetryAfter)
}

// Load is a bounded load generator: a fixed number of clients, each
// requesting GET url, reading the whole answer, pausing, and again, until
// Stop. Loopback only: it is pointed at the stack's balancer.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	all    []Sample
}

// StartLoad starts clients concurrent clients against url. Each keeps its
// connection alive, like a browser does.
func StartLoad(url string, clients int, pause time.Duration) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel}
	for range clients {
		l.wg.Go(func() {
			c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, Proxy: nil}}
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				s := get(ctx, c, url)
				if ctx.Err() != nil && s.Err != "" {
					return // cut by Stop, not a failure of the site
				}
				l.mu.Lock()
				l.all = append(l.all, s)
				l.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	return l
}

func get(ctx context.Context, c *http.Client, url string) Sample {
	s := Sample{Start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	req.Header.Set("User-Agent", "mageflow-deploystack-load")
	resp, err := c.Do(req)
	if err != nil {
		s.Latency = time.Since(s.Start)
		s.Err = err.Error()
		return s
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.Latency = time.Since(s.Start)
	if err != nil {
		s.Err = "reading body: " + err.Error()
	}
	s.Status = resp.StatusCode
	s.Release = resp.Header.Get(webstack.ReleaseHeader)
	s.RetryAfter = resp.Header.Get("Retry-After")
	s.Host = resp.Header.Get(webstack.HostHeader)
	return s
}

// Samples returns what was recorded so far, ordered by start time.
func (l *Load) Samples() []Sample {
	l.mu.Lock()
	out := slices.Clone(l.all)
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Count is how many answers (of any kind) were recorded so far.
func (l *Load) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// Stop stops the clients and returns every sample, ordered by start time.
func (l *Load) Stop() []Sample {
	l.cancel()
	l.wg.Wait()
	return l.Samples()
}

// Summary sums up a set of samples.
type Summary struct {
	N      int
	Failed int // transport errors and non-200 answers
	P50    time.Duration
	P99    time.Duration
	Max    time.Duration
}

func (s Summary) String() string {
	return fmt.Sprintf("%d requests, %d failed, p50 %s, p99 %s, max %s", s.N, s.Failed,
		s.P50.Round(100*time.Microsecond), s.P99.Round(100*time.Microsecond), s.Max.Round(100*time.Microsecond))
}

// Summarize sums up the samples keep accepts (nil: all).
func Summarize(samples []Sample, keep func(Sample) bool) Summary {
	var lat []time.Duration
	var sum Summary
	for _, s := range samples {
		if keep != nil && !keep(s) {
			continue
		}
		sum.N++
		if !s.OK() {
			sum.Failed++
		}
		lat = append(lat, s.Latency)
	}
	if len(lat) == 0 {
		return sum
	}
	slices.Sort(lat)
	sum.P50 = Percentile(lat, 50)
	sum.P99 = Percentile(lat, 99)
	sum.Max = lat[len(lat)-1]
	return sum
}

// Percentile of sorted durations (nearest rank).
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.5) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// Between keeps samples that started in [from, to).
func Between(from, to time.Time) func(Sample) bool {
	return func(s Sample) bool { return !s.Start.Before(from) && s.Start.Before(to) }
}
