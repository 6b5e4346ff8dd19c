package agent

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/mageflow/mageflow/activities/internal/heartbeat"
)

// KeepAlive heartbeats without details every interval until stop is
// called: the host agents' interceptor wraps every activity in it, so a
// killed agent is noticed within the heartbeat timeout.
func KeepAlive(ctx context.Context, every time.Duration) (stop func()) {
	return heartbeat.Tick(ctx, every, func() { activity.RecordHeartbeat(ctx) })
}
