// Package heartbeat keeps long activities alive: the control side's build
// and the agent's download, setup:upgrade and reload share it.
package heartbeat

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// While records current() as the activity's heartbeat details every
// interval (default 10s) until stop is called, so a long git fetch, build
// step, download or setup:upgrade keeps its activity alive and shows its
// progress in the Web UI.
func While(ctx context.Context, every time.Duration, current func() any) (stop func()) {
	return Tick(ctx, every, func() { activity.RecordHeartbeat(ctx, current()) })
}

// Tick calls f every interval (default 10s) until stop is called or ctx
// ends.
func Tick(ctx context.Context, every time.Duration, f func()) (stop func()) {
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
