// Package config loads and validates mageflow.yaml, the one file an operator
// writes. Loading is strict on purpose: a typo in a deploy tool's config
// silently falls back to a default and bites in production, so an unknown key
// or an invalid value is an error naming the file, the line and a fix.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"
)

// DefaultFile is used when neither --config nor MAGEFLOW_CONFIG names a file.
const DefaultFile = "mageflow.yaml"

// EnvFile names the environment variable that points at the config file.
const EnvFile = "MAGEFLOW_CONFIG"

// Config is the whole of mageflow.yaml after defaults are applied and
// relative paths are made absolute (relative to the file's directory).
type Config struct {
	Temporal  Temporal             `yaml:"temporal"`
	Artifacts Artifacts            `yaml:"artifacts"`
	Secrets   Secrets              `yaml:"secrets"`
	Codec     Codec                `yaml:"codec"`
	Server    Server               `yaml:"server"`
	Worker    Worker               `yaml:"worker"`
	Git       Git                  `yaml:"git"`
	Hosts     map[string]*Host     `yaml:"hosts"`
	Groups    map[string]*Group    `yaml:"groups"`
	Schedules map[string]*Schedule `yaml:"schedules"`
	Apps      map[string]*App      `yaml:"apps"`

	// File is the path the config was read from ("" when built from defaults).
	File string `yaml:"-"`
}

// Temporal holds the defaults for the Temporal client. The standard
// TEMPORAL_* environment variables (envconfig) take precedence over them.
type Temporal struct {
	Address   string `yaml:"address"`
	Namespace string `yaml:"namespace"`
	TaskQueue string `yaml:"task_queue"`
	// UIURL is where operators open the Web UI; used for links only.
	UIURL string `yaml:"ui_url"`
}

// Artifacts says where release artifacts live: a local folder by default, S3
// when s3 is set.
type Artifacts struct {
	Dir string `yaml:"dir"`
	S3  *S3    `yaml:"s3"`
}

// S3 configures an S3 (or S3-compatible) artifact store. Credentials come
// from the default AWS chain (env, shared config, instance role).
type S3 struct {
	Bucket    string `yaml:"bucket"`
	Prefix    string `yaml:"prefix"`
	Region    string `yaml:"region"`
	Endpoint  string `yaml:"endpoint"`
	PathStyle bool   `yaml:"path_style"`
}

// Secrets is the secure config area: secret references of the form
// "file:NAME" resolve to files in Dir.
type Secrets struct {
	Dir string `yaml:"dir"`
}

// Codec configures payload encryption. KeyEnv, when that variable is set,
// wins over KeyFile. Both may hold several keys (one per line): the first
// encrypts, all decrypt, which is how keys are rotated.
type Codec struct {
	KeyFile string `yaml:"key_file"`
	KeyEnv  string `yaml:"key_env"`
	// Disabled turns encryption off; only for debugging a dev server.
	Disabled bool `yaml:"disabled"`
}

// Server configures `mageflow serve`.
type Server struct {
	Listen string `yaml:"listen"`
	// PublicURL is how browsers reach this server (codec endpoint for the UI).
	PublicURL string `yaml:"public_url"`
	// MaxBody bounds webhook bodies, in bytes.
	MaxBody int64 `yaml:"max_body"`
	// WebhookMaxAge refuses deliveries of pushes older than this (GitHub's
	// signed repository.pushed_at); 0 means the server's default, 1h.
	WebhookMaxAge Duration `yaml:"webhook_max_age"`
	Auth          Auth     `yaml:"auth"`
	// LifecycleToken is the secret reference of the bearer token that
	// EventBridge (API destination) sends to /hooks/aws-lifecycle.
	LifecycleToken string `yaml:"lifecycle_token"`
	// LifecycleSQS, when set, makes `mageflow serve` long-poll an SQS queue
	// of lifecycle events too.
	LifecycleSQS *LifecycleSQS `yaml:"lifecycle_sqs"`
}

// LifecycleSQS is the SQS queue EventBridge delivers lifecycle events to.
type LifecycleSQS struct {
	QueueURL          string `yaml:"queue_url"`
	Region            string `yaml:"region"`
	Endpoint          string `yaml:"endpoint"`
	VisibilityTimeout int32  `yaml:"visibility_timeout"`
}

