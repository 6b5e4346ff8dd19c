package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// One refusal per validation section that TestErrorsNameFileLineAndHint,
// TestDockerGroupErrors and the hardening tests do not already cover, so
// splitting or reordering the checks cannot drop one unnoticed.
func TestEachSectionRefuses(t *testing.T) {
	app := "apps:\n  shop:\n    repo: /r\n    type: magento2\n"
	cases := []struct {
		name, yml string
		line      int
		want      []string
	}{
		{"temporal address", "temporal: {address: temporal}\n", 1, []string{`temporal.address "temporal" needs a host:port`, "e.g. 127.0.0.1:7233"}},
		{"artifacts dir and s3", "artifacts:\n  dir: ./a\n  s3: {bucket: b}\n", 2, []string{"artifacts.dir and artifacts.s3 are both set", "keep one"}},
		{"s3 endpoint", "artifacts:\n  s3: {bucket: b, endpoint: minio}\n", 2, []string{`artifacts.s3.endpoint "minio" is not a URL`}},
		{"server listen", "server:\n  listen: \"8080\"\n", 2, []string{`server.listen "8080" needs host:port`}},
		{"server inline token", "server:\n  auth: {token: hunter2hunter2}\n", 2, []string{"has no kind", "never the secret itself"}},
		{"server max body", "server:\n  max_body: -1\n", 2, []string{"server.max_body must be positive"}},
		{"lifecycle queue", "server:\n  lifecycle_sqs: {queue_url: mageflow-lifecycle}\n", 2, []string{`queue_url "mageflow-lifecycle" is not a queue URL`, "https://sqs."}},
		{"worker builds", "worker:\n  max_concurrent_builds: -2\n", 2, []string{"worker.max_concurrent_builds must be positive"}},
		{"git ssh key", "git:\n  ssh_key: env:SSH_KEY\n", 2, []string{"git.ssh_key must be a file: reference", "mode 0600"}},
		{"host name", "hosts:\n  Web1: {root: /srv}\n", 2, []string{`host name "Web1" is not usable in task queue names`}},
		{"empty host", "hosts:\n  web1:\n", 2, []string{`host "web1" is empty`}},
		{"group name and root", "groups:\n  web: {provider: aws, host: {}}\n", 2, []string{"groups.web.name is required", "groups.web.host.root is required"}},
		{"host and group", "hosts:\n  web: {root: /srv}\ngroups:\n  web: {provider: aws, name: asg, host: {root: /srv}}\n", 4, []string{`"web" is both a host and a group`}},
		{"schedule when", "schedules:\n  s: {action: build, app: shop, ref: main}\n" + app, 2, []string{"schedules.s needs exactly one of cron: and every:"}},
		{"schedule refresh", "schedules:\n  s: {every: 24h, action: refresh, group: web}\n", 2, []string{`schedules.s.group "web" is not declared in the groups section`}},
		{"schedule build", "schedules:\n  s: {every: 24h, action: build, app: shop}\n" + app, 2, []string{"schedules.s builds: it needs app: (a configured app) and ref:"}},
		{"schedule action", "schedules:\n  s: {every: 24h, action: deploy}\n", 2, []string{`schedules.s.action "deploy" is not known`, "refresh, build or harden"}},
		{"app name", "apps:\n  Shop:\n    repo: /r\n    type: magento2\n", 2, []string{`app name "Shop" is not usable`}},
		{"build network host", app + "    build: {network: host}\n", 5, []string{"build.network host would give builds every route"}},
		{"build jobs", app + "    build: {jobs: 65}\n", 5, []string{"apps.shop.build.jobs must be between 1 and 64"}},
		{"build timeout", app + "    build: {timeout: 30s}\n", 5, []string{"apps.shop.build.timeout 30s is too short"}},
		{"step dir", "apps:\n  shop:\n    repo: /r\n    type: custom\n    build: {steps: [{name: a, run: b, dir: ../x}]}\n", 5, []string{"apps.shop.build.steps[0].dir must stay inside the checkout"}},
		{"stores outside pwa", app + "    build: {stores: [{code: de}]}\n", 5, []string{"apps.shop.build.stores is only used by type pwastudio"}},
		{"shared outside release", app + "    shared: [../etc]\n", 5, []string{`apps.shop.shared entry "../etc" must be a relative path inside the release`}},
		{"unsigned webhook", app + "    webhook: {provider: github}\n", 5, []string{"apps.shop.webhook.secret is required", "unsigned webhooks are refused"}},
		{"environment approval", app + "    environments:\n      prod: {branch: main, approval: maybe}\n", 6, []string{`apps.shop.environments.prod.approval "maybe" is not known`}},
		{"environment url", app + "    environments:\n      prod: {branch: main, url: shop}\n", 6, []string{`apps.shop.environments.prod.url "shop" is not a URL`}},
		{"auto deploy nowhere", app + "    environments:\n      prod: {branch: main, auto_deploy: true}\n", 6, []string{"apps.shop.environments.prod.auto_deploy needs hosts"}},
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
			require.NotContains(t, msg, "hunter2hunter2", "errors must not echo a secret")
		})
	}
}
