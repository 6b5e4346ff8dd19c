package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeatWhile records current() every interval (default 10s) until stop
// is called, so a long git fetch, build step, download or setup:upgrade
// keeps its activity alive and shows its progress in the Web UI.
func heartbeatWhile(ctx context.Context, every time.Duration, current func() any) (stop func()) {
	return tick(ctx, every, func() { activity.RecordHeartbeat(ctx, current()) })
}

// KeepAlive heartbeats without details every interval until stop is
// called: the host agents' interceptor wraps every activity in it, so a
// killed agent is noticed within the heartbeat timeout.
func KeepAlive(ctx context.Context, every time.Duration) (stop func()) {
	return tick(ctx, every, func() { activity.RecordHeartbeat(ctx) })
}

func tick(ctx context.Context, every time.Duration, f func()) (stop func()) {
	if every <= 0 {
		every = 10 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				f()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
