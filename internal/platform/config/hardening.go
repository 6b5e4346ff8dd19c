package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
)

// Hardening is a host's `hardening:` block: how MagentoM1EOLHardening
// (`mageflow harden --host H`) finds, audits, fixes and verifies the
// Magento 1 store the host serves. Everything is optional: topology comes
// from `nginx -T`, the PHP-FPM pool and app/etc/local.xml; these settings
// only say what a program cannot guess (the public name, credentials, who
// may reach the admin) or where a non-Debian host keeps its binaries.
//
// Secrets (basic-auth and database passwords) are references (file:NAME or
// env:NAME) resolved on the host's agent, never values: the workflow's
// history and the report never hold them.
type Hardening struct {
	// ServerName picks the store's vhost from `nginx -T` and is the Host
	// header verification sends (default: the first vhost whose root holds
	// app/Mage.php).
	ServerName string `yaml:"server_name"`
	// BaseURL is the origin verification connects to, bypassing any CDN or
	// WAF in front (default: the host's url:, else http://127.0.0.1).
	BaseURL string `yaml:"base_url"`
	// Root overrides the Magento root found from the vhost (not the
	// host's root:, which is where deployed releases go and which a
	// hardening-only host may leave out).
	Root string `yaml:"root"`
	// StateDir keeps what --apply must remember on the host: the forensic
	// snapshots taken before any change, forensics/<target>/<time>.json,
	// 0600, written once and never replaced (default /var/lib/mageflow/harden).
	StateDir string `yaml:"state_dir"`
	// BasicAuth protects the admin (and, with StagingBasicAuth, staging
	// vhosts) in front of PHP.
	BasicAuth *HardeningAuth `yaml:"basic_auth"`
	// StagingBasicAuth also puts BasicAuth in front of every staging vhost.
	StagingBasicAuth bool `yaml:"staging_basic_auth"`
	// StagingHosts are staging/dev names served by this nginx (besides the
	// ones discovery recognises by name).
	StagingHosts []string `yaml:"staging_hosts"`
	// AdminAllow are IPs/CIDRs that reach the admin without basic auth.
	AdminAllow []string `yaml:"admin_allow"`
	// AdminRatePerMinute limits admin POSTs per client IP (default 10);
	// AdminLoginsPerDay failed-login budget per IP (default 50).
	AdminRatePerMinute int `yaml:"admin_rate_per_minute"`
	AdminLoginsPerDay  int `yaml:"admin_logins_per_day"`
	// Signatures are operator signature directories layered over the
	// shipped ones (docs/hardening.md: the file format).
	Signatures []string `yaml:"signatures"`
	// AllowedScriptHosts are the external script hosts the store's pages
	// may load (payment providers, analytics); others are flagged.
	AllowedScriptHosts []string `yaml:"allowed_script_hosts"`
	// KnownAdmins are the admin_user usernames the owner knows; any other
	// active admin is a sign of compromise.
	KnownAdmins []string `yaml:"known_admins"`
	// RecentAdminDays flags admin logins newer than this many days from
	// users not in KnownAdmins (default 30).
	RecentAdminDays int `yaml:"recent_admin_days"`
	// DeployUser should own the code instead of the PHP user (default: the
	// host's deploy_user).
	DeployUser string `yaml:"deploy_user"`
	// Writable are extra paths (relative to the root) PHP may write besides
	// var/ and media/.
	Writable []string `yaml:"writable"`
	// Pages are the storefront paths whose HTML and scripts verification
	// scans (default /, /checkout/cart/, /checkout/onepage/).
	Pages []string `yaml:"pages"`
	// Concurrency bounds verification's parallel requests (default 4).
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds one verification request (default 15s).
	Timeout Duration `yaml:"timeout"`

	Nginx  HardeningNginx  `yaml:"nginx"`
	PHPFPM HardeningPHPFPM `yaml:"php_fpm"`
	SSHD   HardeningSSHD   `yaml:"sshd"`
	// DB overrides the database connection of app/etc/local.xml (e.g. a
	// read-only audit user).
	DB *HardeningDB `yaml:"db"`
}

