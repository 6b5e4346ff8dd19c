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

// waits are the schedule-to-start times read from histories: activities
// (ActivityTaskStarted − its ActivityTaskScheduled), each run's first
// workflow task (on the normal queue: how long a new workflow waits for
// a worker) and its later workflow tasks (mostly on the sticky queue).
type waits struct {
	activities, firstWFT, laterWFT []time.Duration
}

// latencies reads the histories of runs (the workflows themselves, not
// their children).
func latencies(ctx context.Context, c client.Client, runs []client.WorkflowRun) waits {
	var mu sync.Mutex
	var out waits
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, run := range runs {
		if run == nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			mine := historyWaits(ctx, c, run)
			mu.Lock()
			out.activities = append(out.activities, mine.activities...)
			out.firstWFT = append(out.firstWFT, mine.firstWFT...)
			out.laterWFT = append(out.laterWFT, mine.laterWFT...)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, d := range [][]time.Duration{out.activities, out.firstWFT, out.laterWFT} {
		slices.Sort(d)
	}
	return out
}

// historyWaits reads one run's history.
func historyWaits(ctx context.Context, c client.Client, run client.WorkflowRun) waits {
	var w waits
	sched := map[int64]time.Time{}
	var wft time.Time
	it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return w
		}
		at := e.GetEventTime().AsTime()
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			sched[e.GetEventId()] = at
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if t, ok := sched[e.GetActivityTaskStartedEventAttributes().GetScheduledEventId()]; ok {
				w.activities = append(w.activities, at.Sub(t))
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
			wft = at
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			if len(w.firstWFT) == 0 {
				w.firstWFT = append(w.firstWFT, at.Sub(wft))
			} else {
				w.laterWFT = append(w.laterWFT, at.Sub(wft))
			}
		}
	}
	return w
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
		{"deploys: activity schedule-to-start p50", func(r *result) float64 { return ms(pct(r.deploys.latencies.activities, .5)) }, "ms"},
		{"deploys: activity schedule-to-start p99", func(r *result) float64 { return ms(pct(r.deploys.latencies.activities, .99)) }, "ms"},
		{"deploys: first workflow task schedule-to-start p50", func(r *result) float64 { return ms(pct(r.deploys.latencies.firstWFT, .5)) }, "ms"},
		{"deploys: first workflow task schedule-to-start p99", func(r *result) float64 { return ms(pct(r.deploys.latencies.firstWFT, .99)) }, "ms"},
		{"deploys: later workflow tasks schedule-to-start p99", func(r *result) float64 { return ms(pct(r.deploys.latencies.laterWFT, .99)) }, "ms"},
		{fmt.Sprintf("%d builds in one burst: errors", o.builds), func(r *result) float64 { return float64(r.builds.errors) }, ""},
		{"builds: wall time", func(r *result) float64 { return r.builds.wall.Seconds() }, "s"},
		{"builds: workflows/s", func(r *result) float64 { return float64(r.builds.n) / r.builds.wall.Seconds() }, ""},
		{"builds: activity schedule-to-start p50", func(r *result) float64 { return ms(pct(r.builds.latencies.activities, .5)) }, "ms"},
		{"builds: activity schedule-to-start p99", func(r *result) float64 { return ms(pct(r.builds.latencies.activities, .99)) }, "ms"},
		{"builds: first workflow task schedule-to-start p50", func(r *result) float64 { return ms(pct(r.builds.latencies.firstWFT, .5)) }, "ms"},
		{"builds: first workflow task schedule-to-start p99", func(r *result) float64 { return ms(pct(r.builds.latencies.firstWFT, .99)) }, "ms"},
		{"builds: later workflow tasks schedule-to-start p99", func(r *result) float64 { return ms(pct(r.builds.latencies.laterWFT, .99)) }, "ms"},
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
		fmt.Fprintf(w, "\n%s: %d deploy and %d build activity samples\n", r.target, len(r.deploys.latencies.activities), len(r.builds.latencies.activities))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