// Auth protects the dashboard's actions (deploy, approve, rollback). Without
// it those actions are refused.
type Auth struct {
	// Token is the secret reference of the bearer token / login password.
	Token string `yaml:"token"`
	// BasicUser and BasicPassword (a secret reference) enable basic auth.
	BasicUser     string `yaml:"basic_user"`
	BasicPassword string `yaml:"basic_password"`
	// ProtectViews requires authentication for the pages too. Unset, it is
	// on whenever server.listen is not a loopback address (see
	// Server.ViewsProtected).
	ProtectViews *bool `yaml:"protect_views"`
	// AllowSelfApproval lets whoever requested a deploy to an environment
	// with `approval: required` approve it too. Off by default.
	AllowSelfApproval bool `yaml:"allow_self_approval"`
}

// ViewsProtected resolves protect_views: an explicit value wins; unset, the
// pages are protected unless the server listens on loopback only.
// explicitOff reports `protect_views: false` on a non-loopback listen, which
// the server warns about at start.
func (s Server) ViewsProtected() (protected, explicitOff bool) {
	loopback := IsLoopbackListen(s.Listen)
	if p := s.Auth.ProtectViews; p != nil {
		return *p, !*p && !loopback
	}
	return !loopback, false
}

// IsLoopbackListen reports whether a listen address (host:port) accepts
// connections from this machine only: 127.0.0.0/8, ::1 or localhost. An
// empty host (":8080") listens everywhere.
func IsLoopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Worker configures mageflow-worker.
type Worker struct {
	MetricsListen string `yaml:"metrics_listen"`
	WorkDir       string `yaml:"work_dir"`
	// MaxConcurrentBuilds bounds builds running at once on one worker.
	MaxConcurrentBuilds int `yaml:"max_concurrent_builds"`
}

// Git configures the mirror cache.
type Git struct {
	CacheDir string `yaml:"cache_dir"`
	// SSHKey is a secret reference to a private key for ssh:// repositories.
	SSHKey string `yaml:"ssh_key"`
	// Token is a secret reference to an HTTPS token (basic auth password).
	Token string `yaml:"token"`
}

// App is one store mageflow builds and deploys.
type App struct {
	Repo         string                  `yaml:"repo"`
	Type         string                  `yaml:"type"`
	Build        Build                   `yaml:"build"`
	Webhook      *Webhook                `yaml:"webhook"`
	Environments map[string]*Environment `yaml:"environments"`
	// Shared lists extra paths kept out of the artifact (they live in the
	// host's shared folder), on top of the recipe's defaults.
	Shared []string `yaml:"shared"`

	Name string `yaml:"-"`
}

// Build configures how an app is built.
type Build struct {
	Builder string `yaml:"builder"`
	Image   string `yaml:"image"`
	// Network is the Docker network builds run on: "none" (default, no
	// route anywhere) or a network you created that reaches only your
	// package mirrors (composer, npm) and never production services.
	Network     string            `yaml:"network"`
	CacheVolume string            `yaml:"cache_volume"`
	Env         map[string]string `yaml:"env"`
	Locales     []string          `yaml:"locales"`
	Themes      []string          `yaml:"themes"`
	Jobs        int               `yaml:"jobs"`
	Magepack    bool              `yaml:"magepack"`
	Script      string            `yaml:"script"`
	Stores      []Store           `yaml:"stores"`
	Steps       []Step            `yaml:"steps"`
	Timeout     Duration          `yaml:"timeout"`
}

// Store is one PWA Studio store view built into its own folder.
type Store struct {
	Code     string `yaml:"code"`
	Website  string `yaml:"website"`
	Currency string `yaml:"currency"`
}

// Step is one step of a custom recipe.
type Step struct {
	Name string `yaml:"name"`
	Run  string `yaml:"run"`
	Dir  string `yaml:"dir"`
}

// Webhook configures push webhooks for an app.
type Webhook struct {
	Provider string `yaml:"provider"`
	Secret   string `yaml:"secret"`
}

