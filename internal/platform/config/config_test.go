package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mageflow/mageflow/internal/platform/config"
)

// The example from the product card must load as written.
const example = `temporal: {address: 127.0.0.1:7233, namespace: default}
artifacts: {dir: ./var/artifacts}          # or s3: {bucket, prefix, region, endpoint}
secrets: {dir: ./var/secrets}              # the secure config area
apps:
  shop:
    repo: file:///srv/git/shop.git         # any URL go-git can fetch: path, https, ssh
    type: magento2                          # magento2 | magento1 | pwastudio | nodejs | angular | custom
    build:
      builder: docker                       # docker | local
      env: {COMPOSER_MIRROR_PATH_REPOS: "1"}
      locales: [en_US, de_DE]
      themes: [Magento/luma]
    webhook: {provider: github, secret: file:shop-webhook}   # file: (in the secrets dir) or env:NAME
    environments:
      staging: {branch: develop}
      production: {branch: main}
`

func parse(t *testing.T, yml string) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "mageflow.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yml), 0o644))
	return config.Load(p, false)
}

func TestExampleLoads(t *testing.T) {
	c, err := parse(t, example)
	require.NoError(t, err)
	shop, err := c.App("shop")
	require.NoError(t, err)
	require.Equal(t, "magento2", shop.Type)
	require.Equal(t, []string{"en_US", "de_DE"}, shop.Build.Locales)
	require.Equal(t, "1", shop.Build.Env["COMPOSER_MIRROR_PATH_REPOS"])
	env, ok := shop.EnvironmentForBranch("main")
	require.True(t, ok)
	require.Equal(t, "production", env)
	require.Equal(t, map[string]string{"develop": "staging", "main": "production"}, shop.BranchEnvironments())
	// Relative paths resolve against the file's directory.
	require.True(t, filepath.IsAbs(c.Artifacts.Dir))
	require.Equal(t, filepath.Join(filepath.Dir(c.File), "var", "artifacts"), c.Artifacts.Dir)
	require.Equal(t, "mageflow", c.Temporal.TaskQueue)
	require.Equal(t, 5<<20, int(c.Server.MaxBody))
}

func TestShippedConfigLoads(t *testing.T) {
	for _, f := range []string{"../../../mageflow.yaml", "../../../mageflow.fleet.yaml"} {
		c, err := config.Load(f, false)
		require.NoError(t, err, f)
		_, err = c.App("demo")
		require.NoError(t, err, f)
	}
}

func TestBalancerPathsResolveAgainstTheConfigFile(t *testing.T) {
	c, err := parse(t, `hosts:
  lb: {root: ./lb, nginx: {prefix: ./web/lb, conf: ./web/lb/nginx.conf, pid_file: ./web/lb/nginx.pid, error_log: ./web/lb/error.log, binary: nginx}}
groups:
  web:
    provider: aws
    name: asg-web
    host: {root: /srv/mageflow}
    balancer: {host: lb, file: ./web/lb/upstream-web.conf, upstream: web}
`)
	require.NoError(t, err)
	dir := filepath.Dir(c.File)
	n := c.Hosts["lb"].Nginx
	require.Equal(t, filepath.Join(dir, "web/lb"), n.Prefix)
	require.Equal(t, filepath.Join(dir, "web/lb/nginx.conf"), n.Conf)
	require.Equal(t, filepath.Join(dir, "web/lb/nginx.pid"), n.PIDFile)
	require.Equal(t, filepath.Join(dir, "web/lb/error.log"), n.ErrorLog)
	require.Equal(t, "nginx", n.Binary, "a binary name is looked up on PATH, not resolved")
	require.Equal(t, filepath.Join(dir, "web/lb/upstream-web.conf"), c.Groups["web"].Balancer.File)
	require.Equal(t, "/srv/mageflow", c.Groups["web"].Host.Root)
}

