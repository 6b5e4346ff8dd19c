package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/platform/searchattr"
	"github.com/mageflow/mageflow/workflows"
)

const sha = "3f9a2c1e0b5d4c6a7f8e9d0c1b2a3f4e5d6c7b8a"

type buildSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment
	a   *activities.BuildActivities
}

func TestBuildRelease(t *testing.T) { suite.Run(t, new(buildSuite)) }

func (s *buildSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterActivity(s.a)
	s.env.RegisterWorkflow(workflows.BuildRelease)
}

func (s *buildSuite) AfterTest(_, _ string) { s.env.AssertExpectations(s.T()) }

func commitMeta() *activities.CommitMeta {
	return &activities.CommitMeta{
		Commit: sha, ShortCommit: sha[:7], Branch: "main", BuildNumber: 42, Message: "Add checkout step\n\nlong body",
		Author: "Ada", AuthorEmail: "ada@example.com", CommittedAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
		ComposerLockHash: "abc",
	}
}

func built() *activities.BuildArtifactResult {
	return &activities.BuildArtifactResult{
		Artifact: release.Artifact{URI: "file:///a/demo/42-3f9a2c1.tar.zst", SHA256: "ff", Size: 1234},
		Recipe:   "magento2", Builder: "docker", BuilderImage: "sha256:1",
		Steps: []release.StepDuration{{Name: "composer install", Seconds: 1.5}},
	}
}

func input() workflows.BuildInput {
	return workflows.BuildInput{App: "shop", Commit: sha, Branch: "main", Environment: "production", Trigger: "test"}
}

func (s *buildSuite) TestSuccessPublishesMetaAndSearchAttributes() {
	s.env.OnActivity(s.a.ResolveCommit, mock.Anything, activities.ResolveInput{App: "shop", Ref: sha, Branch: "main"}).Return(commitMeta(), nil).Once()
	s.env.OnActivity(s.a.FindRelease, mock.Anything, activities.FindReleaseInput{App: "shop", ReleaseID: "42-3f9a2c1"}).Return(nil, nil).Once()
	s.env.OnActivity(s.a.BuildArtifact, mock.Anything, mock.MatchedBy(func(in activities.BuildArtifactInput) bool {
		return in.ReleaseID == "42-3f9a2c1" && in.Commit.Commit == sha && in.WorkflowID != ""
	})).Return(built(), nil).Once()
	got := map[string]any{}
	s.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		for k, v := range args.Get(0).(temporal.SearchAttributes).GetUntypedValues() {
			got[k.GetName()] = v
		}
	}).Return(nil)
	var published *release.Meta
	s.env.OnActivity(s.a.PublishRelease, mock.Anything, mock.Anything).Return(func(_ context.Context, m *release.Meta) error {
		published = m
		return nil
	}).Once()

	s.env.ExecuteWorkflow(workflows.BuildRelease, input())
	s.Require().True(s.env.IsWorkflowCompleted())
	s.Require().NoError(s.env.GetWorkflowError())
	var m release.Meta
	s.Require().NoError(s.env.GetWorkflowResult(&m))
	s.Equal("42-3f9a2c1", m.ID)
	s.Equal(42, m.BuildNumber)
	s.Equal("main", m.Branch)
	s.Equal("Ada", m.Author)
	s.Equal("ff", m.Artifact.SHA256)
	s.Require().NotNil(published)
	s.Equal(m.ID, published.ID)

	s.EqualValues(42, got[searchattr.BuildNumber.GetName()])
	s.Equal("42-3f9a2c1", got[searchattr.ReleaseID.GetName()])
	s.Equal("production", got[searchattr.Environment.GetName()])
	s.Equal("shop", got[searchattr.App.GetName()])
	s.Equal(sha, got[searchattr.CommitID.GetName()])
	s.Equal("main", got[searchattr.Branch.GetName()])
}

func (s *buildSuite) TestFailingStepFailsWithoutPublishing() {
	s.env.OnActivity(s.a.ResolveCommit, mock.Anything, mock.Anything).Return(commitMeta(), nil)
	s.env.OnActivity(s.a.FindRelease, mock.Anything, mock.Anything).Return(nil, nil)
	attempts := 0
	s.env.OnActivity(s.a.BuildArtifact, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.BuildArtifactInput) (*activities.BuildArtifactResult, error) {
		attempts++
		return nil, temporal.NewNonRetryableApplicationError(`step "setup:di:compile" failed with exit code 255`, activities.ErrBuildStepFailed, nil)
	})
	s.env.ExecuteWorkflow(workflows.BuildRelease, input())
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	var ae *temporal.ApplicationError
	s.Require().True(errors.As(err, &ae))
	s.Equal(activities.ErrBuildStepFailed, ae.Type())
	s.Contains(err.Error(), "setup:di:compile")
	s.Equal(1, attempts, "a failing step must not be retried")
}