// Environment is a deploy target fed by one branch.
type Environment struct {
	Branch     string `yaml:"branch"`
	AutoDeploy bool   `yaml:"auto_deploy"`
	Approval   string `yaml:"approval"`
	// ApprovalTimeout bounds the wait for `mageflow approve` (default 24h).
	ApprovalTimeout Duration `yaml:"approval_timeout"`
	// Hosts are the app servers (names from the hosts: section).
	Hosts []string `yaml:"hosts"`
	// Group names an autoscaling group (from the groups: section) instead
	// of a host list.
	Group string `yaml:"group"`
	// URL is the environment's public URL (through the load balancer).
	URL string `yaml:"url"`
	// EnvPHP is the secret reference of app/etc/env.php (Magento 1:
	// app/etc/local.xml) installed into every release.
	EnvPHP string `yaml:"env_php"`
	// Config is the secret reference of a JSON object of config paths to
	// values applied with bin/magento config:set (and config:sensitive:set
	// for paths listed in SensitiveConfig).
	Config          string   `yaml:"config"`
	SensitiveConfig []string `yaml:"sensitive_config"`
	// KeepReleases per host (default 5); current and the one before it are
	// never removed.
	KeepReleases int `yaml:"keep_releases"`
	// HealthPaths must answer 200 and serve the new release (default "/").
	HealthPaths []string `yaml:"health_paths"`
	// WarmPaths are requested on every host after the switch.
	WarmPaths []string `yaml:"warm_paths"`
	// Writable lists extra paths the PHP user may write besides var/ and
	// pub/media (Magento 1: media/).
	Writable []string `yaml:"writable"`
	// SharedStorage: every host mounts the same <root> (NFS). The release
	// is prepared, switched and pruned once, through the first host's
	// agent; every host reloads PHP, warms and is health-checked.
	SharedStorage bool `yaml:"shared_storage"`
}

// Schedule is a Temporal Schedule `mageflow schedule apply` keeps in sync:
// a recurring image refresh or build. Overlapping runs are skipped.
type Schedule struct {
	// Cron is a cron expression ("0 3 * * 1"), or Every an interval.
	Cron  string   `yaml:"cron"`
	Every Duration `yaml:"every"`
	// Action is refresh (Group, Image, Batch) or build (App, Ref).
	Action string `yaml:"action"`
	Group  string `yaml:"group"`
	// Image "" means: take a new image from a running instance first.
	Image string `yaml:"image"`
	Batch int    `yaml:"batch"`
	App   string `yaml:"app"`
	Ref   string `yaml:"ref"`
	// Host and Apply: action harden audits (and with Apply fixes) a host.
	Host  string `yaml:"host"`
	Apply bool   `yaml:"apply"`
	// Paused schedules are kept but do not fire.
	Paused bool `yaml:"paused"`
}

// Group is an autoscaling group of app servers. An environment that names
// it deploys to the group's in-service instances as they are when the deploy
// starts; each instance runs `mageflow-agent --group NAME --host
// <instance-id>`, configured by Host (the template every instance shares).
type Group struct {
	// Provider is aws (EC2 Auto Scaling) or docker (local model).
	Provider string `yaml:"provider"`
	// Name is the group's name at the provider (the ASG name).
	Name     string `yaml:"name"`
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
	// Host is every instance's host config; url defaults to
	// http://127.0.0.1 (the agent checks its own instance).
	Host Host `yaml:"host"`
	// Balancer is the nginx host (running an agent) that owns the group's
	// upstream, and the port members serve on.
	Balancer Balancer `yaml:"balancer"`
	// Docker shapes a provider: docker group (the local model of an Auto
	// Scaling group, internal/fleet/docker); defaults apply when omitted.
	Docker *DockerGroup `yaml:"docker"`
}

