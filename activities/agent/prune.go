package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/mageflow/mageflow/internal/build/artifact"
	"github.com/mageflow/mageflow/internal/host/hostops"
)

// Leftovers of a killed Prepare (.tmp-* directories, incomplete releases)
// older than this are removed by Prune; younger ones may belong to a
// Prepare still running.
const staleAfter = time.Hour

// Prune removes old releases, never current or the protected ones.
//
// Complete releases are ordered by when Prepare finished them (the mtime
// of .mageflow-complete); the newest Keep stay, and so do current, the
// release current replaced (from the last switch) and Protect. Leftovers
// of killed attempts — .tmp-* work directories and releases without the
// complete marker — are removed once untouched for an hour. Removal renames
// first and never follows symlinks. The newest release removed is not
// deleted but set aside in the recycle slot (hostops.SetAside), replacing
// what the slot held: the next delta prepare reuses its directory tree.
// When the slot stays empty (nothing retired yet), a spare of current is
// staged into it in the background (spare.go).
func (h *HostActivities) Prune(ctx context.Context, in PruneInput) (*PruneResult, error) {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return nil, err
	}
	keep := in.Keep
	if keep <= 0 && c.env != nil {
		keep = c.env.KeepReleases
	}
	if keep <= 0 {
		keep = 5
	}
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return nil, nonRetryable(ErrConfig, "%v", err)
	}
	// No spare staging writes to releases/ while Prune works there.
	h.spares.settle(c.releases(), 0)
	protect := map[string]bool{cur: true}
	for _, p := range in.Protect {
		protect[p] = true
	}
	var st SwitchResult
	if b, err := os.ReadFile(filepath.Join(hostops.AppDir(c.root, c.app.Name), hostops.SwitchStateName)); err == nil && json.Unmarshal(b, &st) == nil {
		protect[st.Previous] = true
	}
	rels, err := hostops.ListReleases(c.releases())
	if err != nil {
		return nil, err
	}
	var done []hostops.Release
	now := h.now()
	res := &PruneResult{}
	remove := func(name string) error {
		if err := hostops.RemoveTree(c.releases(), name); err != nil {
			return fmt.Errorf("remove %s: %w", filepath.Join(c.releases(), name), err)
		}
		res.Removed = append(res.Removed, name)
		return nil
	}
	for _, r := range rels {
		switch {
		case r.Complete:
			done = append(done, r)
		case !protect[r.ID] && now.Sub(r.ChangedAt) > staleAfter:
			if err := remove(r.ID); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(done, func(i, j int) bool {
		if !done[i].CompletedAt.Equal(done[j].CompletedAt) {
			return done[i].CompletedAt.After(done[j].CompletedAt)
		}
		return done[i].ID > done[j].ID
	})
	aside := false
	for i, r := range done {
		if i < keep || protect[r.ID] {
			continue
		}
		if !aside {
			// The newest release retired is set aside for the next
			// delta prepare to reuse its directory tree.
			if err := hostops.SetAside(c.releases(), r.ID); err != nil {
				return nil, fmt.Errorf("set %s aside for reuse: %w", r.ID, err)
			}
			aside, res.Removed, res.SetAside = true, append(res.Removed, r.ID), r.ID
			continue
		}
		if err := remove(r.ID); err != nil {
			return nil, err
		}
		activity.RecordHeartbeat(ctx, HostProgress{Step: "prune " + r.ID})
	}
	temps, err := hostops.ListTemps(c.releases())
	if err != nil {
		return nil, err
	}
	slot := ""
	for _, t := range temps {
		if hostops.IsRecycleSlot(t.ID) {
			slot = strings.TrimPrefix(t.ID, hostops.RecyclePrefix)
		}
		if !hostops.IsRecycleSlot(t.ID) && now.Sub(t.ChangedAt) > staleAfter {
			if err := hostops.RemoveTree(c.releases(), t.ID); err != nil {
				return nil, fmt.Errorf("remove %s: %w", t.ID, err)
			}
		}
	}
	if cur != "" && h.startBackground(c, cur, slot) {
		res.SpareStaging = cur
	}
	return res, nil
}

// startBackground starts, after this activity returns, the background
// work for current release cur (slot: the release the recycle slot holds,
// "" when empty): when nothing was retired yet, or the slot's tree is
// unlike current's, a spare of current for the next delta prepare to
// recycle; then current's files hashed, so that delta need not read them.
// It reports whether a spare is being staged.
func (h *HostActivities) startBackground(c *resolvedTarget, cur, slot string) bool {
	// A release without the per-file index (built before it, or a
	// hand-made one) is no delta base, so a spare of it would only cost
	// disk: the slot is left as it is.
	indexed := hostops.HasRegularFile(c.releases(), cur, artifact.IndexName)
	replace := ""
	if indexed && slot != "" && !hostops.SlotResembles(c.releases(), slot, cur, artifact.IndexName) {
		replace = slot
	}
	stage := indexed && (slot == "" || replace != "")
	h.spares.start(c.releases(), cur, stage, replace, max(uint64(max(c.host.MinFreeBytes, 0)), spareMinFree), &h.verified)
	return stage
}

// State reports current and the releases on disk that Prepare finished,
// oldest first.
func (h *HostActivities) State(ctx context.Context, in HostTarget) (*HostState, error) {
	c, err := h.resolve(in)
	if err != nil {
		return nil, err
	}
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return nil, nonRetryable(ErrConfig, "%v", err)
	}
	rels, err := hostops.ListReleases(c.releases())
	if err != nil {
		return nil, err
	}
	var done []hostops.Release
	for _, r := range rels {
		if r.Complete {
			done = append(done, r)
		}
	}
	sort.Slice(done, func(i, j int) bool {
		if !done[i].CompletedAt.Equal(done[j].CompletedAt) {
			return done[i].CompletedAt.Before(done[j].CompletedAt)
		}
		return done[i].ID < done[j].ID
	})
	st := &HostState{Current: cur}
	for _, r := range done {
		st.Releases = append(st.Releases, r.ID)
	}
	return st, nil
}

// Discard removes a prepared release that is not current (cleanup after a
// cancelled deploy), with any work directory of it.
func (h *HostActivities) Discard(ctx context.Context, in ReleaseRef) error {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return err
	}
	if err := validRelease(in.ReleaseID); err != nil {
		return err
	}
	cur, err := hostops.ReadCurrent(c.root, c.app.Name)
	if err != nil {
		return nonRetryable(ErrConfig, "%v", err)
	}
	if cur == in.ReleaseID {
		return nonRetryable(ErrInvalidInput, "release %s is current on host %s; switch to another release before discarding it", in.ReleaseID, h.Host)
	}
	if err := hostops.RemoveTree(c.releases(), in.ReleaseID); err != nil {
		return fmt.Errorf("discard release %s: %w", in.ReleaseID, err)
	}
	temps, err := hostops.ListTemps(c.releases())
	if err != nil {
		return err
	}
	for _, t := range temps {
		if strings.HasPrefix(t.ID, hostops.TmpPrefix+in.ReleaseID+"-") {
			if err := hostops.RemoveTree(c.releases(), t.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
