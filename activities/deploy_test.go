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
	"github.com/mageflow/mageflow/internal/catalog"
	"github.com/mageflow/mageflow/internal/config"
	"github.com/mageflow/mageflow/internal/fleet"
	"github.com/mageflow/mageflow/internal/release"
	"github.com/mageflow/mageflow/internal/store"
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