// DockerGroup is what the docker fleet provider needs to stand in for an
// Auto Scaling group, its launch template and its lifecycle hooks.
type DockerGroup struct {
	// Image is launch template version 1 (default mageflow/instance:bookworm,
	// built by internal/fleet/docker/image/build.sh).
	Image string `yaml:"image"`
	// Network is the bridge network instances join (default mageflow-fleet).
	Network string `yaml:"network"`
	// StateDir holds the fleet's state, shared by every process that acts on
	// the group (default <worker.work_dir>/fleet).
	StateDir string `yaml:"state_dir"`
	// Min, Max and Desired are the group's bounds and initial capacity
	// (defaults 0, 4, 1).
	Min     int  `yaml:"min"`
	Max     int  `yaml:"max"`
	Desired *int `yaml:"desired"`
	// WarmPool, when set, keeps stopped instances ready to start.
	WarmPool *DockerWarmPool `yaml:"warm_pool"`
	// LaunchHookTimeout and TerminateHookTimeout are the hooks' heartbeat
	// timeouts (defaults 10m and 5m; at most 2h, as on AWS). The launch
	// hook abandons on expiry, the terminate hook continues.
	LaunchHookTimeout    Duration `yaml:"launch_hook_timeout"`
	TerminateHookTimeout Duration `yaml:"terminate_hook_timeout"`
	// Mounts are bind mounts "src:dst[:ro]"; a relative src is relative to
	// this file.
	Mounts []string `yaml:"mounts"`
	// Env is set in every instance; "{{ID}}" becomes the instance id.
	Env map[string]string `yaml:"env"`
	// Agent is the static (CGO_ENABLED=0) mageflow-worker mounted at
	// /opt/mageflow/mageflow-agent; empty mounts none.
	Agent string `yaml:"agent"`
}

// DockerWarmPool is a docker group's warm pool.
type DockerWarmPool struct {
	MinSize int `yaml:"min_size"`
	// MaxPreparedCapacity caps group plus pool (default: max).
	MaxPreparedCapacity int `yaml:"max_prepared_capacity"`
	// State is Stopped (default), Running or Hibernated.
	State          string `yaml:"state"`
	ReuseOnScaleIn bool   `yaml:"reuse_on_scale_in"`
}

// Docker fleet defaults.
const (
	DefaultInstanceImage        = "mageflow/instance:bookworm"
	DefaultFleetNetwork         = "mageflow-fleet"
	DefaultLaunchHookTimeout    = 10 * time.Minute
	DefaultTerminateHookTimeout = 5 * time.Minute
)

// Balancer names the load balancer of a group: the host whose agent owns
// the group's nginx upstream include.
type Balancer struct {
	Host string `yaml:"host"`
	// Port members serve on (default 80).
	Port int `yaml:"port"`
	// File is the include nginx reads; Upstream the upstream's name in it.
	File     string `yaml:"file"`
	Upstream string `yaml:"upstream"`
	// VerifyURL is served by the same include on loopback; after a reload
	// it must list exactly the new members (one port per group).
	VerifyURL string `yaml:"verify_url"`
	Keepalive int    `yaml:"keepalive"`
}

// Host is one app server running a mageflow agent.
type Host struct {
	// Root holds <root>/<app>/{releases,shared,current}.
	Root string `yaml:"root"`
	// URL reaches this host's web server directly (warm-up, health).
	URL string `yaml:"url"`
	// Local hosts get their agent started by `mageflow dev`.
	Local bool `yaml:"local"`
	// DeployUser owns the code; PHPUser runs PHP and may write only the
	// writable paths. Empty: leave ownership alone (single-user hosts).
	DeployUser string  `yaml:"deploy_user"`
	PHPUser    string  `yaml:"php_user"`
	PHPFPM     PHPFPM  `yaml:"php_fpm"`
	Nginx      NginxOn `yaml:"nginx"`
	// MinFreeBytes the filesystem must keep after extracting a release
	// (default: 3× the artifact size).
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// JobsStop / JobsStart stop and start cron and queue consumers around
	// a database upgrade (shell commands run by the agent).
	JobsStop  string `yaml:"jobs_stop"`
	JobsStart string `yaml:"jobs_start"`
	// Hardening configures MagentoM1EOLHardening on this host (hardening.go).
	Hardening *Hardening `yaml:"hardening"`
}

// PHPFPM says how to reload PHP gracefully on a host.
type PHPFPM struct {
	// Service is a systemd unit reloaded with systemctl; PIDFile a master
	// pid file signalled with SIGUSR2. One of the two.
	Service string `yaml:"service"`
	PIDFile string `yaml:"pid_file"`
	// Config is the php-fpm main config, read to check process_control_timeout.
	Config string `yaml:"config"`
	// Socket is the pool's FastCGI socket (unix path or host:port), used to
	// reset OPcache when a reload would cut requests.
	Socket    string `yaml:"socket"`
	StatusURL string `yaml:"status_url"`
}

