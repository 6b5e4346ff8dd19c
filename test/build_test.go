package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/test/fixtures"
)

// localApp declares an app built on the host. Tests use distinct app names:
// the fixture's commits are deterministic, so build ids would collide across
// tests sharing the dev server.
func localApp(name, repo string) string {
	return fmt.Sprintf(`  %s:
    repo: %s
    type: magento2
    build: {builder: local, locales: [en_US, de_DE], jobs: 2}
    environments:
      production: {branch: main}
`, name, repo)
}

// tarEntries lists the artifact's entries with their content for small files.
func tarEntries(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := zstd.NewReader(f)
	require.NoError(t, err)
	defer zr.Close()
	out := exec.Command("tar", "-t")
	out.Stdin = zr
	b, err := out.Output()
	require.NoError(t, err, "tar must read the artifact")
	entries := map[string][]byte{}
	for _, name := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		entries[strings.TrimPrefix(name, "./")] = nil
	}
	return entries
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func extractFile(t *testing.T, artifact, name string) []byte {
	t.Helper()
	cmd := exec.Command("sh", "-c", fmt.Sprintf("zstd -dc %q | tar -xO %q", artifact, name))
	b, err := cmd.Output()
	require.NoError(t, err, "extract %s from %s (needs zstd and tar: make deps)", name, artifact)
	return b
}

func uriPath(t *testing.T, uri string) string {
	t.Helper()
	require.True(t, strings.HasPrefix(uri, "file://"), uri)
	return strings.TrimPrefix(uri, "file://")
}

func TestLocalBuildEndToEnd(t *testing.T) {
	repo := fixtures.Magento2App(t)
	h := newHarness(t, localApp("shop", repo))
	m, run, err := h.build("shop", "main", 5*time.Minute)
	require.NoError(t, err)

	head := gitRev(t, repo, "main")
	require.Equal(t, head, m.Commit)
	require.Equal(t, head[:7], m.ShortCommit)
	require.Equal(t, gitCount(t, repo, "main"), m.BuildNumber)
	require.Equal(t, release.NewID(m.BuildNumber, m.ShortCommit), m.ID)
	require.Equal(t, "main", m.Branch)
	require.Equal(t, "Bump greeting marker to v2", m.Message)
	require.Equal(t, "Fixture Author", m.Author)
	require.Equal(t, "build/shop/"+head, m.WorkflowID)
	require.Equal(t, run.GetID(), m.WorkflowID)
	require.NotEmpty(t, m.ComposerLockHash)
	require.NotEmpty(t, m.Steps)

	// The artifact: checksum, manifest, content, exclusions.
	path := uriPath(t, m.Artifact.URI)
	require.Equal(t, m.Artifact.SHA256, fileSHA(t, path))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, m.Artifact.Size, st.Size())
	side, err := os.ReadFile(path + ".sha256")
	require.NoError(t, err)
	require.Contains(t, string(side), m.Artifact.SHA256)

	var manifest release.Meta
	require.NoError(t, json.Unmarshal(extractFile(t, path, "release.json"), &manifest))
	require.Equal(t, m.Commit, manifest.Commit)
	require.Equal(t, m.BuildNumber, manifest.BuildNumber)
	require.Equal(t, "magento2", manifest.Recipe)
	require.Equal(t, m.ComposerLockHash, manifest.ComposerLockHash)
	require.Len(t, manifest.Steps, len(m.Steps))

	entries := tarEntries(t, path)
	for _, want := range []string{"release.json", "vendor/autoload.php", "bin/magento", "pub/index.php", "composer.lock"} {
		require.Contains(t, entries, want)
	}
	hasPrefix := func(p string) bool {
		for e := range entries {
			if strings.HasPrefix(e, p) {
				return true
			}
		}
		return false
	}
	require.True(t, hasPrefix("generated/"), "setup:di:compile output must be in the artifact")
	require.True(t, hasPrefix("pub/static/frontend/"), "static content must be in the artifact")
	require.True(t, hasPrefix("pub/static/frontend/") && hasPrefix("pub/static/"), "")
	for e := range entries {
		require.False(t, strings.HasPrefix(e, ".git/") || e == ".git", "artifact must not contain .git: %s", e)
		require.False(t, strings.HasPrefix(e, "var/") || strings.HasPrefix(e, "pub/media/") || e == "app/etc/env.php", "shared path in artifact: %s", e)
	}

	// The release is listed from the store, with its log beside it.
	list, err := catalog.List(context.Background(), h.acts.Store, "shop")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, m.ID, list[0].ID)
	_, err = os.Stat(filepath.Join(h.cfg.Artifacts.Dir, "shop", m.ID+".log"))
	require.NoError(t, err, "build log stored beside the artifact")

	// The history holds ciphertext only: no commit message in clear.
	assertEncrypted(t, h.client, run.GetID(), "Bump greeting marker")

	// Building an older commit gives the lower build number.
	first := gitRev(t, repo, "main~1")
	m1, _, err := h.build("shop", first[:9], 5*time.Minute)
	require.NoError(t, err)
	require.Equal(t, 1, m1.BuildNumber)
	list, err = catalog.List(context.Background(), h.acts.Store, "shop")
	require.NoError(t, err)
	require.Equal(t, []string{m.ID, m1.ID}, []string{list[0].ID, list[1].ID}, "newest first")

	if os.Getenv("MAGEFLOW_RECORD_HISTORY") != "" {
		recordHistory(t, h, run.GetID())
	}
}

