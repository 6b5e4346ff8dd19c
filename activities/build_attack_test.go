package activities_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// TestBuildRefusesCommittedEscapingLinks commits links that lead out of
// the checkout (one through another) and builds the commit: the build
// fails for good naming the link, and no artifact is stored.
func TestBuildRefusesCommittedEscapingLinks(t *testing.T) {
	f := newFixture(t, "magento2", "")
	require.NoError(t, os.Symlink("../..", filepath.Join(f.repo, "app/code/up")))
	require.NoError(t, os.Symlink("../app/code/up/../../../etc", filepath.Join(f.repo, "pub/esc")))
	for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=Mallory", "-c", "user.email=m@example.com", "commit", "-qm", "Add links"}} {
		out, err := exec.Command("git", append([]string{"-C", f.repo}, args...)...).CombinedOutput()
		require.NoError(t, err, string(out))
	}
	cm := f.resolve(t)
	id := release.NewID(cm.BuildNumber, cm.ShortCommit)
	_, err := f.env.ExecuteActivity(f.acts.BuildArtifact, activities.BuildArtifactInput{App: "shop", ReleaseID: id, Commit: cm, WorkflowID: "build/shop/" + cm.Commit})
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, err, &ae)
	require.True(t, ae.NonRetryable(), "the same commit would fail the same way")
	require.Contains(t, err.Error(), filepath.Join("src", "pub", "esc")+" -> ../app/code/up/../../../etc", "the message names the link")
	require.Contains(t, err.Error(), "resolves to")
	require.Contains(t, err.Error(), "outside")
	require.True(t, strings.Contains(err.Error(), cm.Commit))
	_, serr := f.acts.Store.Stat(context.Background(), catalog.ArtifactKey("shop", id))
	require.ErrorIs(t, serr, store.ErrNotFound, "no artifact may be stored")
}
