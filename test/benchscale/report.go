package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// latencies reads the histories of runs (the workflows themselves, not
// their children) and returns every activity's schedule-to-start time:
// ActivityTaskStarted's time minus its ActivityTaskScheduled's.
func latencies(ctx context.Context, c client.Client, runs []client.WorkflowRun) []time.Duration {
	var mu sync.Mutex
	var out []time.Duration
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, run := range runs {
		if run == nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sched := map[int64]time.Time{}
			var mine []time.Duration
			it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				e, err := it.Next()
				if err != nil {
					return
				}
				switch e.GetEventType() {
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
					sched[e.GetEventId()] = e.GetEventTime().AsTime()
				case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
					if t, ok := sched[e.GetActivityTaskStartedEventAttributes().GetScheduledEventId()]; ok {
						mine = append(mine, e.GetEventTime().AsTime().Sub(t))
					}
				}
			}
			mu.Lock()
			out = append(out, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(out)
	return out
}

// pct is the q-quantile of sorted durations (0 when empty).
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// printTable prints the markdown table: one column per server and the
// ratio cluster/dev when both ran.
func printTable(w io.Writer, o options, rs []*result) {
	type row struct {
		name string
		get  func(r *result) float64
		unit string
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rows := []row{
		{fmt.Sprintf("%d concurrent deploys: errors", o.deploys), func(r *result) float64 { return float64(r.deploys.errors) }, ""},
		{"deploys: wall time", func(r *result) float64 { return r.deploys.wall.Seconds() }, "s"},
		{"deploys: workflows/s", func(r *result) float64 { return float64(r.deploys.n) / r.deploys.wall.Seconds() }, ""},
		{"deploys: activity schedule-to-start p50", func(r *result) float64 { return ms(pct(r.deploys.latencies, .5)) }, "ms"},
		{"deploys: activity schedule-to-start p99", func(r *result) float64 { return ms(pct(r.deploys.latencies, .99)) }, "ms"},
		{fmt.Sprintf("%d builds in one burst: errors", o.builds), func(r *result) float64 { return float64(r.builds.errors) }, ""},
		{"builds: wall time", func(r *result) float64 { return r.builds.wall.Seconds() }, "s"},
		{"builds: workflows/s", func(r *result) float64 { return float64(r.builds.n) / r.builds.wall.Seconds() }, ""},
		{"builds: activity schedule-to-start p50", func(r *result) float64 { return ms(pct(r.builds.latencies, .5)) }, "ms"},
		{"builds: activity schedule-to-start p99", func(r *result) float64 { return ms(pct(r.builds.latencies, .99)) }, "ms"},
		{"PostgreSQL peak RSS (sum of VmRSS)", func(r *result) float64 { return mib(r.mem.postgres) }, "MiB"},
		{"PostgreSQL peak PSS (shared pages counted once)", func(r *result) float64 { return mib(r.mem.pgPSS) }, "MiB"},
		{"Temporal server peak RSS (sum of VmRSS)", func(r *result) float64 { return mib(r.mem.server) }, "MiB"},
		{"Temporal server peak PSS", func(r *result) float64 { return mib(r.mem.serverPSS) }, "MiB"},
	}
	fmt.Fprint(w, "| |")
	for _, r := range rs {
		fmt.Fprintf(w, " %s |", r.target)
	}
	both := len(rs) == 2
	if both {
		fmt.Fprint(w, " cluster/dev |")
	}
	fmt.Fprint(w, "\n|---|")
	for range rs {
		fmt.Fprint(w, "---:|")
	}
	if both {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, rw := range rows {
		fmt.Fprintf(w, "| %s |", rw.name)
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", strings.TrimSpace(fmt.Sprintf("%.1f %s", rw.get(r), rw.unit)))
		}
		if both {
			if d := rw.get(rs[0]); d != 0 {
				fmt.Fprintf(w, " %.2f |", rw.get(rs[1])/d)
			} else {
				fmt.Fprint(w, " – |")
			}
		}
		fmt.Fprintln(w)
	}
	for _, r := range rs {
		fmt.Fprintf(w, "\n%s: %d deploy and %d build activity samples\n", r.target, len(r.deploys.latencies), len(r.builds.latencies))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
