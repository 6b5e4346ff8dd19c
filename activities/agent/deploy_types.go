package agent

import (
	"time"

	"github.com/mageflow/mageflow/internal/build/catalog"
)

// Error types of the deploy that retrying cannot fix.
const (
	ErrDiskFull        = "DiskFull"
	ErrChecksum        = "ChecksumMismatch"
	ErrUnsafeReload    = "UnsafeReload"
	ErrUpgradeFailed   = "UpgradeFailed"
	ErrUnhealthy       = "Unhealthy"
	ErrAgentMissing    = "AgentMissing"
	ErrRollbackRefused = "RollbackRefused"

	// Shared with the control side's activities (activities.ErrInvalidInput …).
	ErrInvalidInput    = "InvalidInput"
	ErrConfig          = "ConfigError"
	ErrArtifactCorrupt = "ArtifactCorrupt"
)

// HostTaskQueue is the task queue a host's agent polls.
func HostTaskQueue(host string) string { return "mageflow-host-" + host }

// DeployOutcomeSkipped is the outcome (catalog.Deploy.Outcome) of an
// automatic deploy that changed nothing because its release was not newer
// than the environment's (DeployPlan.Skip, recorded in the deploy's Error).
const DeployOutcomeSkipped = "skipped"

// HostTarget names the app and host an agent activity works on. Every host
// activity receives it, so the agent can check it is the right host and
// derive paths (<root>/<app>/releases/<id>, shared/, current) from its own
// config — paths never come from workflow input.
type HostTarget struct {
	Host string
	App  string
	Env  string
}

// PrepareInput puts one release on one host, ready to be switched to.
type PrepareInput struct {
	HostTarget
	ReleaseID   string
	ArtifactURI string
	SHA256      string
	Size        int64
	// UncompressedSize is the size of the artifact's unpacked tar stream
	// as its build recorded it (release.Artifact.UncompressedSize): the
	// host refuses to unpack more, and checks for that much free space.
	// Zero for releases built before it was recorded: a bound of 64× Size
	// applies then.
	UncompressedSize int64
	// ContentVersion is written into the release so every host serves the
	// same static content version (pub/static/deployed_version.txt).
	ContentVersion string
	// IndexSHA256 is the digest of the artifact's per-file index
	// (release.Artifact.IndexSHA256): with it, a host that already holds
	// a release builds the new one from it and only the frames of changed
	// files. Empty for releases built before delta deploys: full download.
	IndexSHA256 string
}

// PrepareResult reports what the host now holds.
type PrepareResult struct {
	ReleaseDir string
	// AlreadyPrepared is true when an earlier attempt finished the release.
	AlreadyPrepared bool
	FreeBytes       uint64
	Seconds         float64
	// Transfer says how the release got here (delta or full download)
	// and what it cost; empty when AlreadyPrepared.
	Transfer Transfer
}

// Transfer modes of a prepare.
const (
	TransferDelta = catalog.TransferDelta
	TransferFull  = catalog.TransferFull
)

// Transfer is how one host got a release (catalog.Transfer).
type Transfer = catalog.Transfer

// ReleaseRef names a release on a host.
type ReleaseRef struct {
	HostTarget
	ReleaseID string
}

// UpgradeDecision is Magento's own answer to "does the database or config
// need upgrading for this code?" (setup:db:status, app:config:status exit 2).
type UpgradeDecision struct {
	Needed  bool
	Reasons []string // e.g. "setup:db:status: Declarative Schema is not up to date"
}

// MaintenanceInput turns the environment's nginx-level maintenance flag on
// or off on a host.
type MaintenanceInput struct {
	HostTarget
	On     bool
	Reason string
}

// SwitchResult says what `current` pointed at before and after.
type SwitchResult struct {
	Previous string // release id, "" on the first deploy
	Current  string
	// SwitchedAt is the host's clock at the rename, for skew figures.
	SwitchedAt time.Time
}

// PHPResult says how PHP picked up the new code.
type PHPResult struct {
	Method string // "reload" (graceful php-fpm reload) or "opcache-reset" (FastCGI)
	Detail string
}

// WarmInput lists paths to request on the host directly (Host header set to
// the environment's host name).
type WarmInput struct {
	HostTarget
	Paths []string
	// BypassMaintain warms through the maintenance page (upgrade path).
	BypassMaintain bool
}

// HealthInput checks a host (or, with Env URL, the environment) serves the
// expected release.
type HealthInput struct {
	HostTarget
	// BaseURL overrides the host's own URL (used for the environment URL).
	BaseURL        string
	Paths          []string
	ExpectRelease  string
	BypassMaintain bool // send the allow-list header so checks pass while in maintenance
}

// HealthResult lists failing checks; empty means healthy.
type HealthResult struct {
	Failures []string
}

// PruneInput keeps the newest Keep releases, never current or the one
// before it.
type PruneInput struct {
	HostTarget
	Keep    int
	Protect []string // release ids never to remove (current, previous)
}

// PruneResult lists what was removed.
type PruneResult struct {
	Removed []string
	// SetAside is the removed release kept in the recycle slot for the
	// next delta prepare (one of Removed).
	SetAside string `json:",omitempty"`
	// SpareStaging is the release whose spare tree is being staged into
	// the empty slot, in the background, for the next delta prepare.
	SpareStaging string `json:",omitempty"`
}

// HostState is what a host reports about an app.
type HostState struct {
	Current  string
	Releases []string // oldest first
}
