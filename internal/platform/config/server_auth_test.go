package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProtectViewsDefault: a server reachable beyond loopback protects its
// pages unless the config says protect_views: false, which is then
// reported so `mageflow serve` can warn.
func TestProtectViewsDefault(t *testing.T) {
	for _, c := range []struct {
		listen, key            string
		protected, explicitOff bool
	}{
		{"127.0.0.1:8080", "", false, false},
		{"127.8.9.1:8080", "", false, false},
		{"localhost:8080", "", false, false},
		{"[::1]:8080", "", false, false},
		{"0.0.0.0:8080", "", true, false},
		{":8080", "", true, false},
		{"[::]:8080", "", true, false},
		{"10.0.0.5:8080", "", true, false},
		{"shop.example.com:8080", "", true, false},
		{"0.0.0.0:8080", "protect_views: false", false, true},
		{"127.0.0.1:8080", "protect_views: false", false, false},
		{"127.0.0.1:8080", "protect_views: true", true, false},
	} {
		yml := example + "server:\n  listen: \"" + c.listen + "\"\n"
		if c.key != "" {
			yml += "  auth: {" + c.key + "}\n"
		}
		cfg, err := parse(t, yml)
		require.NoError(t, err, c)
		p, off := cfg.Server.ViewsProtected()
		require.Equal(t, c.protected, p, "%+v", c)
		require.Equal(t, c.explicitOff, off, "%+v", c)
	}
}

func TestAllowSelfApprovalKey(t *testing.T) {
	cfg, err := parse(t, example+"server: {auth: {token: file:dash, allow_self_approval: true}}\n")
	require.NoError(t, err)
	require.True(t, cfg.Server.Auth.AllowSelfApproval)
	cfg, err = parse(t, example)
	require.NoError(t, err)
	require.False(t, cfg.Server.Auth.AllowSelfApproval, "self-approval must be off by default")
	_, err = parse(t, example+"server: {auth: {basic_user: Token, basic_password: file:pw}}\n")
	require.ErrorContains(t, err, "every token holder")
}