func TestErrorsNameFileLineAndHint(t *testing.T) {
	cases := []struct {
		name, yml string
		line      int
		want      []string
	}{
		{"unknown top key", "temporal: {address: a:1}\nartifact: {dir: x}\n", 2, []string{`unknown key "artifact"`, `did you mean "artifacts"?`}},
		{"unknown nested key", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    build:\n      buidler: docker\n", 6, []string{`unknown key "buidler" in apps.shop.build`, `"builder"`}},
		{"bad type", "apps:\n  shop:\n    repo: /r\n    type: wordpress\n", 4, []string{`type "wordpress" is not a known app type`, "magento2"}},
		{"bad builder", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    build: {builder: podman}\n", 5, []string{`builder "podman"`, "docker or local"}},
		{"inline secret", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    webhook: {provider: github, secret: hunter2hunter2}\n", 5, []string{"secret reference", "file:NAME"}},
		{"wrong yaml type", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    build: {jobs: many}\n", 5, []string{"many"}},
		{"bad duration", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    build: {timeout: soon}\n", 5, []string{"not a duration"}},
		{"missing repo", "apps:\n  shop:\n    type: magento2\n", 2, []string{"apps.shop.repo is required"}},
		{"branch twice", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    environments:\n      a: {branch: main}\n      b: {branch: main}\n", 7, []string{`branch "main" feeds both a and b`}},
		{"bad locale", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    build: {locales: [english]}\n", 5, []string{`"english" is not a locale`}},
		{"custom without steps", "apps:\n  shop:\n    repo: /r\n    type: custom\n", 4, []string{"has no build.steps"}},
		{"s3 without bucket", "artifacts:\n  s3: {region: eu-west-1}\n", 2, []string{"bucket is required"}},
		{"not yaml", "apps: [\n", 0, []string{"not valid YAML"}},
		{"env names unknown host", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    environments:\n      prod: {branch: main, hosts: [web9]}\n", 6, []string{`names "web9", which is not declared under hosts:`}},
		{"host without root", "hosts:\n  web1: {url: http://10.0.0.5}\n", 2, []string{"hosts.web1.root is required"}},
		{"host bad url", "hosts:\n  web1: {root: /srv, url: nope}\n", 2, []string{`hosts.web1.url "nope" is not a URL`}},
		{"both reload methods", "hosts:\n  web1:\n    root: /srv\n    php_fpm: {service: php8.2-fpm, pid_file: /run/php.pid}\n", 4, []string{"service or pid_file, not both"}},
		{"keep too few", "hosts:\n  web1: {root: /srv}\napps:\n  shop:\n    repo: /r\n    type: magento2\n    environments:\n      prod: {branch: main, hosts: [web1], keep_releases: 1}\n", 8, []string{"keep_releases must be at least 2"}},
		{"inline env.php", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    environments:\n      prod: {branch: main, env_php: \"<?php return [];\"}\n", 6, []string{"secret reference"}},
		{"group and hosts", "hosts:\n  web1: {root: /srv}\ngroups:\n  web: {provider: aws, name: asg, host: {root: /srv}}\napps:\n  shop:\n    repo: /r\n    type: magento2\n    environments:\n      prod: {branch: main, hosts: [web1], group: web}\n", 10, []string{"names both hosts and a group"}},
		{"unknown group", "apps:\n  shop:\n    repo: /r\n    type: magento2\n    environments:\n      prod: {branch: main, group: web}\n", 6, []string{`group names "web", which is not declared under groups:`}},
		{"bad provider", "groups:\n  web: {provider: gcp, name: asg, host: {root: /srv}}\n", 2, []string{`provider "gcp" is not known`}},
		{"basic auth half", "server:\n  auth: {basic_user: ops}\n", 2, []string{"basic_user and basic_password go together"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.yml)
			require.Error(t, err)
			msg := err.Error()
			require.Contains(t, msg, "mageflow.yaml")
			if tc.line > 0 {
				require.Contains(t, msg, "mageflow.yaml:"+itoa(tc.line)+":", msg)
			}
			for _, w := range tc.want {
				require.Contains(t, msg, w)
			}
			require.NotContains(t, msg, "hunter2hunter2", "errors must not echo a secret")
		})
	}
}

func TestHostsAndDeploySettings(t *testing.T) {
	c, err := parse(t, `hosts:
  web1: {root: ./srv, url: "http://10.0.0.5", php_fpm: {pid_file: ./run/fpm.pid, socket: 127.0.0.1:9000}}
apps:
  shop:
    repo: /r
    type: magento2
    environments:
      production: {branch: main, hosts: [web1], approval: required, approval_timeout: 2h, shared_storage: true, url: "https://shop.example.com"}
`)
	require.NoError(t, err)
	h := c.Hosts["web1"]
	require.Equal(t, filepath.Join(filepath.Dir(c.File), "srv"), h.Root, "relative roots resolve against the config file")
	require.Equal(t, filepath.Join(filepath.Dir(c.File), "run", "fpm.pid"), h.PHPFPM.PIDFile)
	require.Equal(t, "127.0.0.1:9000", h.PHPFPM.Socket, "a TCP socket is left alone")
	e := c.Apps["shop"].Environments["production"]
	require.Equal(t, "2h0m0s", e.ApprovalTimeout.String())
	require.True(t, e.SharedStorage)
}

func TestAllErrorsAtOnce(t *testing.T) {
	_, err := parse(t, "tempral: {}\nserver: {lisen: x}\n")
	var es config.Errors
	require.True(t, errors.As(err, &es))
	require.Len(t, es, 2)
}

func TestMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"), false)
	require.Error(t, err)
	require.Contains(t, err.Error(), "--config")
	c, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"), true)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7233", c.Temporal.Address)
	_, err = c.App("shop")
	require.ErrorContains(t, err, "declares no apps")
}

func TestPathPrecedence(t *testing.T) {
	t.Setenv(config.EnvFile, "/etc/mageflow.yaml")
	require.Equal(t, "x.yaml", config.Path("x.yaml"))
	require.Equal(t, "/etc/mageflow.yaml", config.Path(""))
	t.Setenv(config.EnvFile, "")
	require.Equal(t, config.DefaultFile, config.Path(""))
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestDockerGroupDefaults(t *testing.T) {
	c, err := parse(t, `worker: {work_dir: ./var/work}
groups:
  web: {provider: docker, name: web, host: {root: /srv/mageflow}}
  big:
    provider: docker
    name: big
    host: {root: /srv/mageflow}
    docker:
      image: mageflow/fleet-big:v7
      network: shopnet
      state_dir: ./fleet-state
      min: 1
      max: 6
      desired: 2
      warm_pool: {min_size: 1, max_prepared_capacity: 4, reuse_on_scale_in: true}
      launch_hook_timeout: 20m
      terminate_hook_timeout: 90s
      mounts: ["./etc:/etc/mageflow:ro", "/srv/shared:/srv/mageflow/shop/shared"]
      env: {MAGEFLOW_CONFIG: /etc/mageflow/mageflow.yaml, WHO: "{{ID}}"}
      agent: ./bin/mageflow-worker
`)
	require.NoError(t, err)
	base := filepath.Dir(c.File)
	d := c.Groups["web"].Docker
	require.NotNil(t, d, "a docker group gets its defaults without a docker: block")
	require.Equal(t, config.DefaultInstanceImage, d.Image)
	require.Equal(t, config.DefaultFleetNetwork, d.Network)
	require.Equal(t, filepath.Join(base, "var", "work", "fleet"), d.StateDir, "shared with the control worker's work dir")
	require.Equal(t, 0, d.Min)
	require.Equal(t, 4, d.Max)
	require.Equal(t, 1, *d.Desired)
	require.Nil(t, d.WarmPool)
	require.Equal(t, config.DefaultLaunchHookTimeout, d.LaunchHookTimeout.Duration)
	require.Equal(t, config.DefaultTerminateHookTimeout, d.TerminateHookTimeout.Duration)

	b := c.Groups["big"].Docker
	require.Equal(t, "mageflow/fleet-big:v7", b.Image)
	require.Equal(t, "shopnet", b.Network)
	require.Equal(t, filepath.Join(base, "fleet-state"), b.StateDir)
	require.Equal(t, 2, *b.Desired)
	require.Equal(t, &config.DockerWarmPool{MinSize: 1, MaxPreparedCapacity: 4, State: "Stopped", ReuseOnScaleIn: true}, b.WarmPool)
	require.Equal(t, 20*time.Minute, b.LaunchHookTimeout.Duration)
	require.Equal(t, 90*time.Second, b.TerminateHookTimeout.Duration)
	require.Equal(t, []string{filepath.Join(base, "etc") + ":/etc/mageflow:ro", "/srv/shared:/srv/mageflow/shop/shared"}, b.Mounts)
	require.Equal(t, filepath.Join(base, "bin", "mageflow-worker"), b.Agent)
	require.Equal(t, "{{ID}}", b.Env["WHO"])

	zero, err := parse(t, "groups:\n  web:\n    provider: docker\n    name: web\n    host: {root: /srv}\n    docker: {desired: 0}\n")
	require.NoError(t, err)
	require.Equal(t, 0, *zero.Groups["web"].Docker.Desired, "an explicit desired: 0 is kept")
}

func TestDockerGroupErrors(t *testing.T) {
	group := func(docker string) string {
		return "groups:\n  web:\n    provider: docker\n    name: web\n    host: {root: /srv}\n    docker: " + docker + "\n"
	}
	cases := []struct {
		name, yml string
		line      int
		want      []string
	}{
		{"unknown key", group("{imgae: x}"), 6, []string{`unknown key "imgae" in groups.web.docker`, `"image"`}},
		{"bounds", group("{min: 3, max: 2}"), 6, []string{"0 <= min (3) <= desired"}},
		{"desired above max", group("{max: 2, desired: 5}"), 6, []string{"desired (5) <= max (2)"}},
		{"pool state", group("{warm_pool: {state: Sleeping}}"), 6, []string{`warm_pool.state "Sleeping" is not known`, "Hibernated"}},
		{"pool sizes", group("{warm_pool: {min_size: -1}}"), 6, []string{"must not be negative"}},
		{"prepared below desired", group("{desired: 3, warm_pool: {max_prepared_capacity: 2}}"), 6, []string{"below the desired capacity"}},
		{"hook too long", group("{launch_hook_timeout: 3h}"), 6, []string{"launch_hook_timeout 3h0m0s is out of range", "2h"}},
		{"hook too short", group("{terminate_hook_timeout: 1s}"), 6, []string{"terminate_hook_timeout 1s is out of range"}},
		{"bad mount", group("{mounts: [\"/a:relative\"]}"), 6, []string{`mounts entry "/a:relative"`}},
		{"bad mount mode", group("{mounts: [\"/a:/b:rx\"]}"), 6, []string{"not src:dst[:ro]"}},
		{"bad env", group("{env: {\"BAD-KEY\": x}}"), 6, []string{`env key "BAD-KEY"`}},
		{"bad network", group("{network: \"Not OK\"}"), 6, []string{"not a Docker network name"}},
		{"docker on aws", "groups:\n  web:\n    provider: aws\n    name: web\n    host: {root: /srv}\n    docker: {max: 2}\n", 6, []string{"docker is set but the provider is \"aws\""}},
		{"bad group name", "groups:\n  web:\n    provider: docker\n    name: Web_ASG\n    host: {root: /srv}\n", 4, []string{`name "Web_ASG" cannot name containers`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.yml)
			require.Error(t, err)
			msg := err.Error()
			require.Contains(t, msg, "mageflow.yaml:"+itoa(tc.line)+":", msg)
			for _, w := range tc.want {
				require.Contains(t, msg, w)
			}
		})
	}
}

func TestAgentFindsGroupByProviderName(t *testing.T) {
	c, err := parse(t, "groups:\n  web: {provider: docker, name: shop-asg, host: {root: /srv/mageflow}}\n")
	require.NoError(t, err)
	for _, name := range []string{"web", "shop-asg"} {
		k, ok := c.GroupKey(name)
		require.True(t, ok, name)
		require.Equal(t, "web", k)
		h, err := c.HostForAgent("i-0123456789", name)
		require.NoError(t, err)
		require.Equal(t, "/srv/mageflow", h.Root)
	}
	_, ok := c.GroupKey("nope")
	require.False(t, ok)
	_, err = c.HostForAgent("i-0123456789", "nope")
	require.ErrorContains(t, err, "not declared under groups")
}
