package m1audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	// The MariaDB/MySQL wire protocol in pure Go: the host agent is a static
	// binary and must not need libmysqlclient or the mysql CLI (whose
	// output would have to be scraped and which would see the password on
	// its command line).
	"github.com/go-sql-driver/mysql"
)

// DBConfig is how to reach the store's database. Password stays in memory
// on the host: it is never put in a result, an error or a log line.
type DBConfig struct {
	Host     string // "localhost", "db.internal", "db:3307", or a unix socket path
	Socket   string // unix socket; wins over Host
	User     string
	Password string `json:"-"`
	// PasswordRef is used when Password is empty: "file:/path" (first
	// line) or "env:NAME", resolved on the host so workflow history only
	// holds the reference.
	PasswordRef string `json:"password_ref,omitempty"`
	Name        string
	Prefix      string // table prefix from local.xml
}

type localXMLDB struct {
	XMLName xml.Name `xml:"config"`
	Prefix  string   `xml:"global>resources>db>table_prefix"`
	Host    string   `xml:"global>resources>default_setup>connection>host"`
	User    string   `xml:"global>resources>default_setup>connection>username"`
	Pass    string   `xml:"global>resources>default_setup>connection>password"`
	Name    string   `xml:"global>resources>default_setup>connection>dbname"`
}

// ParseLocalXMLDB reads the default_setup connection and table prefix from
// app/etc/local.xml.
func ParseLocalXMLDB(local []byte) (DBConfig, error) {
	var c localXMLDB
	if err := xml.NewDecoder(bytes.NewReader(local)).Decode(&c); err != nil {
		return DBConfig{}, fmt.Errorf("parse app/etc/local.xml: %w", err)
	}
	db := DBConfig{Host: strings.TrimSpace(c.Host), User: strings.TrimSpace(c.User), Password: c.Pass,
		Name: strings.TrimSpace(c.Name), Prefix: strings.TrimSpace(c.Prefix)}
	if db.Name == "" {
		return db, fmt.Errorf("app/etc/local.xml has no global/resources/default_setup/connection/dbname")
	}
	return db, nil
}

// defaultSockets are where Debian and other distributions put the MariaDB
// socket; "localhost" means the socket to libmysqlclient, so it does here.
var defaultSockets = []string{"/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock", "/tmp/mysql.sock"}

// dsn builds the driver configuration. Times are read as UTC, which is how
// Magento 1 stores created/logdate.
func (c DBConfig) dsn() (*mysql.Config, error) {
	m := mysql.NewConfig()
	m.User, m.Passwd, m.DBName = c.User, c.Password, c.Name
	m.ParseTime, m.Loc = true, time.UTC
	m.Timeout, m.ReadTimeout = 10*time.Second, 60*time.Second
	m.AllowNativePasswords = true
	switch {
	case c.Socket != "":
		m.Net, m.Addr = "unix", c.Socket
	case strings.HasPrefix(c.Host, "/"):
		m.Net, m.Addr = "unix", c.Host
	case c.Host == "" || c.Host == "localhost":
		m.Net, m.Addr = "tcp", "127.0.0.1:3306"
		for _, s := range defaultSockets {
			if fileExists(s) {
				m.Net, m.Addr = "unix", s
				break
			}
		}
	default:
		m.Net, m.Addr = "tcp", c.Host
		if _, _, err := net.SplitHostPort(c.Host); err != nil {
			m.Addr = net.JoinHostPort(c.Host, "3306")
		}
	}
	return m, nil
}

// where says where the database is without the password.
func (c DBConfig) where() string {
	m, _ := c.dsn()
	return fmt.Sprintf("%s@%s(%s)/%s", c.User, m.Net, m.Addr, c.Name)
}

// openDB connects and pings.
func openDB(ctx context.Context, c DBConfig) (*sql.DB, error) {
	m, err := c.dsn()
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(m)
	if err != nil {
		return nil, fmt.Errorf("database %s: %v", c.where(), err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to database %s: %v (check local.xml or pass the DB settings; the audit needs SELECT on core_config_data, cms_block, cms_page, admin_user)", c.where(), scrub(err.Error(), c.Password))
	}
	return db, nil
}

// scrub removes the password from a message, in case a driver echoes it.
func scrub(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "***")
}

var prefixRe = regexp.MustCompile(`^[A-Za-z0-9_]*$`)