// assertEncrypted checks the stored history: every input and result payload
// is AES-GCM ciphertext, and the clear text appears nowhere.
func assertEncrypted(t *testing.T, c client.Client, id, clear string) {
	t.Helper()
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	checked := 0
	check := func(p *commonpb.Payloads) {
		for _, pl := range p.GetPayloads() {
			require.Equal(t, "binary/encrypted", string(pl.GetMetadata()["encoding"]))
			require.False(t, bytes.Contains(pl.GetData(), []byte(clear)), "clear text in history")
			checked++
		}
	}
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		check(ev.GetWorkflowExecutionStartedEventAttributes().GetInput())
		check(ev.GetActivityTaskScheduledEventAttributes().GetInput())
		check(ev.GetActivityTaskCompletedEventAttributes().GetResult())
		check(ev.GetWorkflowExecutionCompletedEventAttributes().GetResult())
	}
	require.Greater(t, checked, 4)
}

func TestDuplicateStartsJoinOneBuild(t *testing.T) {
	repo := fixtures.Magento2App(t)
	h := newHarness(t, localApp("dup", repo))
	head := gitRev(t, repo, "main")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Three requests at once (a webhook, its redelivery and a person).
	var wg sync.WaitGroup
	runIDs := make([]string, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := start.BuildRequest{App: "dup", Commit: head, Branch: "main", Trigger: "test"}
			if i == 2 {
				req = start.BuildRequest{App: "dup", Ref: "main", Trigger: "cli"}
			}
			run, err := h.starter().Start(ctx, req)
			errs[i] = err
			if err == nil {
				runIDs[i] = run.GetRunID()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, runIDs[0], runIDs[1])
	require.Equal(t, runIDs[0], runIDs[2])

	var m release.Meta
	require.NoError(t, h.client.GetWorkflow(ctx, "build/dup/"+head, "").Get(ctx, &m))
	// After it finished, asking again returns the same run, not a new build.
	run, err := h.starter().Start(ctx, start.BuildRequest{App: "dup", Commit: head, Trigger: "test"})
	require.NoError(t, err)
	require.Equal(t, runIDs[0], run.GetRunID())
	var again release.Meta
	require.NoError(t, run.Get(ctx, &again))
	require.Equal(t, m.Artifact.SHA256, again.Artifact.SHA256)

	resp, err := h.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = 'build/dup/%s'", head),
	})
	require.NoError(t, err)
	require.Len(t, resp.Executions, 1, "one build per commit")
}

func TestFailingStepFailsTheBuild(t *testing.T) {
	repo := fixtures.Magento2App(t)
	h := newHarness(t, fmt.Sprintf(`  broken:
    repo: %s
    type: custom
    build:
      builder: local
      steps:
        - {name: prepare, run: "echo preparing; mkdir -p out"}
        - {name: compile assets, run: "echo 'about to fail'; echo 'ERROR: theme Vendor/broken has no parent' >&2; exit 3"}
        - {name: never, run: "touch never-ran"}
`, repo))
	_, run, err := h.build("broken", "main", 3*time.Minute)
	require.Error(t, err)
	require.Contains(t, err.Error(), "compile assets")
	require.Contains(t, err.Error(), "theme Vendor/broken has no parent", "the error shows the log's last lines")
	require.NotNil(t, run)
	// The log is stored for the operator even though the build failed.
	logs, err := filepath.Glob(filepath.Join(h.cfg.Artifacts.Dir, "broken", "*.log"))
	require.NoError(t, err)
	require.Len(t, logs, 1)
	b, err := os.ReadFile(logs[0])
	require.NoError(t, err)
	require.Contains(t, string(b), "about to fail")
	// And no release is listed.
	list, err := catalog.List(context.Background(), h.acts.Store, "broken")
	require.NoError(t, err)
	require.Empty(t, list)
}

func TestUnknownRefFailsClearly(t *testing.T) {
	repo := fixtures.Magento2App(t)
	h := newHarness(t, localApp("unknownref", repo))
	_, _, err := h.build("unknownref", "no-such-branch", time.Minute)
	require.Error(t, err)
	require.Contains(t, err.Error(), "no-such-branch")
}
