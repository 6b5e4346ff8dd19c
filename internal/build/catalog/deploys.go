package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
)

// Deploy outcomes.
const (
	OutcomeRunning    = "running"
	OutcomeSucceeded  = "succeeded"
	OutcomeFailed     = "failed"
	OutcomeRolledBack = "rolled-back" // unhealthy, switched back by itself
	OutcomeRejected   = "rejected"
	OutcomeCanceled   = "canceled"
	OutcomeTimedOut   = "approval-timed-out"
)

// Deploy is the durable record of one deploy or rollback, stored beside the
// artifacts so it outlives Temporal's retention.
type Deploy struct {
	App             string                 `json:"app"`
	Env             string                 `json:"env"`
	Kind            string                 `json:"kind"` // deploy | rollback
	ReleaseID       string                 `json:"release_id"`
	PreviousRelease string                 `json:"previous_release,omitempty"`
	Release         *release.Meta          `json:"release,omitempty"`
	RequestedBy     string                 `json:"requested_by"`
	Reason          string                 `json:"reason,omitempty"`
	ApprovedBy      string                 `json:"approved_by,omitempty"`
	Hosts           []string               `json:"hosts"`
	UpgradeNeeded   bool                   `json:"upgrade_needed"`
	UpgradeReasons  []string               `json:"upgrade_reasons,omitempty"`
	MaintenanceFrom *time.Time             `json:"maintenance_from,omitempty"`
	MaintenanceTo   *time.Time             `json:"maintenance_to,omitempty"`
	Steps           []release.StepDuration `json:"steps,omitempty"`
	StartedAt       time.Time              `json:"started_at"`
	FinishedAt      *time.Time             `json:"finished_at,omitempty"`
	Outcome         string                 `json:"outcome"`
	Error           string                 `json:"error,omitempty"`
	WorkflowID      string                 `json:"workflow_id"`
	RunID           string                 `json:"run_id"`
	// Transfers say how each host got the release (delta or full
	// download) and what it fetched from the artifact store.
	Transfers []HostTransfer `json:"transfers,omitempty"`
}

// Transfer modes of a prepare.
const (
	TransferDelta = "delta" // built from a release on the host and the changed files' frames
	TransferFull  = "full"  // the whole artifact downloaded, verified and extracted
)

// Transfer is how one host got a release.
type Transfer struct {
	Mode string `json:"mode,omitempty"`
	// Base is the release a delta started from.
	Base string `json:"base,omitempty"`
	// FallbackReason says why a full download was done although the
	// release has an index (no base release, index mismatch, a base file
	// that changed since it was prepared, …).
	FallbackReason string `json:"fallback_reason,omitempty"`
	// BytesFetched is what the host read from the artifact store.
	BytesFetched int64 `json:"bytes_fetched"`
	ArtifactSize int64 `json:"artifact_size,omitempty"`
	FilesLinked  int   `json:"files_linked,omitempty"`
	FilesWritten int   `json:"files_written,omitempty"`
	FilesCopied  int   `json:"files_copied,omitempty"`
	// FilesKnown counts linked files not read again: hashed by the agent
	// in the background after the last deploy and unchanged since.
	FilesKnown int `json:"files_known,omitempty"`
	// Recycled is the retired release whose directory tree the delta
	// reused (Prune's recycle slot); RecycleNote says why a slot that
	// was there was not used.
	Recycled    string `json:"recycled,omitempty"`
	RecycleNote string `json:"recycle_note,omitempty"`
}

// HostTransfer is one host's Transfer in a deploy record.
type HostTransfer struct {
	Host string `json:"host"`
	Transfer
}

// EnvState is what an environment runs now.
type EnvState struct {
	App           string        `json:"app"`
	Env           string        `json:"env"`
	Current       string        `json:"current"`
	Previous      string        `json:"previous,omitempty"`
	Release       *release.Meta `json:"release,omitempty"`
	DeployedAt    time.Time     `json:"deployed_at"`
	DeployedBy    string        `json:"deployed_by"`
	UpgradeNeeded bool          `json:"upgrade_needed"`
	WorkflowID    string        `json:"workflow_id"`
	RunID         string        `json:"run_id"`
	// UpgradedAt is the build number of the last release whose deploy ran
	// setup:upgrade: a rollback below it would put old code on an upgraded
	// database.
	UpgradedAtBuild int `json:"upgraded_at_build,omitempty"`
}

// DeployKey names a deploy record; the start time first so keys sort by time.
func DeployKey(app, env string, started time.Time, runID string) string {
	return fmt.Sprintf("%s/deploys/%s/%s-%s.json", app, env, started.UTC().Format("20060102T150405.000000000Z"), runID)
}

// EnvKey names an environment's state.
func EnvKey(app, env string) string { return app + "/envs/" + env + ".json" }

func putJSON(ctx context.Context, s store.Store, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = s.PutBytes(ctx, key, append(b, '\n'), store.PutOptions{Overwrite: true, ContentType: "application/json"})
	return err
}

func getJSON(ctx context.Context, s store.Store, key string, v any) error {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 4<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s is not valid JSON: %w", key, err)
	}
	return nil
}

// PutDeploy writes (or rewrites) a deploy record.
func PutDeploy(ctx context.Context, s store.Store, d *Deploy) error {
	return putJSON(ctx, s, DeployKey(d.App, d.Env, d.StartedAt, d.RunID), d)
}

// Deploys lists an environment's deploys, newest first, at most limit (0 =
// all).
func Deploys(ctx context.Context, s store.Store, app, env string, limit int) ([]Deploy, error) {
	prefix := app + "/deploys/" + env + "/"
	infos, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, in := range infos {
		if strings.HasSuffix(in.Key, ".json") {
			keys = append(keys, in.Key)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(keys)))
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]Deploy, 0, len(keys))
	for _, k := range keys {
		var d Deploy
		if err := getJSON(ctx, s, k, &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// PutEnv records what an environment runs.
func PutEnv(ctx context.Context, s store.Store, st *EnvState) error {
	return putJSON(ctx, s, EnvKey(st.App, st.Env), st)
}

// Env reads what an environment runs; (nil, nil) before its first deploy.
func Env(ctx context.Context, s store.Store, app, env string) (*EnvState, error) {
	var st EnvState
	err := getJSON(ctx, s, EnvKey(app, env), &st)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &st, nil
}