// dbChecks runs every database check; one connection failure makes all of
// them status error with the same evidence.
func dbChecks(ctx context.Context, t *Target, o AuditOptions) []CheckResult {
	ids := []string{CheckDBConfigScripts, CheckDBCMSContent, CheckDBAdminUsers, CheckDBCompatMode, CheckDBAllowSymlink, CheckDBAdminCaptcha, CheckDBFormKey}
	fail := func(err error, cmd string) []CheckResult {
		var out []CheckResult
		for _, id := range ids {
			r := newResult(id)
			r.Status = StatusError
			r.Evidence.Command = cmd
			r.Evidence.Detail = err.Error()
			r.Fix = "Give the audit read access to the store database (local.xml credentials, or pass DB settings) and run it again."
			out = append(out, r)
		}
		return out
	}
	var cfg DBConfig
	if o.DB != nil {
		cfg = *o.DB
	} else {
		local, err := os.ReadFile(filepath.Join(t.WebRoot, "app", "etc", "local.xml"))
		if err != nil {
			return fail(fmt.Errorf("read app/etc/local.xml for the database settings: %w", err), "")
		}
		if cfg, err = ParseLocalXMLDB(local); err != nil {
			return fail(err, "")
		}
	}
	if cfg.Password == "" && cfg.PasswordRef != "" {
		pw, err := resolveSecret(cfg.PasswordRef)
		if err != nil {
			return fail(err, "")
		}
		cfg.Password = pw
	}
	if !prefixRe.MatchString(cfg.Prefix) {
		return fail(fmt.Errorf("table prefix %q is not [A-Za-z0-9_]*; fix local.xml", cfg.Prefix), "")
	}
	cmd := "SELECT on " + cfg.where()
	db, err := openDB(ctx, cfg)
	if err != nil {
		return fail(err, cmd)
	}
	defer db.Close()
	a := &dbAudit{ctx: ctx, db: db, p: cfg.Prefix, o: o, cmd: cmd, pw: cfg.Password}
	// The hosts nginx serves the store under are the store's own too.
	for _, v := range t.Vhosts {
		for _, n := range v.ServerNames {
			if n != "_" && !strings.ContainsAny(n, "*~") {
				a.vhosts = append(a.vhosts, n)
			}
		}
	}
	out := []CheckResult{a.configScripts(), a.cmsContent(), a.adminUsers()}
	out = append(out, a.settings()...)
	return out
}

type dbAudit struct {
	ctx context.Context
	db  *sql.DB
	p   string
	o   AuditOptions
	cmd string
	pw  string

	vhosts    []string // server names nginx serves the store under
	baseHosts []string
	own       []string
}

type configRow struct {
	scope   string
	scopeID int64
	path    string
	value   sql.NullString
}

