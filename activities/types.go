// Package activities holds every side effect of mageflow's workflows. Each
// group of activities is a struct holding its dependencies (config, git
// cache, artifact store, builder), registered once on the worker; workflows
// refer to methods through a nil pointer of the struct, which only names
// them.
//
// Every activity is idempotent: it checks before it acts, works in a
// temporary path and renames, and derives keys from its input, so a retry
// after a crash (worker killed mid-build, network cut mid-upload) converges
// on the same result instead of doing the work twice.
package activities

import (
	"time"

	"github.com/mageflow/mageflow/activities/agent"

	"github.com/mageflow/mageflow/internal/build/release"
)

// Error types a workflow must not retry: retrying cannot change the outcome
// and would only delay the failure an operator needs to see.
const (
	ErrRefNotFound     = "RefNotFound"
	ErrBuildStepFailed = "BuildStepFailed"
	// The three below are shared with the agent's activities.
	ErrInvalidInput    = agent.ErrInvalidInput
	ErrConfig          = agent.ErrConfig
	ErrArtifactCorrupt = agent.ErrArtifactCorrupt
)

// ResolveInput names a commit to resolve in an app's repository.
type ResolveInput struct {
	App string
	// Ref is a branch, tag or (short) sha.
	Ref string
	// Branch, when known (from a webhook), is recorded as the release's
	// branch instead of being guessed from the refs pointing at the commit.
	Branch string
}

// CommitMeta is what git says about one commit.
type CommitMeta struct {
	Commit           string
	ShortCommit      string
	Branch           string
	Tag              string
	BuildNumber      int
	Message          string
	Author           string
	AuthorEmail      string
	CommittedAt      time.Time
	ComposerLockHash string
	PackageLockHash  string
}

// FindReleaseInput asks whether a release is already stored.
type FindReleaseInput struct {
	App       string
	ReleaseID string
}

// BuildArtifactInput is everything the build activity needs; the app's build
// settings are read from the worker's config, not carried in history.
type BuildArtifactInput struct {
	App        string
	ReleaseID  string
	Commit     CommitMeta
	WorkflowID string
}

// BuildArtifactResult describes the stored artifact and how it was built.
type BuildArtifactResult struct {
	Artifact     release.Artifact
	LogURI       string
	Recipe       string
	Builder      string
	BuilderImage string
	Steps        []release.StepDuration
	Files        int
}

// BuildProgress is the heartbeat detail of BuildArtifact: the Web UI shows it
// on the pending activity, and a retry reads it to skip finished phases.
type BuildProgress struct {
	Phase string // checkout | build | package | upload
	Step  string
	Index int
	Total int
	// Packaged is set once the artifact file is complete in the staging dir.
	Packaged       bool
	ArtifactSHA256 string
}
