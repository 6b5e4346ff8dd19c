package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/test/fixtures"
)

// TestDockerBuildEndToEnd builds the fixture in the builder image through
// the Engine API, exactly as production does (make test builds the image).
func TestDockerBuildEndToEnd(t *testing.T) {
	repo := fixtures.Magento2App(t)
	h := newHarness(t, fmt.Sprintf(`  dockershop:
    repo: %s
    type: magento2
    build:
      builder: docker
      env: {COMPOSER_MIRROR_PATH_REPOS: "1"}
      locales: [en_US, de_DE]
    environments:
      production: {branch: main}
`, repo))
	m, _, err := h.build("dockershop", "main", 10*time.Minute)
	require.NoError(t, err, "the builder image comes from `make builder-image`")
	require.Equal(t, gitCount(t, repo, "main"), m.BuildNumber)
	require.Equal(t, "docker", m.Builder)
	require.True(t, strings.HasPrefix(m.BuilderImage, "docker image sha256:"), m.BuilderImage)

	path := uriPath(t, m.Artifact.URI)
	require.Equal(t, m.Artifact.SHA256, fileSHA(t, path))
	var manifest release.Meta
	require.NoError(t, json.Unmarshal(extractFile(t, path, "release.json"), &manifest))
	require.Equal(t, m.BuilderImage, manifest.BuilderImage)
	entries := tarEntries(t, path)
	require.Contains(t, entries, "vendor/autoload.php")
	require.Contains(t, entries, "pub/static/deployed_version.txt")
	var names []string
	for _, s := range m.Steps {
		names = append(names, s.Name)
	}
	require.NotEmpty(t, names)
	// The built page carries the commit's marker.
	require.Contains(t, string(extractFile(t, path, "app/code/Vendor/Module/Model/Greeting.php")), fixtures.MarkerV2)
}
