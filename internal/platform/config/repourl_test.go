package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/platform/config"
)

func appWithRepo(repo string) string {
	return "apps:\n  shop:\n    repo: " + repo + "\n    type: magento2\n    webhook: {provider: github, secret: file:shop-webhook}\n    environments:\n      production: {branch: main}\n"
}

// A repo written without a scheme was taken for a directory next to the
// config, so webhooks never matched and builds failed far from the cause.
func TestRepoWithoutSchemeIsRefusedWithAHint(t *testing.T) {
	for _, repo := range []string{"github.com/acme/shop", "gitlab.example.com/group/sub/shop.git", "bitbucket.org:7999/acme/shop"} {
		_, err := parse(t, appWithRepo(repo))
		require.Error(t, err, repo)
		require.Contains(t, err.Error(), "apps.shop.repo")
		require.Contains(t, err.Error(), "has no scheme")
		require.Contains(t, err.Error(), "did you mean https://"+repo+"?")
	}
}

func TestRepoFormsStillAccepted(t *testing.T) {
	for _, repo := range []string{
		"git@github.com:acme/shop.git", "ssh://git@github.com/acme/shop.git", "https://github.com/acme/shop",
		"file:///srv/git/shop.git", "/srv/git/shop.git", "./repos/shop", "repos.d/shop", "mirror/shop.git",
	} {
		c, err := parse(t, appWithRepo(repo))
		require.NoError(t, err, repo)
		if strings.HasPrefix(repo, "git@") || strings.Contains(repo, "://") {
			require.Equal(t, repo, c.Apps["shop"].Repo)
		}
	}
	// A directory that really is named like a host, next to the config.
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "github.com", "acme", "shop"), 0o755))
	p := filepath.Join(dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(p, []byte(appWithRepo("github.com/acme/shop")), 0o644))
	c, err := config.Load(p, false)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "github.com", "acme", "shop"), c.Apps["shop"].Repo)
}

func TestWebhookMaxAge(t *testing.T) {
	c, err := parse(t, "server: {webhook_max_age: 15m}\n"+appWithRepo("git@github.com:acme/shop.git"))
	require.NoError(t, err)
	require.Equal(t, "15m0s", c.Server.WebhookMaxAge.Duration.String())
	_, err = parse(t, "server: {webhook_max_age: -1m}\n"+appWithRepo("git@github.com:acme/shop.git"))
	require.ErrorContains(t, err, "server.webhook_max_age must be positive")
}
