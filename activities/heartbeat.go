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
				activity.RecordHeartbeat(ctx, current())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
