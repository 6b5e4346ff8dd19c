// Package m1fix is the --apply half of MagentoM1EOLHardening: it changes a
// Magento 1 / OpenMage host so the audit's findings are closed, and does so
// idempotently — a second Apply changes nothing and says "unchanged".
//
// What it owns on the host, and nothing else:
//
//   - one managed nginx include per vhost (server context, included first in
//     the server block) and one http-context file (rate-limit zone), each
//     marked and checksummed, plus an htpasswd file for the admin/staging
//     basic auth; the vhost file gets one marked `include` line if it lacks
//     it. `nginx -t` runs before a reload and a rejected config is rolled
//     back, so a bad rule never takes the store down;
//   - `security.limit_extensions = .php` in the PHP-FPM pool (`php-fpm -t`
//     first, restored on failure);
//   - an sshd drop-in denying the PHP user (`sshd -t` first, removed on
//     failure);
//   - ownership and write bits of the code under the web root (skin/ never
//     writable); under var/, media/ and declared writable paths only the
//     world-write bit goes (PHP keeps write as owner or group);
//   - before any of that, a forensic snapshot (stat + sha256 of every entry
//     the ownership fix will change) written once under the state
//     directory, so the report keeps the times an investigation needs.
//
// Every change is reported as a CheckResult with Before/After; backups of
// every file replaced are kept (never beside nginx's globbed directories,
// where nginx would load them as config).
package m1fix

