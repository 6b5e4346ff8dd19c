package activities

import (
	"context"
	"errors"

	"github.com/mageflow/mageflow/internal/config"
	"github.com/mageflow/mageflow/internal/secrets"
	"github.com/mageflow/mageflow/internal/store"
)

// HostActivities run on a host's agent (`mageflow-worker --agent --host
// NAME`, task queue workflows.HostTaskQueue(NAME)): every file-system and
// process step of a deploy, so the control side needs no SSH access. Paths
// are derived from the agent's own config (hosts.NAME.root), never taken
// from workflow input.
type HostActivities struct {
	Host    string
	Config  *config.Config
	Store   store.Store
	Secrets secrets.Area
}

var errTODO = errors.New("host activity not implemented yet")

// Prepare downloads, verifies and extracts a release, links shared paths,
// installs env.php and applies config — everything before the switch.
func (h *HostActivities) Prepare(ctx context.Context, in PrepareInput) (*PrepareResult, error) {
	return nil, errTODO
}

// UpgradeStatus asks Magento whether the release needs setup:upgrade or
// app:config:import.
func (h *HostActivities) UpgradeStatus(ctx context.Context, in ReleaseRef) (*UpgradeDecision, error) {
	return nil, errTODO
}

// SetMaintenance turns the nginx-level maintenance flag on or off.
func (h *HostActivities) SetMaintenance(ctx context.Context, in MaintenanceInput) error { return errTODO }

// StopJobs stops cron and queue consumers (hosts.NAME.jobs_stop).
func (h *HostActivities) StopJobs(ctx context.Context, in HostTarget) error { return errTODO }

// StartJobs starts them again (hosts.NAME.jobs_start).
func (h *HostActivities) StartJobs(ctx context.Context, in HostTarget) error { return errTODO }

// RunUpgrade runs setup:upgrade --keep-generated and app:config:import in
// the release, once per environment.
func (h *HostActivities) RunUpgrade(ctx context.Context, in ReleaseRef) error { return errTODO }

// Switch points current at the release by atomic rename of a temporary
// symlink.
func (h *HostActivities) Switch(ctx context.Context, in ReleaseRef) (*SwitchResult, error) {
	return nil, errTODO
}

// FlushCache flushes Magento's caches from the current release.
func (h *HostActivities) FlushCache(ctx context.Context, in ReleaseRef) error { return errTODO }

// ReloadPHP reloads php-fpm gracefully or resets OPcache over FastCGI.
func (h *HostActivities) ReloadPHP(ctx context.Context, in HostTarget) (*PHPResult, error) {
	return nil, errTODO
}

// Warm requests the warm-up paths on this host directly.
func (h *HostActivities) Warm(ctx context.Context, in WarmInput) error { return errTODO }

// Health checks the paths answer 200 and serve the expected release.
func (h *HostActivities) Health(ctx context.Context, in HealthInput) (*HealthResult, error) {
	return nil, errTODO
}

// Prune removes old releases, never current or the protected ones.
func (h *HostActivities) Prune(ctx context.Context, in PruneInput) (*PruneResult, error) {
	return nil, errTODO
}

// State reports current and the releases on disk.
func (h *HostActivities) State(ctx context.Context, in HostTarget) (*HostState, error) {
	return nil, errTODO
}

// Discard removes a prepared release that is not current (cleanup after a
// cancelled deploy).
func (h *HostActivities) Discard(ctx context.Context, in ReleaseRef) error { return errTODO }
