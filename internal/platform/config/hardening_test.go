package config_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/platform/config"
)

// A host that is deployed to and hardened (root: and hardening:, Debian
// paths) loads; TestHardeningDocExample loads the docs' non-default one.
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

// docExample is the YAML block after the <!-- hardening-example --> marker
// in docs/hardening.md, and the whole document.
func docExample(t *testing.T) (yml, doc string) {
	t.Helper()
	data, err := os.ReadFile("../../../docs/hardening.md")
	require.NoError(t, err)
	doc = string(data)
	_, rest, ok := strings.Cut(doc, "<!-- hardening-example -->\n```yaml\n")
	require.True(t, ok, "docs/hardening.md lost its marked example")
	yml, _, ok = strings.Cut(rest, "```")
	require.True(t, ok)
	return yml, doc
}

// yamlKeys lists the yaml keys of a struct type, nested ones dotted
// (nginx.args), pointers and structs followed.
func yamlKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(config.Duration{}) {
			out = append(out, yamlKeys(ft, prefix+tag+".")...)
			continue
		}
		out = append(out, prefix+tag)
	}
	return out
}

// TestHardeningDocExample: the docs' example for a non-default layout loads
// as written on a host without root:, sets every hardening key, and the
// key table documents every key the code reads.
func TestHardeningDocExample(t *testing.T) {
	yml, doc := docExample(t)
	c, err := parse(t, yml)
	require.NoError(t, err)
	h := c.Hosts["shop1"]
	require.Empty(t, h.Root, "the example is a hardening-only host")
	hd := h.Hardening
	require.Equal(t, []string{"-c", "/opt/php/etc/php.ini"}, hd.PHPFPM.Args)
	require.Equal(t, []string{"-p", "/opt/nginx/", "-c", "/opt/nginx/conf/nginx.conf"}, hd.Nginx.Args)
	require.Equal(t, "/etc/ssh/sshd_config", hd.SSHD.Config)
	require.Equal(t, []string{"/etc/ssh/ssh_host_ed25519_key"}, hd.SSHD.HostKeys)
	keys := yamlKeys(reflect.TypeOf(config.Hardening{}), "")
	require.Greater(t, len(keys), 30, "the key walk is broken")
	var table []string
	_, tbl, _ := strings.Cut(doc, "Every key (`hosts.<name>.hardening.…`)")
	_, tbl, _ = strings.Cut(tbl, "\n|")
	tbl, _, _ = strings.Cut("|"+tbl, "\n\n")
	for _, line := range strings.Split(tbl, "\n") {
		if cell, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |"); ok {
			table = append(table, cell)
		}
	}
	cells := strings.Join(table, " ")
	for _, k := range keys {
		last := k[strings.LastIndex(k, ".")+1:]
		documented := strings.Contains(cells, "`"+k+"`") || (strings.Contains(k, ".") && strings.Contains(cells, "`."+last+"`")) ||
			strings.Contains(cells, "`"+last+"`")
		require.True(t, documented, "hardening key %s is not in docs/hardening.md's key table", k)
		top, _, _ := strings.Cut(k, ".")
		require.Contains(t, yml, "      "+top+":", "the example does not show %s", k)
	}
}

// TestHardeningOnlyHostNeedsNoRoot: root: is where releases go; a host only
// hardened may leave it out, a host an environment deploys to may not, and
// the errors say which case it is.
func TestHardeningOnlyHostNeedsNoRoot(t *testing.T) {
	_, err := parse(t, "hosts:\n  m1:\n    url: http://10.0.0.5\n    hardening: {server_name: shop.example.com}\n")
	require.NoError(t, err)
	_, err = parse(t, "hosts:\n  m1:\n    hardening: {}\n")
	require.NoError(t, err, "an empty hardening block is a hardening-only host with every default")

	deploy := "hosts:\n  web1:\n    hardening: {}\napps:\n  shop:\n    repo: /r\n    type: magento2\n    environments:\n      prod: {branch: main, hosts: [web1]}\n"
	_, err = parse(t, deploy)
	require.ErrorContains(t, err, "hosts.web1.root is required: apps.shop.environments.prod deploys to it")

	_, err = parse(t, "hosts:\n  web1:\n    url: http://10.0.0.5\n")
	require.ErrorContains(t, err, "hosts.web1.root is required (the host has no hardening: block either)")
	require.ErrorContains(t, err, "a hardening: block for a host `mageflow harden` only audits and fixes")

}