func (a *dbAudit) configRows(where string, args ...any) ([]configRow, error) {
	q := fmt.Sprintf("SELECT scope, scope_id, path, value FROM `%score_config_data` WHERE %s ORDER BY path, scope, scope_id", a.p, where)
	rows, err := a.db.QueryContext(a.ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query %score_config_data: %s", a.p, scrub(err.Error(), a.pw))
	}
	defer rows.Close()
	var out []configRow
	for rows.Next() {
		var r configRow
		if err := rows.Scan(&r.scope, &r.scopeID, &r.path, &r.value); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// allowedScriptHosts are the store's own hosts (every base URL at every
// scope, the vhosts' server names) plus the operator's allowlist.
func (a *dbAudit) allowedScriptHosts() []string {
	if a.baseHosts != nil {
		return a.baseHosts
	}
	a.own = append([]string{}, a.vhosts...)
	rows, err := a.configRows("path LIKE 'web/%/base%url'")
	if err == nil {
		for _, r := range rows {
			if h := hostOf(r.value.String); h != "" {
				a.own = append(a.own, h)
			}
		}
	}
	a.baseHosts = append(append([]string{}, a.own...), a.o.ScriptHosts...)
	return a.baseHosts
}

// configContentPaths selects the core_config_data rows rendered into
// pages: every design/* value (head includes, default title, title prefix
// and suffix, description, keywords, footer, copyright, welcome text) and
// any path naming scripts or HTML (extensions' tracking snippets).
const configContentPaths = "path LIKE 'design/%' OR path LIKE '%script%' OR path LIKE '%html%'"

// frontendScopes are the signature scopes for content rendered into pages.
var frontendScopes = []Scope{ScopeJS, ScopeHTML}

// scanHTML applies the frontend signatures and heuristics, the inline
// event-handler check and the script-host allowlist (with lookalike hosts)
// to one database value and returns its findings. Information-only
// findings are dropped: nobody acts on them in a database row.
func (a *dbAudit) scanHTML(name string, content []byte) []Finding {
	var out []Finding
	if a.o.Signatures != nil {
		for _, f := range a.o.Signatures.ScanContent(name, content, frontendScopes...) {
			if f.Severity != SeverityInfo && f.CheckID != CheckInformational {
				out = append(out, f)
			}
		}
	}
	out = append(out, handlerFindings(name, content)...)
	return append(out, hostFindings(name, content, a.allowedScriptHosts(), a.ownHosts())...)
}

// ownHosts are the store's own hosts without the operator's allowlist of
// third parties: the domains a lookalike would imitate.
func (a *dbAudit) ownHosts() []string {
	a.allowedScriptHosts()
	return a.own
}

// contentResult turns the findings of a content check into its status: a
// confident finding (critical or high, not marked for a person) is a
// compromise; anything else needs a person.
func contentResult(r CheckResult, scanned int, fs []Finding) CheckResult {
	r.Evidence.Findings = append([]Finding{}, fs...)
	sure, person, foreign := 0, 0, 0
	for _, f := range fs {
		switch {
		case f.CheckID == CheckContentForeignScript && f.SignatureID == "":
			foreign++
		case !f.NeedsPerson && (f.Severity == SeverityCritical || f.Severity == SeverityHigh):
			sure++
		default:
			person++
		}
	}
	switch {
	case sure > 0:
		r.Status, r.Compromise = StatusFail, true
		r.Fix = fixDBSkimmer
	case person > 0:
		r.Status, r.Fix = StatusNeedsPerson, fixDBSuspect
	case foreign > 0:
		r.Status, r.Fix = StatusNeedsPerson, fixDBForeign
	default:
		r.Status = StatusPass
	}
	r.Evidence.Detail = fmt.Sprintf("%d value(s) scanned; %d skimmer finding(s), %d to review, %d foreign script host(s)", scanned, sure, person, foreign)
	return r
}

// Fix texts of the database content checks.
const (
	fixDBSkimmer = "Injected JavaScript matches a skimmer signature: treat the store as compromised (see the forensic appendix), remove the script from the rows listed (System > Configuration > Design > HTML Head / Footer, CMS > Static Blocks / Pages), rotate every credential, and find how it got in before relying on the cleanup."
	fixDBSuspect = "A value listed holds obfuscated or unusual browser-side code: read each excerpt, and remove the script unless you know who added it and what it does."
	fixDBForeign = "Scripts load from hosts that are not the store's: confirm each is a service you use and add it to the audit's script-host allowlist, or remove it (skimmers hide in exactly these fields)."
)

func (a *dbAudit) configScripts() CheckResult {
	r := newResult(CheckDBConfigScripts)
	r.Evidence.Command = a.cmd
	rows, err := a.configRows(configContentPaths)
	if err != nil {
		return errResult(r, err)
	}
	var fs []Finding
	for _, row := range rows {
		if !row.value.Valid || row.value.String == "" {
			continue
		}
		name := fmt.Sprintf("%score_config_data[%s@%s:%d]", a.p, row.path, row.scope, row.scopeID)
		fs = append(fs, a.scanHTML(name, []byte(row.value.String))...)
	}
	return contentResult(r, len(rows), fs)
}

// cmsTables are the CMS tables whose rows are rendered into pages, with
// the columns that carry HTML or layout XML.
var cmsTables = []struct{ table, id, key, store string }{
	{"cms_block", "block_id", "identifier", "cms_block_store"},
	{"cms_page", "page_id", "identifier", "cms_page_store"},
}

// cmsColumns are the HTML-bearing columns per CMS table: a page's layout
// update XML can add a script block as well as its content can.
var cmsColumns = map[string][]string{
	"cms_block": {"content"},
	"cms_page":  {"content", "layout_update_xml", "custom_layout_update_xml"},
}

func (a *dbAudit) cmsContent() CheckResult {
	r := newResult(CheckDBCMSContent)
	r.Evidence.Command = a.cmd
	var fs []Finding
	scanned := 0
	for _, tbl := range cmsTables {
		n, f, err := a.cmsTable(tbl.table, tbl.id, tbl.key, tbl.store)
		if err != nil {
			return errResult(r, err)
		}
		scanned, fs = scanned+n, append(fs, f...)
	}
	return contentResult(r, scanned, fs)
}

// cmsTable scans one CMS table's HTML columns. Findings are named
// "<prefix>cms_page[<id> <identifier> stores:<ids>].<column>" (stores
// 0 is all store views; inactive rows say so: they are not rendered now
// but one click renders them).
func (a *dbAudit) cmsTable(table, idCol, keyCol, storeTable string) (int, []Finding, error) {
	stores := a.cmsStores(storeTable, idCol)
	cols := cmsColumns[table]
	q := fmt.Sprintf("SELECT `%s`, `%s`, is_active, %s FROM `%s%s` ORDER BY `%s`", idCol, keyCol, "`"+strings.Join(cols, "`, `")+"`", a.p, table, idCol)
	rows, err := a.db.QueryContext(a.ctx, q)
	if err != nil {
		return 0, nil, fmt.Errorf("query %s%s: %s", a.p, table, scrub(err.Error(), a.pw))
	}
	defer rows.Close()
	var fs []Finding
	scanned := 0
	for rows.Next() {
		var id, active int64
		var key sql.NullString
		vals := make([]sql.NullString, len(cols))
		dest := []any{&id, &key, &active}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return 0, nil, err
		}
		scanned++
		where := ""
		if s, ok := stores[id]; ok {
			where = " stores:" + s
		}
		if active != 1 {
			where += " inactive"
		}
		for i, v := range vals {
			if !v.Valid || v.String == "" {
				continue
			}
			name := fmt.Sprintf("%s%s[%d %s%s]", a.p, table, id, key.String, where)
			if cols[i] != "content" {
				name += "." + cols[i]
			}
			fs = append(fs, a.scanHTML(name, []byte(v.String))...)
		}
	}
	return scanned, fs, rows.Err()
}

// cmsStores maps a CMS row id to its store view ids ("0,2"). A store
// table that cannot be read (older schema, no grant) leaves the scope out
// of the names; the scan itself does not depend on it.
func (a *dbAudit) cmsStores(storeTable, idCol string) map[int64]string {
	q := fmt.Sprintf("SELECT `%s`, GROUP_CONCAT(store_id ORDER BY store_id) FROM `%s%s` GROUP BY `%s`", idCol, a.p, storeTable, idCol)
	rows, err := a.db.QueryContext(a.ctx, q)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var s sql.NullString
		if rows.Scan(&id, &s) == nil {
			out[id] = s.String
		}
	}
	return out
}

