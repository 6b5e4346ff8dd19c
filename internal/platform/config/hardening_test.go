package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The docs/hardening.md example loads as written.
const hardeningExample = `hosts:
  web1:
    root: /srv/mageflow
    url: http://10.0.0.5
    hardening:
      server_name: shop.example.com
      base_url: http://10.0.0.5:80
      basic_auth: {user: ops, password: file:m1-admin-pass, realm: Shop admin}
      staging_basic_auth: true
      staging_hosts: [staging.shop.example.com]
      admin_allow: [203.0.113.7, 10.0.0.0/8]
      admin_rate_per_minute: 10
      admin_logins_per_day: 50
      signatures: [/etc/mageflow/signatures]
      allowed_script_hosts: [js.stripe.com, "*.paypal.com"]
      known_admins: [owner, agency]
      deploy_user: deploy
      writable: [includes]
      nginx: {include_dir: /etc/nginx/mageflow, http_conf_dir: /etc/nginx/conf.d}
      php_fpm: {conf: /etc/php/8.2/fpm/php-fpm.conf, reload: [systemctl, reload, php8.2-fpm]}
      sshd: {drop_in_dir: /etc/ssh/sshd_config.d, reload: [systemctl, reload, ssh]}
      db: {host: 127.0.0.1:3306, name: shop, user: audit, password: env:SHOP_AUDIT_DB}
schedules:
  harden-web1:
    cron: "30 4 * * *"
    action: harden
    host: web1
    apply: true
`

func TestHardeningExampleLoads(t *testing.T) {
	c, err := parse(t, hardeningExample)
	require.NoError(t, err)
	h := c.Hosts["web1"].Hardening
	require.NotNil(t, h)
	require.Equal(t, "file:m1-admin-pass", h.BasicAuth.Password)
	require.Equal(t, []string{"systemctl", "reload", "php8.2-fpm"}, h.PHPFPM.Reload)
	require.Equal(t, "env:SHOP_AUDIT_DB", h.DB.Password)
	s := c.Schedules["harden-web1"]
	require.Equal(t, "web1", s.Host)
	require.True(t, s.Apply)
}

func TestHardeningRejectsInlineSecretsAndBadValues(t *testing.T) {
	for name, tc := range map[string]struct{ yml, want string }{
		"inline password": {`      basic_auth: {user: ops, password: hunter2}`, "has no kind"},
		"bad cidr":        {`      admin_allow: [10.0.0.0/33]`, "is not an IP or CIDR"},
		"relative path":   {`      nginx: {include_dir: etc/nginx}`, "must be an absolute path"},
		"bad base url":    {`      base_url: 10.0.0.5`, "is not an http(s) origin"},
		"staging no auth": {`      staging_basic_auth: true`, "needs basic_auth"},
		"db no host":      {`      db: {name: shop}`, "needs host: or socket:"},
		"unknown key":     {`      basic_auth_password: x`, "basic_auth_password"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, "hosts:\n  web1:\n    root: /srv/mageflow\n    hardening:\n"+tc.yml+"\n")
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "hunter2", "an inline secret is never echoed")
		})
	}
	_, err := parse(t, "hosts:\n  web1: {root: /srv/m}\nschedules:\n  h: {every: 24h, action: harden, host: web9}\n")
	require.ErrorContains(t, err, `host "web9" is not declared`)
}
