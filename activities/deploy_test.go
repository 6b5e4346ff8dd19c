package activities_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// fakeFleet answers Describe with a fixed group; every other call fails so
// the test notices if planning tried to change the fleet.
type fakeFleet struct {
	fleet.Provider
	group *fleet.Group
	err   error
}

func (f fakeFleet) Describe(_ context.Context, name string) (*fleet.Group, error) {
	if f.err != nil {
		return nil, f.err
	}
	if name != f.group.Name {
		return nil, errors.New("unknown group " + name)
	}
	return f.group, nil
}

func planFixture(t *testing.T, f fakeFleet) (*activities.DeployActivities, string) {
	t.Helper()
	dir := t.TempDir()
	yml := `groups:
  web:
    provider: aws
    name: shop-web-asg
    region: eu-west-1
    host: {root: /srv/mageflow}
apps:
  shop:
    repo: /r
    type: magento2
    environments:
      production: {branch: main, group: web}
`
	p := filepath.Join(dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yml), 0o644))
	cfg, err := config.Load(p, false)
	require.NoError(t, err)
	st, err := store.NewLocal(cfg.Artifacts.Dir)
	require.NoError(t, err)
	require.NoError(t, catalog.Put(context.Background(), st, &release.Meta{ID: "3-abcdef0", App: "shop", Branch: "main", BuildNumber: 3}))
	d := &activities.DeployActivities{Config: cfg, Store: st, Fleet: func(context.Context, *config.Group) (fleet.Provider, error) { return f, nil }}
	return d, p
}

// An environment that names a group deploys to the group's in-service
// instances as they are when the deploy starts — not to warm-pool or
// launching ones.
func TestPlanDeployResolvesGroupInstances(t *testing.T) {
	d, _ := planFixture(t, fakeFleet{group: &fleet.Group{Name: "shop-web-asg", Instances: []fleet.Instance{
		{ID: "i-0b", LifecycleState: fleet.StateInService},
		{ID: "i-0a", LifecycleState: fleet.StateInService},
		{ID: "i-0c", LifecycleState: fleet.StatePendingWait},
		{ID: "i-0d", LifecycleState: fleet.StateWarmedStopped, InWarmPool: true},
		{ID: "i-0e", LifecycleState: fleet.StateTerminatingWait},
	}}})
	p, err := d.PlanDeploy(context.Background(), activities.DeployRequest{App: "shop", Env: "production", Kind: "deploy"})
	require.NoError(t, err)
	require.Equal(t, []string{"i-0a", "i-0b"}, p.Hosts)
	require.Equal(t, "3-abcdef0", p.Release.ID)
}

func TestPlanDeployGroupErrors(t *testing.T) {
	d, _ := planFixture(t, fakeFleet{group: &fleet.Group{Name: "shop-web-asg"}})
	_, err := d.PlanDeploy(context.Background(), activities.DeployRequest{App: "shop", Env: "production", Kind: "deploy"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae))
	require.True(t, ae.NonRetryable())
	require.Contains(t, err.Error(), "no in-service instances")

	// Throttling is retried by Temporal, not turned into a failure.
	d, _ = planFixture(t, fakeFleet{err: &fleet.Error{Op: "DescribeAutoScalingGroups", Class: fleet.ErrRetryable, Err: errors.New("Throttling")}})
	_, err = d.PlanDeploy(context.Background(), activities.DeployRequest{App: "shop", Env: "production", Kind: "deploy"})
	require.Error(t, err)
	require.False(t, errors.As(err, &ae) && ae.NonRetryable(), "a throttled describe must stay retryable: %v", err)
}

// An agent started with --group NAME --host <instance-id> runs with the
// group's host template.
func TestHostForAgentUsesGroupTemplate(t *testing.T) {
	_, p := planFixture(t, fakeFleet{group: &fleet.Group{Name: "shop-web-asg"}})
	cfg, err := config.Load(p, false)
	require.NoError(t, err)
	h, err := cfg.HostForAgent("i-0abc", "web")
	require.NoError(t, err)
	require.Equal(t, "/srv/mageflow", h.Root)
	require.Equal(t, "http://127.0.0.1", h.URL, "an instance's agent checks its own web server")
	require.Same(t, h, cfg.Hosts["i-0abc"])
	_, err = cfg.HostForAgent("i-0abc", "nope")
	require.ErrorContains(t, err, `group "nope" is not declared`)
	_, err = cfg.HostForAgent("web9", "")
	require.ErrorContains(t, err, `host "web9" is not declared`)
}

