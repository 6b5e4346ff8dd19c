package config

// The longer messages and hints of validation, named so the checks stay
// readable. Users and tests match on these words: change them with care.
// Format verbs are filled in the order the names say.
const (
	// Load.
	msgReadConfig = "read config: %w (create it from the example in docs/configuration.md, or pass --config FILE / set %s)"
	hintYAMLType  = "see docs/configuration.md for the expected type"

	// Secret references (secret values are never written inline).
	hintSecretRef        = "write file:NAME or env:NAME"
	hintSecretRefNoValue = "write file:NAME or env:NAME, never the secret itself"
	hintSecretInDir      = "write file:NAME (a file in secrets.dir) or env:NAME"
	hintSecretInDirNoVal = "write file:NAME (a file in secrets.dir) or env:NAME, never the secret itself"

	// server.
	msgTokenUser        = `server.auth.basic_user "token" is the name every token holder acts under`
	fmtQueueURL         = "server.lifecycle_sqs.queue_url %q is not a queue URL"
	hintQueueURL        = "e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/mageflow-lifecycle"
	hintWebhookMaxAge   = "a duration such as 1h; deliveries of older pushes are refused"
	msgGitSSHKeyRef     = "git.ssh_key must be a file: reference"
	hintGitSSHKeyRef    = "put the private key (mode 0600) in secrets.dir and write file:NAME"
	hintArtifactsDirAnd = "keep one: dir for a local folder, s3 for a bucket"
	fmtS3Endpoint       = "artifacts.s3.endpoint %q is not a URL"

	// hosts and groups.
	fmtHostName      = "host name %q is not usable in task queue names"
	hintHostRoot     = "e.g. /srv/mageflow: releases live under <root>/<app>/"
	hintHostRootNone = "give root: (e.g. /srv/mageflow) for a host apps deploy to, or a hardening: block for a host `mageflow harden` only audits and fixes"
	fmtHostRootAbs   = "%s.root %q must be an absolute path"
	// fmtHostRootDeploy: host path, the environments deploying there.
	fmtHostRootDeploy = "%s.root is required: %s deploys to it (a hardening-only host may leave it out)"
	fmtHostRootNone   = "%s.root is required (the host has no hardening: block either)"
	fmtHostPHPFPM     = "%s.php_fpm: set service or pid_file, not both"
	hintHostPHPFPM    = "service reloads with systemctl, pid_file with SIGUSR2"
	hintGroupName     = "the autoscaling group's name at the provider"
	hintGroupHostDir  = "where releases live on every instance, e.g. /srv/mageflow"

	// schedules.
	fmtScheduleWhen   = "%s needs exactly one of cron: and every:"
	hintScheduleWhen  = `e.g. cron: "0 3 * * 1" (Mondays 03:00 UTC)`
	fmtScheduleGroup  = "%s.group %q is not declared in the groups section"
	hintScheduleGroup = "a refresh rolls a new image through a group"
	fmtScheduleBuild  = "%s builds: it needs app: (a configured app) and ref:"

	// apps.
	fmtAppName          = "app name %q is not usable in paths and workflow ids"
	hintAppRepo         = "a URL go-git can fetch: a path, file://, https:// or ssh://"
	fmtAppRepoScheme    = "%s.repo %q has no scheme, so git would read it as a local directory"
	fmtBuildNetworkHost = "%s.build.network host would give builds every route the build host has"
	hintBuildNetwork    = "create a network that reaches only your package mirrors and name it here"
	fmtBuildDockerOnly  = "%s.build.image and network apply to the docker builder only"
	fmtBuildEnvKey      = "%s.build.env key %q is not an environment variable name"
	fmtBuildStepDir     = "%s.build.steps[%d].dir must stay inside the checkout"
	fmtAppShared        = "%s.shared entry %q must be a relative path inside the release"
	hintWebhookSecret   = "unsigned webhooks are refused; write file:NAME or env:NAME"
	fmtWebhookProvider  = "%s.webhook.provider %q is not supported"

	// apps.<app>.environments.
	hintEnvBranch      = "the branch whose pushes build for this environment"
	fmtEnvBranchTwice  = "branch %q feeds both %s and %s"
	hintEnvHostsGroup  = "an environment deploys to a host list or to a group's instances"
	fmtEnvGroupUnknown = "%s.group names %q, which is not declared under groups:"
	hintEnvGroup       = "declare it with provider:, name: and host:"
	fmtEnvHostUnknown  = "%s.hosts names %q, which is not declared under hosts:"
	hintEnvURL         = "the environment's public URL, e.g. https://shop.example.com"
	hintEnvSecrets     = "env_php and config are secret references: file:NAME or env:NAME"
	hintKeepReleases   = "current and the one before it are always kept"

	// hosts.<host>.hardening and harden schedules.
	fmtHardeningBaseURL    = "%s.base_url %q is not an http(s) origin"
	hintHardeningBaseURL   = "e.g. http://127.0.0.1:80 (the origin, not the CDN)"
	hintHardeningPassword  = "write file:NAME (a 0600 file in secrets.dir) or env:NAME, never the password itself"
	hintHardeningStaging   = "add basic_auth: {user: ..., password: file:NAME}"
	msgHardeningNegative   = ": rates, days, concurrency and timeout must not be negative"
	fmtHardenScheduleHost  = "%s.host %q is not declared in the hosts section"
	hintHardenScheduleHost = "a harden schedule audits one host through its agent"

	// groups.<group>.docker.
	fmtDockerNotDocker    = "%s.docker is set but the provider is %q"
	hintDockerNotDocker   = "docker: applies to provider: docker only; remove it"
	hintDockerName        = "lower-case letters, digits, '.', '_' and '-'"
	fmtDockerBounds       = "%s needs 0 <= min (%d) <= desired (%d) <= max (%d) and max >= 1"
	fmtDockerPrepared     = "%s.warm_pool.max_prepared_capacity %d is below the desired capacity %d"
	hintDockerPrepared    = "it caps group plus pool; leave it out to use max"
	hintDockerHookTimeout = "between 30s and 2h, as Auto Scaling's heartbeat timeout"
	hintDockerMount       = "e.g. ./var/mageflow:/etc/mageflow:ro (dst absolute)"
	fmtDockerEnvKey       = "%s.env key %q is not an environment variable name"
	hintDockerStateDir    = "a directory every process acting on the group shares"
)
