package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/front/cli"
	"github.com/mageflow/mageflow/test/fixtures"
)

// TestScheduleApplyIsIdempotentAndBuilds applies a build schedule twice
// (created, then updated), lists it, triggers it and sees the release.
func TestScheduleApplyIsIdempotentAndBuilds(t *testing.T) {
	repo := fixtures.Magento2App(t)
	h := newHarness(t, localApp("schedshop", repo))
	b, err := os.ReadFile(h.cfgPath)
	require.NoError(t, err)
	b = append(b, []byte(fmt.Sprintf("schedules:\n  nightly-%s:\n    every: 24h\n    action: build\n    app: schedshop\n    ref: main\n", t.Name()))...)
	require.NoError(t, os.WriteFile(h.cfgPath, b, 0o644))

	var out, errb bytes.Buffer
	require.Equal(t, 0, cli.Main([]string{"schedule", "apply", "--config", h.cfgPath}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "created mageflow-nightly-")
	out.Reset()
	require.Equal(t, 0, cli.Main([]string{"schedule", "apply", "--config", h.cfgPath}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "updated mageflow-nightly-", "a second apply changes nothing but says so")
	out.Reset()
	require.Equal(t, 0, cli.Main([]string{"schedule", "list", "--config", h.cfgPath}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "every 24h0m0s")
	require.Contains(t, out.String(), "ScheduledBuild")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	handle := h.client.ScheduleClient().GetHandle(ctx, "mageflow-nightly-"+t.Name())
	t.Cleanup(func() { _ = handle.Delete(context.Background()) })
	require.NoError(t, handle.Trigger(ctx, client.ScheduleTriggerOptions{}))
	require.Eventually(t, func() bool {
		list, err := catalog.List(ctx, h.acts.Store, "schedshop")
		return err == nil && len(list) == 1 && list[0].BuildNumber == gitCount(t, repo, "main")
	}, 2*time.Minute, 500*time.Millisecond, "the triggered schedule builds main")
}