import (
	"context"
	"errors"
	"fmt"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// Result ids. Stable: reports and dashboards key on them.
const (
	IDNginx         = "m1.fix.nginx"                // managed include + http file + include line + reload
	IDDesignPost    = "m1.fix.nginx.design_post"    // misc-scripts virtual patch
	IDAdminAuth     = "m1.fix.admin.basic_auth"     // htpasswd + auth on the admin (and staging)
	IDAdminDaily    = "m1.fix.admin.login_per_day"  // per-day failed-login limit (fail2ban, not nginx)
	IDFPMLimitExt   = "m1.fix.fpm.limit_extensions" // security.limit_extensions = .php
	IDSSHDenyPHP    = "m1.fix.ssh.deny_php_user"    // DenyUsers <phpuser> drop-in
	IDOwnership     = "m1.fix.ownership"            // code owner / write bits
	IDForensics     = "m1.fix.forensics"            // stat + sha256 of what apply changes, recorded first
	DefaultInclude  = "/etc/nginx/mageflow"
	DefaultHTTPConf = "/etc/nginx/conf.d"
	DefaultSSHDDir  = "/etc/ssh/sshd_config.d"
	// DefaultAdminRatePerMinute limits admin POSTs per client address when
	// Options leaves it 0.
	DefaultAdminRatePerMinute = 10
	// unchanged is the Detail of a result whose target state already held.
	unchanged = "unchanged"
)

// BasicAuth is the credential put in front of the admin (and staging).
type BasicAuth struct {
	User string
	// Password is resolved by the caller (from a secret reference); it is
	// hashed with bcrypt and never logged or reported.
	Password string
	// Realm is shown by browsers; default "Restricted".
	Realm string
}

// Options say how to reach the host's daemons and what to enforce.
type Options struct {
	// NginxBinary (default /usr/sbin/nginx, then $PATH) and NginxArgs
	// (e.g. -p/-c in tests) are used for `nginx -t`, `nginx -T` and the
	// reload.
	NginxBinary string
	NginxArgs   []string
	// IncludeDir holds the managed server includes (m1-<name>.conf), the
	// htpasswd file and backups/; default /etc/nginx/mageflow. The vhost
	// must include its file once; if it does not, Apply adds one marked
	// `include` line to the discovered server block (backup kept, nginx -t).
	IncludeDir string
	// HTTPConfDir is a directory nginx includes in http {} (Debian:
	// conf.d/*.conf); the rate-limit zone is written there as
	// m1-<name>-http.conf. Default /etc/nginx/conf.d.
	HTTPConfDir string
	// BasicAuth protects the admin (and the staging vhosts with
	// StagingBasicAuth). nil: no basic auth, reported as needs_person.
	BasicAuth        *BasicAuth
	StagingBasicAuth bool
	// AdminAllow are addresses/CIDRs let into the admin without basic auth
	// (satisfy any).
	AdminAllow []string
	// AdminRatePerMinute limits admin POSTs (logins included) per client
	// address; 0 means DefaultAdminRatePerMinute. AdminLoginsPerDay cannot
	// be expressed in nginx (its rates stop at r/m); Apply reports the
	// fail2ban jail to add.
	AdminRatePerMinute int
	AdminLoginsPerDay  int
	// PHPEntryPoints are the only scripts PHP runs for (paths relative to
	// the web root); default DefaultPHPEntryPoints.
	PHPEntryPoints []string

	// PHPFPMBinary (default php-fpm8.2/php-fpm) checks the pool with
	// `php-fpm -t -y <PHPFPMConf> PHPFPMArgs…`. PHPFPMConf defaults to the
	// pool file when it holds [global], else ../php-fpm.conf next to
	// pool.d/. ReloadPHPFPM reloads; nil sends SIGUSR2 to the pid in the
	// main config's `pid`.
	PHPFPMBinary string
	PHPFPMConf   string
	PHPFPMArgs   []string
	ReloadPHPFPM func(ctx context.Context) error

	// SSHDBinary (default /usr/sbin/sshd; absent: not_applicable) checks
	// the drop-in with `sshd -t SSHDArgs…` (tests: -f/-h). SSHDDropInDir
	// defaults to /etc/ssh/sshd_config.d. ReloadSSHD nil sends SIGHUP to
	// /run/sshd.pid when sshd runs.
	SSHDBinary    string
	SSHDArgs      []string
	SSHDDropInDir string
	ReloadSSHD    func(ctx context.Context) error

	// DeployUser should own the code. Empty: ownership is left alone and
	// code owned by the PHP user is reported as needs_person.
	DeployUser string
	// Writable are extra paths (relative to the web root) PHP may write,
	// besides var/ and media/. skin/ is never writable.
	Writable []string
	// StateDir keeps the forensic snapshots (forensics/<target>/<time>.json,
	// 0600, written once, never replaced); default DefaultStateDir.
	StateDir string
	// Flagged are files the audit flagged (relative to the web root or
	// absolute below it): the snapshot records them too, changed or not.
	Flagged []string
	// DryRun computes what would change and changes nothing.
	DryRun bool
}

// testHookServer, when set (tests only), rewrites the rendered server
// include before it is written — to prove a config nginx rejects is rolled
// back.
var testHookServer func(string) string

// Apply brings the host to the hardened state and reports one result per
// fix. An error is returned only when the run could not proceed at all
// (no target); failures of single fixes are results with StatusError, so the
// others still run.
func Apply(ctx context.Context, t *m1audit.Target, o Options) ([]m1audit.CheckResult, error) {
	if t == nil {
		return nil, errors.New("m1fix: no target: run the audit's discovery first")
	}
	if t.WebRoot == "" {
		return nil, errors.New("m1fix: target has no web root: discovery found no Magento 1 root (app/Mage.php)")
	}
	// Evidence first: plan the ownership changes, record the stat and hash
	// of everything they will touch (and of the flagged files), and only
	// then change anything.
	ids, stop := resolveOwners(t, o)
	plan := &ownerPlan{}
	if stop == nil {
		plan = planOwnership(t, o, ids)
	}
	forensic, recorded := snapshotForensics(t, o, plan)
	out := []m1audit.CheckResult{forensic}
	out = append(out, applyFPM(ctx, t, o))
	out = append(out, applyNginx(ctx, t, o)...)
	out = append(out, applySSHD(ctx, t, o))
	switch {
	case stop != nil:
		out = append(out, *stop)
	case !recorded:
		out = append(out, result(IDOwnership, ownerTitle, m1audit.SeverityHigh, m1audit.StatusError, msgOwnershipNoSnapshot))
	default:
		if !o.DryRun {
			plan.execute()
		}
		out = append(out, ownershipResult(t, o, plan))
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("m1fix: interrupted: %w (re-run: every step is idempotent)", err)
	}
	return out, nil
}

// msgOwnershipNoSnapshot: ownership is left alone when its evidence could
// not be recorded.
const msgOwnershipNoSnapshot = "left alone: the forensic snapshot could not be written (see m1.fix.forensics); changing owners and modes now would reset the ctimes an investigation needs"

// result builds a CheckResult.
func result(id, title string, sev m1audit.Severity, st m1audit.Status, detail string) m1audit.CheckResult {
	return m1audit.CheckResult{ID: id, Title: title, Severity: sev, Status: st, Evidence: m1audit.Evidence{Detail: detail}}
}

// Catalog lists the results Apply produces, for documentation and the
// report (Source "apply"; rows are the reference table's §2 rows).
func Catalog() []m1audit.CheckInfo {
	return []m1audit.CheckInfo{
		{ID: IDNginx, Title: "Managed nginx include denies the §3 paths, PHP outside the entry points, and guards the admin", Severity: m1audit.SeverityCritical, Row: m1audit.RowCacheleak, Source: "apply"},
		{ID: IDDesignPost, Title: "POST saving the design config section is refused before PHP (misc-scripts virtual patch)", Severity: m1audit.SeverityHigh, Row: m1audit.RowSkimmerDB, Source: "apply"},
		{ID: IDAdminAuth, Title: "Admin (and staging) behind basic auth / IP allow list, admin POSTs rate-limited", Severity: m1audit.SeverityHigh, Row: m1audit.RowAdminPath, Source: "apply"},
		{ID: IDAdminDaily, Title: "Failed admin logins limited per address per day", Severity: m1audit.SeverityMedium, Row: m1audit.RowFailedLogin, Source: "apply"},
		{ID: IDFPMLimitExt, Title: "PHP-FPM pool runs only .php (security.limit_extensions = .php)", Severity: m1audit.SeverityHigh, Row: m1audit.RowFPM, Source: "apply"},
		{ID: IDSSHDenyPHP, Title: "sshd refuses the PHP user (DenyUsers drop-in)", Severity: m1audit.SeverityHigh, Row: m1audit.RowPHPUser, Source: "apply"},
		{ID: IDOwnership, Title: ownerTitle, Severity: m1audit.SeverityHigh, Row: m1audit.RowCodeOwner, Source: "apply"},
		{ID: IDForensics, Title: "Forensic evidence (stat and sha256) recorded before any change", Severity: m1audit.SeverityHigh, Row: m1audit.RowMalwareFiles, Source: "apply"},
	}
}