// HardeningAuth is a basic-auth user whose password is a secret reference.
type HardeningAuth struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"` // file:NAME or env:NAME
	Realm    string `yaml:"realm"`
}

// HardeningNginx says how to read and reload the host's nginx.
type HardeningNginx struct {
	// Binary is nginx (default /usr/sbin/nginx); Args are put before -T,
	// -t and -s reload (e.g. ["-p", "/srv/nginx/", "-c", "/srv/nginx/nginx.conf"]).
	Binary string   `yaml:"binary"`
	Args   []string `yaml:"args"`
	// IncludeDir receives mageflow's checksummed hardening include; the
	// store's server block must include it (docs/hardening.md).
	IncludeDir string `yaml:"include_dir"`
	// HTTPConfDir is a directory nginx includes in http {} (Debian:
	// /etc/nginx/conf.d); the admin rate-limit zone is written there.
	HTTPConfDir string `yaml:"http_conf_dir"`
}

// HardeningPHPFPM says how to read, test and reload the pool.
type HardeningPHPFPM struct {
	Binary string `yaml:"binary"` // default: php-fpm8.2 / php-fpm on $PATH
	// Conf is the main config (-y); default: the pool file when it holds
	// [global], else php-fpm.conf next to the pool's pool.d/.
	Conf string `yaml:"conf"`
	// Args are added to `php-fpm -t -y <conf>` (e.g. ["-c", "/opt/php/etc/php.ini"]
	// for a non-default php.ini, ["-R"] when the pool runs as root).
	Args []string `yaml:"args"`
	// Reload is the command that reloads php-fpm after a pool change
	// (e.g. ["systemctl", "reload", "php8.2-fpm"]); empty: SIGUSR2 to the
	// master whose pid file the main config's `pid =` names (a relative
	// pid path is under /var/run). The host's php_fpm.service/pid_file
	// (deploys) are not used here. If that reload fails (no `pid =`, no
	// such process) the checked pool change stays and the result is an
	// error naming this key.
	Reload []string `yaml:"reload"`
}

// HardeningSSHD says where sshd's drop-ins go and how to reload it.
type HardeningSSHD struct {
	Binary string `yaml:"binary"` // default /usr/sbin/sshd
	Config string `yaml:"config"` // default /etc/ssh/sshd_config
	// HostKeys are passed as -h to `sshd -T`/`sshd -t` (only needed when
	// Config names a test config without readable host keys).
	HostKeys  []string `yaml:"host_keys"`
	DropInDir string   `yaml:"drop_in_dir"` // default /etc/ssh/sshd_config.d
	Reload    []string `yaml:"reload"`      // e.g. ["systemctl", "reload", "ssh"]
}

// HardeningDB is the store's database as the audit should reach it.
type HardeningDB struct {
	Host     string `yaml:"host"`   // host or host:port
	Socket   string `yaml:"socket"` // unix socket, instead of host
	Name     string `yaml:"name"`
	User     string `yaml:"user"`
	Password string `yaml:"password"` // file:NAME or env:NAME
	Prefix   string `yaml:"prefix"`   // table prefix
}

