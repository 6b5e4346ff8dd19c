package test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/test/benchdeploy/deploystack"
)

// Load the deploy tests put on the balancer: 8 clients, each pausing 5ms
// between requests (bounded; loopback only).
const (
	loadClients = 8
	loadPause   = 5 * time.Millisecond
)

// served is the interval in which every request that starts must be
// answered 200 by one release: from the moment the last host was seen
// switched to it until the next deploy starts.
type served struct {
	release  string
	from, to time.Time
}

// maintenance is a recorded maintenance window.
type maintenance struct {
	release  string
	from, to time.Time
}

// loadReport checks the samples: no failure outside the maintenance windows
// (widened by tol), every failure inside one a 503 with Retry-After, and
// every request started inside a served interval answered by its release.
// It returns the number of 503s inside windows.
func loadReport(t *testing.T, samples []deploystack.Sample, intervals []served, windows []maintenance, tol time.Duration) int {
	t.Helper()
	var outside, badInside, wrong []string
	inMaintenance := 0
	var lead, lag time.Duration // how far 503s reached before From / after To
	for _, s := range samples {
		if !s.OK() {
			w := -1
			for i, m := range windows {
				if !s.End().Before(m.from.Add(-tol)) && !s.Start.After(m.to.Add(tol)) {
					w = i
				}
			}
			switch {
			case w < 0:
				outside = append(outside, s.String())
			case s.Err != "" || s.Status != http.StatusServiceUnavailable || s.RetryAfter == "":
				badInside = append(badInside, s.String())
			default:
				inMaintenance++
				lead = max(lead, windows[w].from.Sub(s.Start))
				lag = max(lag, s.Start.Sub(windows[w].to))
			}
			continue
		}
	}
	perRelease := map[string]int{}
	for _, iv := range intervals {
		for _, s := range samples {
			if s.Start.Before(iv.from) || !s.Start.Before(iv.to) {
				continue
			}
			if !s.OK() || s.Release != iv.release {
				wrong = append(wrong, fmt.Sprintf("want %s (all hosts switched at %s): %s", iv.release, iv.from.Format("15:04:05.000"), s))
				continue
			}
			perRelease[iv.release]++
		}
	}
	sum := deploystack.Summarize(samples, nil)
	t.Logf("load: %s; %d answered 503 inside maintenance (furthest %s before its recorded start, %s after its end)", sum, inMaintenance, lead.Round(time.Millisecond), lag.Round(time.Millisecond))
	report := func(what string, list []string) {
		if len(list) > 0 {
			if len(list) > 20 {
				list = append(list[:20], fmt.Sprintf("… and %d more", len(list)-20))
			}
			t.Errorf("%s:\n  %s", what, strings.Join(list, "\n  "))
		}
	}
	report("requests failed outside any maintenance window", outside)
	report("failed requests inside a maintenance window that were not 503 + Retry-After", badInside)
	report("requests started after every host switched, not served by the new release", wrong)
	for _, iv := range intervals {
		if perRelease[iv.release] == 0 && iv.to.Sub(iv.from) > time.Second {
			t.Errorf("no request was answered by release %s in the %s after its switch: the load did not run", iv.release, iv.to.Sub(iv.from).Round(time.Millisecond))
		}
	}
	return inMaintenance
}
