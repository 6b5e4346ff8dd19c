package agent

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/mageflow/mageflow/internal/host/magento"
)

// UpgradeStatus asks Magento whether the release needs setup:upgrade or
// app:config:import.
func (h *HostActivities) UpgradeStatus(ctx context.Context, in ReleaseRef) (*UpgradeDecision, error) {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return nil, err
	}
	if err := validRelease(in.ReleaseID); err != nil {
		return nil, err
	}
	dir, err := requireComplete(c, in.ReleaseID)
	if err != nil {
		return nil, err
	}
	if c.app.Type == "magento1" {
		return m1UpgradeDecision(c, dir)
	}
	if !c.isMagento2() {
		// Other app types have no database schema to check.
		return &UpgradeDecision{}, nil
	}
	st, err := h.cli(c, dir).UpgradeStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w (check the database is reachable with the environment's env.php)", in.ReleaseID, err)
	}
	return &UpgradeDecision{Needed: st.Needed, Reasons: st.Reasons}, nil
}

// RunUpgrade runs setup:upgrade --keep-generated and app:config:import in
// the release, once per environment. Both are safe to run again.
func (h *HostActivities) RunUpgrade(ctx context.Context, in ReleaseRef) error {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return err
	}
	if err := validRelease(in.ReleaseID); err != nil {
		return err
	}
	dir, err := requireComplete(c, in.ReleaseID)
	if err != nil {
		return err
	}
	if c.app.Type == "magento1" {
		return h.m1RunSetup(ctx, c, dir, in.ReleaseID)
	}
	if !c.isMagento2() {
		return nil
	}
	var step atomic.Value
	step.Store("setup:upgrade")
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: step.Load().(string)} })
	defer stop()
	cl := h.cli(c, dir)
	for _, args := range [][]string{{"setup:upgrade", "--keep-generated"}, {"app:config:import"}} {
		step.Store(args[0])
		if _, err := cl.Must(ctx, nil, args...); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ce *magento.CommandError
			if errors.As(err, &ce) {
				return nonRetryable(ErrUpgradeFailed, "release %s on %s: %v\nThe site stays in maintenance on the old code; fix the cause, then deploy again (or roll back and turn maintenance off)", in.ReleaseID, h.Host, err)
			}
			return err
		}
	}
	return nil
}