// validateHardening checks a host's hardening block; hp is "hosts.NAME".
func validateHardening(hp string, h *Hardening, add func(path, msg, hint string)) {
	if h == nil {
		return
	}
	p := hp + ".hardening"
	if h.BaseURL != "" {
		if u, err := url.Parse(h.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(p+".base_url", fmt.Sprintf(fmtHardeningBaseURL, p, h.BaseURL), hintHardeningBaseURL)
		}
	}
	if a := h.BasicAuth; a != nil {
		if a.User == "" || strings.ContainsAny(a.User, ":\n") {
			add(p+".basic_auth", p+".basic_auth.user is required and may not contain ':'", "")
		}
		if err := CheckSecretRef(a.Password); err != nil {
			add(p+".basic_auth.password", err.Error(), hintHardeningPassword)
		}
	}
	if h.StagingBasicAuth && h.BasicAuth == nil {
		add(p+".staging_basic_auth", p+".staging_basic_auth needs basic_auth", hintHardeningStaging)
	}
	for _, c := range h.AdminAllow {
		if net.ParseIP(c) == nil {
			if _, _, err := net.ParseCIDR(c); err != nil {
				add(p+".admin_allow", fmt.Sprintf("%s.admin_allow %q is not an IP or CIDR", p, c), "e.g. 203.0.113.7 or 10.0.0.0/8")
			}
		}
	}
	if h.AdminRatePerMinute < 0 || h.AdminLoginsPerDay < 0 || h.RecentAdminDays < 0 || h.Concurrency < 0 || h.Timeout.Duration < 0 {
		add(p, p+msgHardeningNegative, "")
	}
	validateHardeningPaths(p, h, add)
	validateHardeningDB(p, h.DB, add)
}

// validateHardeningPaths checks the relative (writable, pages) and
// absolute (binaries, directories) paths of hosts.NAME.hardening (p).
func validateHardeningPaths(p string, h *Hardening, add func(path, msg, hint string)) {
	for _, w := range h.Writable {
		if filepath.IsAbs(w) || strings.Contains(w, "..") {
			add(p+".writable", fmt.Sprintf("%s.writable %q must be relative to the Magento root", p, w), "e.g. includes")
		}
	}
	for _, pg := range h.Pages {
		if !strings.HasPrefix(pg, "/") {
			add(p+".pages", fmt.Sprintf("%s.pages %q must start with /", p, pg), "e.g. /checkout/cart/")
		}
	}
	paths := []struct{ path, v string }{
		{"root", h.Root}, {"state_dir", h.StateDir}, {"nginx.binary", h.Nginx.Binary},
		{"nginx.include_dir", h.Nginx.IncludeDir}, {"nginx.http_conf_dir", h.Nginx.HTTPConfDir},
		{"php_fpm.binary", h.PHPFPM.Binary}, {"php_fpm.conf", h.PHPFPM.Conf},
		{"sshd.binary", h.SSHD.Binary}, {"sshd.config", h.SSHD.Config}, {"sshd.drop_in_dir", h.SSHD.DropInDir},
	}
	for _, d := range h.Signatures {
		paths = append(paths, struct{ path, v string }{"signatures", d})
	}
	for _, f := range paths {
		if f.v != "" && !filepath.IsAbs(f.v) {
			add(p+"."+f.path, fmt.Sprintf("%s.%s %q must be an absolute path", p, f.path, f.v), "the agent runs from any directory")
		}
	}
}

// validateHardeningDB checks hosts.NAME.hardening.db (p is the hardening path).
func validateHardeningDB(p string, db *HardeningDB, add func(path, msg, hint string)) {
	if db == nil {
		return
	}
	if db.Password != "" {
		if err := CheckSecretRef(db.Password); err != nil {
			add(p+".db.password", err.Error(), "write file:NAME or env:NAME, never the password itself")
		}
	}
	if db.Host == "" && db.Socket == "" {
		add(p+".db", p+".db needs host: or socket:", "e.g. host: 127.0.0.1:3306")
	}
}

// validateHardenSchedule checks a schedule whose action is harden.
func validateHardenSchedule(c *Config, sp string, sc *Schedule, add func(path, msg, hint string)) {
	h := c.Hosts[sc.Host]
	if h == nil {
		add(sp+".host", fmt.Sprintf(fmtHardenScheduleHost, sp, sc.Host), hintHardenScheduleHost)
		return
	}
	if sc.App != "" && c.Apps[sc.App] == nil {
		add(sp+".app", fmt.Sprintf("%s.app %q is not a configured app", sp, sc.App), "leave it out or name an app")
	}
}
