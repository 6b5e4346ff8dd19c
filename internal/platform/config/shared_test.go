package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/platform/config"
)

func TestSharedPathsStayOutOfArtifacts(t *testing.T) {
	require.Equal(t, []string{"pub/media", "var", "app/etc/env.php", "pub/sitemaps"},
		(&config.App{Type: "magento2", Shared: []string{"pub/sitemaps/"}}).SharedPaths())
	require.Equal(t, []string{"media", "var", "app/etc/local.xml"}, (&config.App{Type: "magento1"}).SharedPaths())
	require.Empty(t, (&config.App{Type: "nodejs"}).SharedPaths())
}