// NginxOn holds what the agent needs to know of the host's nginx.
type NginxOn struct {
	// MaintenanceBypass is the secret reference of the header value that
	// lets operators and health checks through maintenance.
	MaintenanceBypass string `yaml:"maintenance_bypass"`
	// MaintenanceAllow lists client IPs/CIDRs (operators) served normally
	// during maintenance.
	MaintenanceAllow []string `yaml:"maintenance_allow"`
	// Binary, Prefix, Conf, PIDFile and ErrorLog say how the agent tests
	// and reloads this host's nginx (balancer hosts); defaults are
	// Debian's.
	Binary   string `yaml:"binary"`
	Prefix   string `yaml:"prefix"`
	Conf     string `yaml:"conf"`
	PIDFile  string `yaml:"pid_file"`
	ErrorLog string `yaml:"error_log"`
	// Listen is where `mageflow dev` serves a local host ("127.0.0.1:8081").
	Listen string `yaml:"listen"`
}

// Duration is a time.Duration written as "90s", "20m", "1h".
type Duration struct{ time.Duration }

// Known values, used in validation and in hints.
var (
	AppTypes  = []string{"magento2", "magento1", "pwastudio", "nodejs", "angular", "custom"}
	Builders  = []string{"docker", "local"}
	Providers = []string{"github", "gitlab", "bitbucket"}
	Approvals = []string{"", "none", "required"}
)

// Path returns the config file to read: flag value, then $MAGEFLOW_CONFIG,
// then ./mageflow.yaml.
func Path(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(EnvFile); v != "" {
		return v
	}
	return DefaultFile
}

// Default returns the configuration used when no file exists: everything
// local under ./var, no apps.
func Default() *Config {
	c := &Config{Apps: map[string]*App{}}
	c.applyDefaults(".")
	return c
}

// App returns the named app or an error listing the configured ones.
func (c *Config) App(name string) (*App, error) {
	if a, ok := c.Apps[name]; ok && a != nil {
		return a, nil
	}
	names := c.AppNames()
	where := c.File
	if where == "" {
		where = "the configuration"
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("app %q is not configured: %s declares no apps; add it under the apps key", name, where)
	}
	return nil, fmt.Errorf("app %q is not configured in %s; configured apps: %s", name, where, strings.Join(names, ", "))
}

// AppNames returns the configured app names, sorted (deterministic output
// and iteration).
func (c *Config) AppNames() []string {
	names := make([]string, 0, len(c.Apps))
	for n := range c.Apps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// EnvironmentForBranch returns the environment a branch feeds, if any, taking
// environments in name order so the answer is stable.
func (a *App) EnvironmentForBranch(branch string) (string, bool) {
	names := make([]string, 0, len(a.Environments))
	for n := range a.Environments {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if e := a.Environments[n]; e != nil && e.Branch == branch {
			return n, true
		}
	}
	return "", false
}

// BranchEnvironments maps each configured branch to its environment.
func (a *App) BranchEnvironments() map[string]string {
	m := map[string]string{}
	for n, e := range a.Environments {
		if e == nil || e.Branch == "" {
			continue
		}
		if prev, ok := m[e.Branch]; !ok || n < prev {
			m[e.Branch] = n
		}
	}
	return m
}

// GroupKey returns the groups: key of a group named by its key or by its
// name at the provider (an instance's agent is started with the latter:
// the docker fleet passes MAGEFLOW_GROUP, EC2 user data the ASG name).
func (c *Config) GroupKey(name string) (string, bool) {
	if g := c.Groups[name]; g != nil {
		return name, true
	}
	keys := make([]string, 0, len(c.Groups))
	for k, g := range c.Groups {
		if g != nil && g.Name == name {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "", false
	}
	return keys[0], true
}

// HostForAgent returns the host config an agent runs with: a declared host,
// or, for an autoscaling instance (group set), a copy of the group's
// template registered under the instance's name so every host step finds it.
func (c *Config) HostForAgent(name, group string) (*Host, error) {
	if group == "" {
		h := c.Hosts[name]
		if h == nil {
			return nil, fmt.Errorf("host %q is not declared under hosts: in %s", name, c.File)
		}
		return h, nil
	}
	key, ok := c.GroupKey(group)
	if !ok {
		return nil, fmt.Errorf("group %q is not declared under groups: in %s", group, c.File)
	}
	h := c.Groups[key].Host
	if c.Hosts == nil {
		c.Hosts = map[string]*Host{}
	}
	c.Hosts[name] = &h
	return &h, nil
}
