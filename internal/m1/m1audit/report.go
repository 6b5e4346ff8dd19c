package m1audit

import "time"

// Status is the outcome of one check in a hardening run.
type Status string

// Check outcomes. A check never disappears from a report: when it cannot
// apply (no staging vhost, no sshd installed) it says so with
// StatusNotApplicable and the reason in its evidence, so a reader can tell
// "checked and fine" from "not looked at".
const (
	StatusPass          Status = "pass"
	StatusFail          Status = "fail"
	StatusFixed         Status = "fixed"        // failed the audit, remediated, verified
	StatusNeedsPerson   Status = "needs_person" // a program cannot decide or may not change it
	StatusNotApplicable Status = "not_applicable"
	StatusError         Status = "error" // the check itself could not run; evidence says why
)

// HTTPEvidence is one real request made to prove (or disprove) a rule.
type HTTPEvidence struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	Host   string `json:"host,omitempty"` // Host header sent
	Status int    `json:"status"`
	// Leaked is true when the body held content the rule exists to hide
	// (source code, XML config, a canary's executed marker).
	Leaked bool   `json:"leaked,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Evidence is what a check looked at.
type Evidence struct {
	Command string         `json:"command,omitempty"` // e.g. "nginx -T", "sshd -T -C user=www-data"
	Detail  string         `json:"detail,omitempty"`
	Files   []string       `json:"files,omitempty"`
	HTTP    []HTTPEvidence `json:"http,omitempty"`
	// Findings are file-level findings (malware, PHP in images, writable paths).
	Findings []Finding `json:"findings,omitempty"`
	// Snapshots are forensic snapshot files (ForensicSnapshot) recorded
	// before --apply changed anything; Finalize takes the forensic
	// appendix's times from them.
	Snapshots []string `json:"snapshots,omitempty"`
}

// CheckResult is one check's line in the report.
type CheckResult struct {
	ID       string   `json:"id"` // stable, e.g. "m1.http.downloader"
	Title    string   `json:"title"`
	Severity Severity `json:"severity"`
	Status   Status   `json:"status"`
	Evidence Evidence `json:"evidence"`
	// Before and After describe the state around a remediation (empty when
	// nothing was changed).
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
	// Fix says what a person should do when the status is fail or
	// needs_person and mageflow may not or cannot do it.
	Fix string `json:"fix,omitempty"`
	// Compromise marks a result that is a sign of compromise (malware,
	// injected script, rogue admin), which adds the forensic appendix.
	Compromise bool `json:"compromise,omitempty"`
}

// Vhost is one nginx server block serving the store, as `nginx -T` shows it.
type Vhost struct {
	ServerNames []string `json:"server_names"`
	Listen      []string `json:"listen"`
	Root        string   `json:"root"`
	// FastCGIPass is the PHP-FPM address this vhost passes PHP to
	// ("unix:/run/php/php8.2-fpm.sock" or "127.0.0.1:9000").
	FastCGIPass string `json:"fastcgi_pass,omitempty"`
	File        string `json:"file"` // the file and line nginx -T reported it in, "file:line"
	// Staging is true when the server name or root looks like a staging or
	// development copy (staging., dev., test., stage., uat.).
	Staging bool `json:"staging,omitempty"`
	// BasicAuth is true when an auth_basic directive (not "off") appears
	// anywhere in the server block.
	BasicAuth bool `json:"basic_auth,omitempty"`
}

// Target is what discovery found on the host; every check reads it rather
// than assuming Debian defaults.
type Target struct {
	Vhosts         []Vhost  `json:"vhosts"`
	WebRoot        string   `json:"web_root"` // the Magento 1 root (holds app/Mage.php)
	FPMListen      string   `json:"fpm_listen"`
	FPMPoolFile    string   `json:"fpm_pool_file"`
	PHPUser        string   `json:"php_user"`
	PHPGroup       string   `json:"php_group"`
	LimitExt       []string `json:"limit_extensions"` // security.limit_extensions of the pool
	AdminFrontName string   `json:"admin_front_name"`
	Version        string   `json:"version"` // Magento/OpenMage version from app/Mage.php
	Edition        string   `json:"edition,omitempty"`
	OpenMage       bool     `json:"openmage,omitempty"`
	Patches        []string `json:"patches,omitempty"` // from app/etc/applied.patches.list
	PHPVersion     string   `json:"php_version"`
	// DB is where the store's database is, from local.xml (host, name,
	// table prefix). The password stays on the host: never in a report.
	DBHost   string `json:"db_host,omitempty"`
	DBName   string `json:"db_name,omitempty"`
	DBPrefix string `json:"db_prefix,omitempty"`

	// DocRoot is the nginx root of the chosen vhost: WebRoot itself, or
	// WebRoot/pub for a pub/ docroot.
	DocRoot string `json:"doc_root,omitempty"`
	// ServerName is the first server_name of the chosen vhost.
	ServerName string `json:"server_name,omitempty"`
	// LimitExtDefault is true when the pool does not set
	// security.limit_extensions, so PHP-FPM's default (.php .phar) applies
	// and LimitExt holds that default.
	LimitExtDefault bool `json:"limit_extensions_default,omitempty"`
	// ClearEnv is the pool's clear_env ("yes" when not set, PHP's default).
	ClearEnv string `json:"clear_env,omitempty"`
	// FPMBinary is the php-fpm binary whose -v gave PHPVersion.
	FPMBinary string `json:"fpm_binary,omitempty"`
	// Logs are the nginx access/error logs and PHP-FPM logs named in the
	// configuration, for the forensic appendix.
	Logs []string `json:"logs,omitempty"`
	// Notes are discovery problems that did not stop it (no matching pool,
	// unknown version); checks that need the missing piece report error.
	Notes []string `json:"notes,omitempty"`
}

// Summary counts results by status.
type Summary struct {
	Checks        int  `json:"checks"`
	Pass          int  `json:"pass"`
	Fail          int  `json:"fail"`
	Fixed         int  `json:"fixed"`
	NeedsPerson   int  `json:"needs_person"`
	NotApplicable int  `json:"not_applicable"`
	Errors        int  `json:"errors"`
	Compromised   bool `json:"compromised"`
	// Changed is false when an --apply run found nothing to change.
	Changed bool `json:"changed"`
	// Requests is how many HTTP requests verification made.
	Requests int `json:"requests"`
}

// Forensics is the appendix added when signs of compromise are found.
type Forensics struct {
	// Files are the suspicious files with their modification and change
	// times, newest first.
	Files []ForensicFile `json:"files"`
	// Logs are where to look next (nginx access/error logs, PHP-FPM log).
	Logs []string `json:"logs"`
	// Instructions always include rotating every credential.
	Instructions []string `json:"instructions"`
}

// ForensicFile is one suspicious file and its times.
type ForensicFile struct {
	Path    string    `json:"path"`
	ModTime time.Time `json:"mod_time"`
	// ChangeTime is the inode change time (ctime): attackers reset mtime
	// with touch, but not ctime.
	ChangeTime time.Time `json:"change_time"`
	Size       int64     `json:"size"`
	CheckID    string    `json:"check_id"`
	// Mode, UID, GID and SHA256 (regular files) are recorded with the
	// times; RecordedAt is when: before --apply changed anything when the
	// record comes from a ForensicSnapshot, else when the report was made.
	Mode       string    `json:"mode,omitempty"`
	UID        int       `json:"uid"`
	GID        int       `json:"gid"`
	SHA256     string    `json:"sha256,omitempty"`
	RecordedAt time.Time `json:"recorded_at,omitzero"`
}

// Report is the result of MagentoM1EOLHardening for one host (and app).
type Report struct {
	Host      string        `json:"host"`
	App       string        `json:"app,omitempty"`
	Apply     bool          `json:"apply"`
	Started   time.Time     `json:"started"`
	Finished  time.Time     `json:"finished"`
	Target    Target        `json:"target"`
	Results   []CheckResult `json:"results"`
	Summary   Summary       `json:"summary"`
	Forensics *Forensics    `json:"forensics,omitempty"`
}
