package dockerfleet_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/fleet"
	dockerfleet "github.com/mageflow/mageflow/internal/fleet/docker"
	"github.com/mageflow/mageflow/internal/platform/config"
)

func TestSpecFromConfig(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("/etc/mageflow/mageflow.yaml", []byte(`groups:
  web:
    provider: docker
    name: shop-web
    host: {root: /srv/mageflow}
    docker:
      max: 5
      desired: 2
      warm_pool: {min_size: 1, state: Hibernated}
      launch_hook_timeout: 15m
      env: {B: "2", A: "{{ID}}"}
      mounts: ["/etc/mageflow:/etc/mageflow:ro"]
      agent: ./bin/mageflow-agent
`))
	require.NoError(t, err)
	s, err := dockerfleet.SpecFromConfig(c.Groups["web"])
	require.NoError(t, err)
	require.Equal(t, "shop-web", s.Name)
	require.Equal(t, []int{0, 5, 2}, []int{s.Min, s.Max, s.Desired})
	require.Equal(t, config.DefaultInstanceImage, s.Image)
	require.Equal(t, &fleet.WarmPoolConfig{MinSize: 1, State: fleet.PoolHibernated}, s.WarmPool)
	require.Equal(t, &dockerfleet.Hook{Name: dockerfleet.LaunchHookName, Timeout: 15 * time.Minute, Default: fleet.Abandon}, s.LaunchHook)
	require.Equal(t, &dockerfleet.Hook{Name: dockerfleet.TerminateHookName, Timeout: 5 * time.Minute, Default: fleet.Continue}, s.TerminateHook)
	require.Equal(t, []string{"A={{ID}}", "B=2"}, s.Env)
	require.Equal(t, []string{"/etc/mageflow:/etc/mageflow:ro", "/etc/mageflow/bin/mageflow-agent:" + dockerfleet.AgentPath + ":ro"}, s.Mounts)

	_, err = dockerfleet.SpecFromConfig(&config.Group{Provider: "aws", Name: "x"})
	require.Error(t, err)
}
