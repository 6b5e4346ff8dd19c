package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/front/cli"
	"github.com/mageflow/mageflow/test/fixtures"
)

// TestCLIBuildAndReleasesJSON drives the operator contract: the JSON shapes
// scripts parse.
func TestCLIBuildAndReleasesJSON(t *testing.T) {
	repo := fixtures.Magento2App(t)
	h := newHarness(t, localApp("clishop", repo))

	var out, errb bytes.Buffer
	code := cli.Main([]string{"build", "--config", h.cfgPath, "--app", "clishop", "--ref", "main", "--wait", "--json"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	var obj map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &obj), out.String())
	for _, k := range []string{"id", "app", "commit", "short_commit", "branch", "build_number", "message", "author", "committed_at", "artifact", "workflow_id"} {
		require.Contains(t, obj, k)
	}
	art := obj["artifact"].(map[string]any)
	for _, k := range []string{"uri", "sha256", "size"} {
		require.Contains(t, art, k)
	}
	require.EqualValues(t, gitCount(t, repo, "main"), obj["build_number"])
	require.Equal(t, gitRev(t, repo, "main"), obj["commit"])

	// A second build of the older commit, by short sha.
	first := gitRev(t, repo, "main~1")
	out.Reset()
	code = cli.Main([]string{"build", "--config", h.cfgPath, "--app", "clishop", "--ref", first[:8], "--wait", "--json"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())

	out.Reset()
	code = cli.Main([]string{"releases", "--config", h.cfgPath, "--app", "clishop", "--json"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	var list []map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &list))
	require.Len(t, list, 2)
	require.EqualValues(t, 2, list[0]["build_number"], "newest first")
	require.EqualValues(t, 1, list[1]["build_number"])

	// Human output names the release.
	out.Reset()
	code = cli.Main([]string{"releases", "--config", h.cfgPath, "--app", "clishop"}, &out, &errb)
	require.Equal(t, 0, code)
	require.Contains(t, out.String(), obj["id"].(string))

	// Bad input: a clear error, exit code 2 for usage, 1 for failures.
	errb.Reset()
	require.Equal(t, 2, cli.Main([]string{"build", "--config", h.cfgPath, "--app", "clishop"}, &out, &errb))
	require.Contains(t, errb.String(), "--ref are required")
	errb.Reset()
	require.Equal(t, 1, cli.Main([]string{"build", "--config", h.cfgPath, "--app", "nope", "--ref", "main"}, &out, &errb))
	require.Contains(t, errb.String(), "configured apps: clishop")
	errb.Reset()
	require.Equal(t, 1, cli.Main([]string{"build", "--config", h.cfgPath, "--app", "clishop", "--ref", "nope-branch", "--wait"}, &out, &errb))
	require.Contains(t, errb.String(), "nope-branch")
}

// TestComposeFileIsValid checks docker-compose.yml with the compose tool.
func TestComposeFileIsValid(t *testing.T) {
	// An empty env file: a developer's .env must not fill in what the
	// test leaves out.
	empty := filepath.Join(t.TempDir(), "empty.env")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	bin, args := "docker-compose", []string{"-f", "../docker-compose.yml", "--env-file", empty, "config", "-q"}
	if _, err := exec.LookPath(bin); err != nil {
		bin, args = "docker", append([]string{"compose"}, args...)
	}
	compose := func(env ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := compose("MAGEFLOW_CODEC_KEY=dGVzdA==", "POSTGRES_PASSWORD=s3cret")
	require.NoError(t, err, "docker-compose config (install docker-compose: make deps): %s", out)
	// Without one of the secrets, compose refuses and names it.
	out, err = compose("POSTGRES_PASSWORD=s3cret")
	require.Error(t, err)
	require.Contains(t, out, "MAGEFLOW_CODEC_KEY")
	out, err = compose("MAGEFLOW_CODEC_KEY=dGVzdA==")
	require.Error(t, err)
	require.Contains(t, out, "POSTGRES_PASSWORD")
}