func (a *dbAudit) adminUsers() CheckResult {
	r := newResult(CheckDBAdminUsers)
	r.Evidence.Command = a.cmd
	q := fmt.Sprintf("SELECT username, email, created, logdate, lognum, is_active FROM `%sadmin_user` ORDER BY user_id", a.p)
	rows, err := a.db.QueryContext(a.ctx, q)
	if err != nil {
		return errResult(r, fmt.Errorf("query %sadmin_user: %s", a.p, scrub(err.Error(), a.pw)))
	}
	defer rows.Close()
	now := a.o.now()
	days := a.o.RecentAdminDays
	if days <= 0 {
		days = 30
	}
	recentSince := now.AddDate(0, 0, -days)
	known := map[string]bool{}
	for _, k := range a.o.KnownAdmins {
		known[strings.ToLower(strings.TrimSpace(k))] = true
	}
	var active []string
	var unknown, recent []Finding
	for rows.Next() {
		var user, email sql.NullString
		var created, logdate sql.NullTime
		var lognum sql.NullInt64
		var isActive sql.NullInt64
		if err := rows.Scan(&user, &email, &created, &logdate, &lognum, &isActive); err != nil {
			return errResult(r, err)
		}
		if isActive.Int64 != 1 {
			continue // cannot log in
		}
		active = append(active, user.String)
		desc := fmt.Sprintf("%s <%s> created %s, last login %s, %d login(s)", user.String, email.String, fmtTime(created), fmtTime(logdate), lognum.Int64)
		name := fmt.Sprintf("%sadmin_user[%s]", a.p, user.String)
		isRecent := (created.Valid && created.Time.After(recentSince)) ||
			(logdate.Valid && lognum.Int64 <= 1 && logdate.Time.After(recentSince))
		switch {
		case len(known) > 0 && !known[strings.ToLower(user.String)]:
			unknown = append(unknown, Finding{CheckID: CheckDBAdminUsers, Severity: SeverityCritical, Path: name, Evidence: "not a known admin: " + desc})
		case isRecent:
			recent = append(recent, Finding{CheckID: CheckDBAdminUsers, Severity: SeverityHigh, Path: name,
				Evidence: fmt.Sprintf("created or first logged in within %d days: %s", days, desc), NeedsPerson: true})
		}
	}
	if err := rows.Err(); err != nil {
		return errResult(r, err)
	}
	r.Evidence.Findings = append(unknown, recent...)
	r.Evidence.Detail = fmt.Sprintf("%d active admin user(s): %s", len(active), strings.Join(active, ", "))
	switch {
	case len(unknown) > 0:
		r.Status, r.Compromise = StatusFail, true
		r.Fix = "Admin users nobody listed exist: disable them (is_active=0), end all admin sessions, rotate every admin password and the crypt key, and check the access logs for how they were created."
	case len(recent) > 0:
		r.Status = StatusNeedsPerson
		r.Fix = "Confirm the recently created or first-used admin users are people you know; disable any that are not."
	case len(known) == 0:
		r.Status = StatusNeedsPerson
		r.Fix = "No known-admin list was given, so unknown users cannot be told apart: confirm the users listed and pass them as known admins."
	default:
		r.Status = StatusPass
	}
	return r
}