func (s *buildSuite) TestTransientBuildErrorIsRetried() {
	s.env.OnActivity(s.a.ResolveCommit, mock.Anything, mock.Anything).Return(commitMeta(), nil)
	s.env.OnActivity(s.a.FindRelease, mock.Anything, mock.Anything).Return(nil, nil)
	attempts := 0
	s.env.OnActivity(s.a.BuildArtifact, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.BuildArtifactInput) (*activities.BuildArtifactResult, error) {
		attempts++
		if attempts < 3 {
			return nil, errors.New("store: connection reset")
		}
		return built(), nil
	})
	s.env.OnActivity(s.a.PublishRelease, mock.Anything, mock.Anything).Return(nil)
	s.env.ExecuteWorkflow(workflows.BuildRelease, input())
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal(3, attempts)
}

func (s *buildSuite) TestRetriesAreBounded() {
	s.env.OnActivity(s.a.ResolveCommit, mock.Anything, mock.Anything).Return(commitMeta(), nil)
	s.env.OnActivity(s.a.FindRelease, mock.Anything, mock.Anything).Return(nil, nil)
	attempts := 0
	s.env.OnActivity(s.a.BuildArtifact, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.BuildArtifactInput) (*activities.BuildArtifactResult, error) {
		attempts++
		return nil, errors.New("docker engine went away")
	})
	s.env.ExecuteWorkflow(workflows.BuildRelease, input())
	s.Require().Error(s.env.GetWorkflowError())
	s.Equal(3, attempts)
}

func (s *buildSuite) TestStoredReleaseIsReturnedWithoutRebuilding() {
	stored := &release.Meta{ID: "42-3f9a2c1", App: "shop", Commit: sha, BuildNumber: 42, Artifact: release.Artifact{URI: "file:///x", SHA256: "aa"}}
	s.env.OnActivity(s.a.ResolveCommit, mock.Anything, mock.Anything).Return(commitMeta(), nil)
	s.env.OnActivity(s.a.FindRelease, mock.Anything, mock.Anything).Return(stored, nil)
	s.env.ExecuteWorkflow(workflows.BuildRelease, input())
	s.Require().NoError(s.env.GetWorkflowError())
	var m release.Meta
	s.Require().NoError(s.env.GetWorkflowResult(&m))
	s.Equal("aa", m.Artifact.SHA256)
}

func (s *buildSuite) TestUnknownCommitFailsFast() {
	attempts := 0
	s.env.OnActivity(s.a.ResolveCommit, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.ResolveInput) (*activities.CommitMeta, error) {
		attempts++
		return nil, temporal.NewNonRetryableApplicationError("commit not found", activities.ErrRefNotFound, nil)
	})
	s.env.ExecuteWorkflow(workflows.BuildRelease, input())
	s.Require().Error(s.env.GetWorkflowError())
	s.Equal(1, attempts)
}

func (s *buildSuite) TestRejectsShortCommit() {
	in := input()
	in.Commit = "3f9a2c1"
	s.env.ExecuteWorkflow(workflows.BuildRelease, in)
	err := s.env.GetWorkflowError()
	s.Require().Error(err)
	s.Contains(err.Error(), "full 40-character commit")
}

func TestBuildWorkflowIDIsPerCommit(t *testing.T) {
	require.Equal(t, "build/shop/"+sha, workflows.BuildWorkflowID("shop", "3F9A2C1E0B5D4C6A7F8E9D0C1B2A3F4E5D6C7B8A"))
}

func (s *buildSuite) TestAutoDeployStartsTheEnvironmentsDeploy() {
	s.env.RegisterWorkflow(workflows.ZeroDowntimeDeploy)
	s.env.OnActivity(s.a.ResolveCommit, mock.Anything, mock.Anything).Return(commitMeta(), nil)
	s.env.OnActivity(s.a.FindRelease, mock.Anything, mock.Anything).Return(nil, nil)
	s.env.OnActivity(s.a.BuildArtifact, mock.Anything, mock.Anything).Return(built(), nil)
	s.env.OnActivity(s.a.PublishRelease, mock.Anything, mock.Anything).Return(nil)
	var got workflows.DeployInput
	s.env.OnWorkflow(workflows.ZeroDowntimeDeploy, mock.Anything, mock.Anything).Return(func(_ workflow.Context, in workflows.DeployInput) (*catalog.Deploy, error) {
		got = in
		return &catalog.Deploy{Outcome: catalog.OutcomeSucceeded}, nil
	})
	in := input()
	in.AutoDeploy = true
	s.env.ExecuteWorkflow(workflows.BuildRelease, in)
	s.Require().NoError(s.env.GetWorkflowError())
	s.Equal("production", got.Env)
	s.Equal("42-3f9a2c1", got.ReleaseID)
	s.Equal("deploy", got.Kind)
}
