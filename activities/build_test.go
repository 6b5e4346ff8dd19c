package activities_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/builder"
	"github.com/mageflow/mageflow/internal/build/gitmeta"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/test/fixtures"
)

type fixture struct {
	acts *activities.BuildActivities
	repo string
	env  *testsuite.TestActivityEnvironment
}

func newFixture(t *testing.T, typ string, steps string) *fixture {
	t.Helper()
	repo := fixtures.Magento2App(t)
	dir := t.TempDir()
	yml := "apps:\n  shop:\n    repo: " + repo + "\n    type: " + typ + "\n    build:\n      builder: local\n" + steps
	p := filepath.Join(dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yml), 0o644))
	cfg, err := config.Load(p, false)
	require.NoError(t, err)
	st, err := store.NewLocal(cfg.Artifacts.Dir)
	require.NoError(t, err)
	acts := &activities.BuildActivities{Config: cfg, Git: gitmeta.NewCache(cfg.Git.CacheDir), Store: st, NewRunner: activities.DefaultRunner}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return &fixture{acts: acts, repo: repo, env: env}
}

func (f *fixture) resolve(t *testing.T) activities.CommitMeta {
	t.Helper()
	v, err := f.env.ExecuteActivity(f.acts.ResolveCommit, activities.ResolveInput{App: "shop", Ref: "main"})
	require.NoError(t, err)
	var cm activities.CommitMeta
	require.NoError(t, v.Get(&cm))
	return cm
}

func TestResolveCommitDescribesTheCommit(t *testing.T) {
	f := newFixture(t, "magento2", "")
	cm := f.resolve(t)
	require.Equal(t, 2, cm.BuildNumber)
	require.Equal(t, "main", cm.Branch)
	require.Equal(t, "Bump greeting marker to v2", cm.Message)
	require.Len(t, cm.ComposerLockHash, 64)
	require.Empty(t, cm.PackageLockHash)

	_, err := f.env.ExecuteActivity(f.acts.ResolveCommit, activities.ResolveInput{App: "shop", Ref: "v9.9.9"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, activities.ErrRefNotFound, ae.Type())
	require.True(t, ae.NonRetryable())

	_, err = f.env.ExecuteActivity(f.acts.ResolveCommit, activities.ResolveInput{App: "nope", Ref: "main"})
	require.True(t, errors.As(err, &ae))
	require.Equal(t, activities.ErrConfig, ae.Type())
}

// failingRunner proves a resumed attempt does not build again.
type failingRunner struct{}

func (failingRunner) Run(context.Context, string, builder.Step, io.Writer) (int, error) {
	// A step failure: exit code 1, no runner error.
	return 1, nil
}
func (failingRunner) Describe() string { return "failing" }

func TestBuildArtifactResumesAfterPackaging(t *testing.T) {
	f := newFixture(t, "magento2", "")
	cm := f.resolve(t)
	id := release.NewID(cm.BuildNumber, cm.ShortCommit)
	in := activities.BuildArtifactInput{App: "shop", ReleaseID: id, Commit: cm, WorkflowID: "build/shop/" + cm.Commit}

	// First attempt: builds, packages, uploads, cleans its work dir.
	v, err := f.env.ExecuteActivity(f.acts.BuildArtifact, in)
	require.NoError(t, err)
	var first activities.BuildArtifactResult
	require.NoError(t, v.Get(&first))
	require.NotEmpty(t, first.Artifact.SHA256)
	require.Len(t, first.Artifact.IndexSHA256, 64, "a build records its per-file index digest (delta deploys)")
	require.Positive(t, first.Artifact.UncompressedSize)
	require.Contains(t, first.LogURI, id+".log")

	// Simulate a worker that died after packaging but before the upload
	// finished: the staged artifact and result are on disk, the heartbeat
	// says "packaged".
	work := filepath.Join(f.acts.Config.Worker.WorkDir, "shop", id)
	require.NoError(t, os.MkdirAll(work, 0o755))
	rc, err := f.acts.Store.Get(context.Background(), "shop/"+id+".tar.zst")
	require.NoError(t, err)
	b, err := io.ReadAll(rc)
	rc.Close()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(work, id+".tar.zst"), b, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(work, "result.json"), []byte(`{"Artifact":{"SHA256":"`+first.Artifact.SHA256+`","Size":`+strconv.Itoa(len(b))+`},"Recipe":"magento2"}`), 0o644))
	f.acts.NewRunner = func(*config.App) (builder.Runner, error) { return failingRunner{}, nil }
	f.env.SetHeartbeatDetails(activities.BuildProgress{Phase: "upload", Packaged: true, ArtifactSHA256: first.Artifact.SHA256})
	v, err = f.env.ExecuteActivity(f.acts.BuildArtifact, in)
	require.NoError(t, err, "resume must upload the packaged artifact without rebuilding")
	var resumed activities.BuildArtifactResult
	require.NoError(t, v.Get(&resumed))
	require.Equal(t, first.Artifact.SHA256, resumed.Artifact.SHA256)
	require.Equal(t, first.Artifact.URI, resumed.Artifact.URI)

	// A corrupted staged file is not trusted: the attempt rebuilds (and
	// here the failing runner proves it tried).
	require.NoError(t, os.MkdirAll(work, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(work, id+".tar.zst"), []byte("garbage"), 0o644))
	_, err = f.env.ExecuteActivity(f.acts.BuildArtifact, in)
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, activities.ErrBuildStepFailed, ae.Type())
}

func TestFindReleaseIgnoresMetaWithoutArtifact(t *testing.T) {
	f := newFixture(t, "magento2", "")
	m := &release.Meta{ID: "2-abcdef0", App: "shop", Artifact: release.Artifact{SHA256: "00"}}
	_, err := f.env.ExecuteActivity(f.acts.PublishRelease, m)
	require.NoError(t, err)
	v, err := f.env.ExecuteActivity(f.acts.FindRelease, activities.FindReleaseInput{App: "shop", ReleaseID: "2-abcdef0"})
	require.NoError(t, err)
	require.False(t, v.HasValue(), "a meta without its artifact must not count as built")

	_, err = f.env.ExecuteActivity(f.acts.FindRelease, activities.FindReleaseInput{App: "shop", ReleaseID: "../../etc"})
	require.Error(t, err)
}