func fmtTime(t sql.NullTime) string {
	if !t.Valid {
		return "never"
	}
	return t.Time.UTC().Format("2006-01-02 15:04")
}

// setting is one admin hardening switch in core_config_data.
type setting struct {
	id, path string
	def      string // Magento 1's config.xml default when no row exists
	bad      string // the value that is a problem
	status   Status // status when a row (or the default) has the bad value
	fix      string
}

var settings = []setting{
	{CheckDBCompatMode, "admin/security/extensions_compatibility_mode", "0", "1", StatusFail,
		"Set System > Configuration > Admin > Security > Admin routing compatibility mode for extensions to No (admin/security/extensions_compatibility_mode=0) and update extensions that still need /<module>/adminhtml_* routes (SUPEE-6788)."},
	{CheckDBAllowSymlink, "dev/template/allow_symlink", "0", "1", StatusFail,
		"Set dev/template/allow_symlink to 0 (System > Configuration > Developer > Template Settings): symlinked templates let an uploaded file be rendered as a template (SUPEE-9767)."},
	{CheckDBAdminCaptcha, "admin/captcha/enable", "0", "0", StatusNeedsPerson,
		"Enable the admin login CAPTCHA (admin/captcha/enable=1) unless admin is protected otherwise (basic auth, IP allowlist): Magento 1 has no admin login lockout."},
	{CheckDBFormKey, "admin/security/use_form_key", "1", "0", StatusFail,
		"Set admin/security/use_form_key to 1: without form keys every admin action is open to cross-site request forgery."},
}

func (a *dbAudit) settings() []CheckResult {
	var out []CheckResult
	for _, s := range settings {
		r := newResult(s.id)
		r.Evidence.Command = a.cmd
		rows, err := a.configRows("path = ?", s.path)
		if err != nil {
			out = append(out, errResult(r, err))
			continue
		}
		var vals []string
		bad := false
		for _, row := range rows {
			v := strings.TrimSpace(row.value.String)
			vals = append(vals, fmt.Sprintf("%s@%s:%d=%s", s.path, row.scope, row.scopeID, v))
			if v == s.bad {
				bad = true
			}
		}
		if len(rows) == 0 {
			vals = append(vals, fmt.Sprintf("%s not set, default %s", s.path, s.def))
			bad = s.def == s.bad
		}
		r.Evidence.Detail = strings.Join(vals, "; ")
		if bad {
			r.Status, r.Fix = s.status, s.fix
		} else {
			r.Status = StatusPass
		}
		out = append(out, r)
	}
	return out
}

// resolveSecret reads a "file:/path" or "env:NAME" reference.
func resolveSecret(ref string) (string, error) {
	switch {
	case strings.HasPrefix(ref, "file:"):
		b, err := os.ReadFile(strings.TrimPrefix(ref, "file:"))
		if err != nil {
			return "", fmt.Errorf("database password reference: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimRight(line, "\r"), nil
	case strings.HasPrefix(ref, "env:"):
		v, ok := os.LookupEnv(strings.TrimPrefix(ref, "env:"))
		if !ok {
			return "", fmt.Errorf("database password reference %s: variable not set in the agent's environment", ref)
		}
		return v, nil
	}
	return "", fmt.Errorf("database password reference %q must be file:/path or env:NAME", ref)
}