// Production runs build 7 of main. PlanDeploy tells an automatic deploy of
// an older (or the same) release to skip, with the reason and the command
// to do it by hand; a newer one, a person's deploy and a rollback proceed.
func TestPlanDeployAutoDeployNeverGoesBackwards(t *testing.T) {
	d, _ := planFixture(t, fakeFleet{group: &fleet.Group{Name: "shop-web-asg", Instances: []fleet.Instance{{ID: "i-0a", LifecycleState: fleet.StateInService}}}})
	ctx := context.Background()
	rel := func(n int, c string) *release.Meta {
		return &release.Meta{ID: release.NewID(n, c), App: "shop", Branch: "main", BuildNumber: n, Commit: c + "000000000000000000000000000000000", ShortCommit: c}
	}
	for _, m := range []*release.Meta{rel(5, "5555555"), rel(7, "7777777"), rel(8, "8888888"), rel(7, "7aaaaaa")} {
		require.NoError(t, catalog.Put(ctx, d.Store, m))
	}
	require.NoError(t, catalog.PutEnv(ctx, d.Store, &catalog.EnvState{App: "shop", Env: "production", Current: "7-7777777", Release: rel(7, "7777777")}))
	auto := func(id string) activities.DeployRequest {
		return activities.DeployRequest{App: "shop", Env: "production", ReleaseID: id, Kind: "deploy", RequestedBy: "auto-deploy (build/shop/x)", Automatic: true}
	}
	skip := func(req activities.DeployRequest) string {
		t.Helper()
		p, err := d.PlanDeploy(ctx, req)
		require.NoError(t, err, "a skip is not a failure")
		require.Equal(t, req.ReleaseID, p.Release.ID)
		return p.Skip
	}

	require.Equal(t, "release 5-5555555 (build 5, commit 5555555) is older than the environment's current release 7-7777777 (build 7) on branch main; "+
		"auto-deploys never go backwards — deploy it by hand with `mageflow deploy --app shop --env production --release 5-5555555` if you mean to roll back",
		skip(auto("5-5555555")))
	require.Contains(t, skip(auto("7-7777777")), "is already the environment's current release")
	require.Contains(t, skip(auto("7-7aaaaaa")), "same build number, another commit")
	require.Empty(t, skip(auto("8-8888888")))

	// A BuildRelease from before the Automatic field: its requester says it.
	old := auto("5-5555555")
	old.Automatic = false
	require.Contains(t, skip(old), "is older than")

	// People may go back on purpose.
	require.Empty(t, skip(activities.DeployRequest{App: "shop", Env: "production", ReleaseID: "5-5555555", Kind: "deploy", RequestedBy: "ada"}))
	require.Empty(t, skip(activities.DeployRequest{App: "shop", Env: "production", ReleaseID: "5-5555555", Kind: "rollback", RequestedBy: "ada"}))

	// An environment state written before the release meta was recorded
	// in it: the current release is looked up in the catalog.
	require.NoError(t, catalog.PutEnv(ctx, d.Store, &catalog.EnvState{App: "shop", Env: "production", Current: "7-7777777"}))
	require.Contains(t, skip(auto("5-5555555")), "is older than")

	// Another branch's release is not compared (a hotfix deployed by hand).
	require.NoError(t, catalog.Put(ctx, d.Store, &release.Meta{ID: "9-9999999", App: "shop", Branch: "hotfix", BuildNumber: 9, Commit: "9999999"}))
	require.NoError(t, catalog.PutEnv(ctx, d.Store, &catalog.EnvState{App: "shop", Env: "production", Current: "9-9999999"}))
	require.Empty(t, skip(auto("5-5555555")))
}
