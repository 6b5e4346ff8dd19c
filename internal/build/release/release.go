// Package release defines the description of one built release: the meta an
// operator reads in `mageflow releases`, the release.json inside every
// artifact, and the sidecar stored next to it. It is shared by the build, the
// store, the CLI and (later) the deploy, so it depends on nothing else.
package release

import (
	"fmt"
	"regexp"
	"time"
)

// Meta is everything known about one release. The JSON names are a public
// contract: `mageflow build --wait --json` and `mageflow releases --json` print
// them, scripts parse them.
type Meta struct {
	// ID names the release everywhere (release directory on hosts, artifact
	// key, search attribute). See NewID.
	ID          string    `json:"id"`
	App         string    `json:"app"`
	Commit      string    `json:"commit"`
	ShortCommit string    `json:"short_commit"`
	Branch      string    `json:"branch"`
	BuildNumber int       `json:"build_number"`
	Message     string    `json:"message"`
	Author      string    `json:"author"`
	AuthorEmail string    `json:"author_email,omitempty"`
	CommittedAt time.Time `json:"committed_at"`
	Artifact    Artifact  `json:"artifact"`
	WorkflowID  string    `json:"workflow_id"`

	// Build facts, recorded in release.json inside the artifact as well.
	Recipe           string         `json:"recipe,omitempty"`
	Builder          string         `json:"builder,omitempty"`       // docker | local
	BuilderImage     string         `json:"builder_image,omitempty"` // image id the build ran in
	ComposerLockHash string         `json:"composer_lock_sha256,omitempty"`
	PackageLockHash  string         `json:"package_lock_sha256,omitempty"`
	Steps            []StepDuration `json:"steps,omitempty"`
	BuiltAt          time.Time      `json:"built_at,omitempty"`
}

// Artifact locates the one immutable artifact of a release.
type Artifact struct {
	URI    string `json:"uri"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// UncompressedSize is the size in bytes of the unpacked tar stream,
	// measured by the build. Hosts refuse to unpack more than this, so a
	// swapped or hostile artifact cannot fill their disks. Zero in
	// releases built before it was recorded.
	UncompressedSize int64 `json:"uncompressed_size,omitempty"`
	// IndexSHA256 is the sha256 of the artifact's per-file index
	// (artifact.Result.IndexSHA256). A host fetching only the frames a
	// delta deploy needs checks the index against it. Empty in releases
	// built before the index existed: those always deploy in full.
	IndexSHA256 string `json:"index_sha256,omitempty"`
}

// StepDuration records how long one build step took, for release.json and
// the dashboard.
type StepDuration struct {
	Name     string  `json:"name"`
	Seconds  float64 `json:"seconds"`
	ExitCode int     `json:"exit_code"`
}

// NewID derives the release id from the build number and short commit id,
// e.g. "1234-3f9a2c1". It is stable for a commit (so a rebuild of the same
// commit maps to the same release) and sorts by build number when read as
// "<n>-…", which is what operators expect of release directories.
func NewID(buildNumber int, shortCommit string) string {
	return fmt.Sprintf("%d-%s", buildNumber, shortCommit)
}

var idPattern = regexp.MustCompile(`^[0-9]+-[0-9a-f]{7,40}$`)

// ValidID reports whether s has the shape NewID produces; callers use it
// before using an id in a path or storage key.
func ValidID(s string) bool { return idPattern.MatchString(s) }
