package m1audit

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit/m1test"
)

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

var dbIDs = []string{CheckDBConfigScripts, CheckDBCMSContent, CheckDBAdminUsers, CheckDBCompatMode, CheckDBAllowSymlink, CheckDBAdminCaptcha, CheckDBFormKey}

// TestDatabaseChecks loads an M1-shaped schema into a real MariaDB twice:
// a clean store must produce zero findings, an injected one every finding.
func TestDatabaseChecks(t *testing.T) {
	m := m1test.StartMariaDB(t)
	sigs := shipped(t)
	ctx := context.Background()

	// Clean store, connection passed explicitly, no table prefix.
	clean := m.CreateStore(t, "clean", "", "auditor", "audit-pw")
	for _, row := range [][3]string{
		{"default", "web/unsecure/base_url", "http://shop.example.com/"},
		{"default", "web/secure/base_url", "https://shop.example.com/"},
		{"default", "design/head/includes", `<link rel="stylesheet" href="{{MEDIA_URL}}styles.css"/><script src="https://shop.example.com/js/custom.js"></script><script type="text/javascript" src="{{skin url='js/x.js'}}"></script>`},
		{"default", "design/footer/absolute_footer", `<script>var ga = document.createElement('script'); ga.src = 'https://shop.example.com/ga.js';</script>`},
		{"default", "admin/security/use_form_key", "1"},
		{"default", "admin/captcha/enable", "1"},
		{"default", "admin/security/extensions_compatibility_mode", "0"},
	} {
		mustExec(t, clean, "INSERT INTO core_config_data (scope, scope_id, path, value) VALUES (?, 0, ?, ?)", row[0], row[1], row[2])
	}
	mustExec(t, clean, "INSERT INTO cms_block (title, identifier, content) VALUES ('Footer', 'footer_links', '<ul><li><a href=\"{{store url=\"\"}}\">Home</a></li></ul><script src=\"https://cdn.trusted.example/widget.js\"></script>')")
	mustExec(t, clean, "INSERT INTO cms_page (title, identifier, content) VALUES ('Home', 'home', '<h1>Welcome</h1><p>onepage checkout is fast</p>')")
	mustExec(t, clean, "INSERT INTO admin_user (firstname, lastname, email, username, password, created, logdate, lognum, is_active) VALUES ('Ann','Admin','ann@example.com','ann','x','2019-01-01 00:00:00','2026-05-30 09:00:00',812,1)")
	mustExec(t, clean, "INSERT INTO admin_user (firstname, lastname, email, username, password, created, logdate, lognum, is_active) VALUES ('Old','Dev','old@example.com','olddev','x','2015-01-01 00:00:00','2016-01-01 00:00:00',3,0)")

	tg := targetFor(t.TempDir())
	o := AuditOptions{Signatures: sigs, Now: func() time.Time { return fixedNow }, KnownAdmins: []string{"ann"}, RecentAdminDays: 30,
		ScriptHosts: []string{"*.trusted.example"},
		DB:          &DBConfig{Socket: m.Socket, User: "auditor", Password: "audit-pw", Name: "clean"}}
	rs := dbChecks(ctx, tg, o)
	if len(rs) != len(dbIDs) {
		t.Fatalf("%d database results, want %d", len(rs), len(dbIDs))
	}
	for _, r := range rs {
		if r.Status != StatusPass || len(r.Evidence.Findings) > 0 || r.Compromise {
			t.Errorf("clean %s: %s, %d findings %+v (%s)", r.ID, r.Status, len(r.Evidence.Findings), r.Evidence.Findings, r.Evidence.Detail)
		}
	}
	if r := resultByID(t, rs, CheckDBAdminUsers); !strings.Contains(r.Evidence.Detail, "1 active admin user(s): ann") {
		t.Errorf("inactive users must be left out: %s", r.Evidence.Detail)
	}

	// Injected store: connection from local.xml (socket path as host),
	// table prefix m1_.
	dirty := m.CreateStore(t, "shop", "m1_", "shop", "s3cret-Pa55")
	for _, row := range []struct {
		scope string
		id    int
		path  string
		value string
	}{
		{"default", 0, "web/secure/base_url", "https://shop.example.com/"},
		{"stores", 1, "design/head/includes", `<script>var u=atob("aHR0cHM6Ly9leGFtcGxlLmludmFsaWQ=");var s=document.createElement("script");s.src=u;</script>`},
		{"websites", 1, "design/footer/absolute_footer", `<script src="//mcdnn.example.net/122002/assets/js/widget.js"></script>`},
		{"default", 0, "admin/security/extensions_compatibility_mode", "1"},
		{"default", 0, "dev/template/allow_symlink", "1"},
		{"default", 0, "admin/captcha/enable", "0"},
		{"default", 0, "admin/security/use_form_key", "0"},
	} {
		mustExec(t, dirty, "INSERT INTO m1_core_config_data (scope, scope_id, path, value) VALUES (?, ?, ?, ?)", row.scope, row.id, row.path, row.value)
	}
	mustExec(t, dirty, "INSERT INTO m1_cms_block (title, identifier, content) VALUES ('x', 'promo', '<div>Sale</div><script>var u=atob(\"aHR0cHM6Ly9leGFtcGxlLmludmFsaWQ=\");var s=document.createElement(\"script\");</script>')")
	mustExec(t, dirty, "INSERT INTO m1_cms_page (title, identifier, content) VALUES ('x', 'about', '<p>About</p><script>var u=\"https://example.invalid/gate.php?token=1\";</script>')")
	mustExec(t, dirty, "INSERT INTO m1_admin_user (firstname, lastname, email, username, password, created, logdate, lognum, is_active) VALUES ('Ann','Admin','ann@example.com','ann','x','2019-01-01','2026-05-30',812,1)")
	mustExec(t, dirty, "INSERT INTO m1_admin_user (firstname, lastname, email, username, password, created, logdate, lognum, is_active) VALUES ('Support','Team','support@example.invalid','support','x','2026-05-20','2026-05-20',1,1)")
	mustExec(t, dirty, "INSERT INTO m1_admin_user (firstname, lastname, email, username, password, created, logdate, lognum, is_active) VALUES ('Gone','Rogue','r@example.invalid','rogue_off','x','2026-05-20',NULL,0,0)")

	root := t.TempDir()
	writeFile(t, filepath.Join(root, "app/etc/local.xml"), localXMLFixture("shop_backend", m.Socket, "m1_"))
	tg = targetFor(root)
	o.DB = nil
	rs = dbChecks(ctx, tg, o)
	want := map[string]struct {
		st         Status
		compromise bool
		evidence   string
	}{
		CheckDBConfigScripts: {StatusFail, true, "m1_core_config_data[design/head/includes@stores:1]"},
		CheckDBCMSContent:    {StatusFail, true, "m1_cms_page[1 about]"},
		CheckDBAdminUsers:    {StatusFail, true, "m1_admin_user[support]"},
		CheckDBCompatMode:    {StatusFail, false, "extensions_compatibility_mode@default:0=1"},
		CheckDBAllowSymlink:  {StatusFail, false, "allow_symlink@default:0=1"},
		CheckDBAdminCaptcha:  {StatusNeedsPerson, false, "enable@default:0=0"},
		CheckDBFormKey:       {StatusFail, false, "use_form_key@default:0=0"},
	}
	for _, r := range rs {
		w := want[r.ID]
		ev := findingPaths(r) + " " + r.Evidence.Detail
		if r.Status != w.st || r.Compromise != w.compromise || !strings.Contains(ev, w.evidence) {
			t.Errorf("dirty %s: %s compromise=%v evidence %q; want %s %v containing %q", r.ID, r.Status, r.Compromise, ev, w.st, w.compromise, w.evidence)
		}
		if r.Status != StatusPass && r.Fix == "" {
			t.Errorf("%s: no Fix text", r.ID)
		}
	}
	cfg := resultByID(t, rs, CheckDBConfigScripts)
	if !strings.Contains(findingPaths(cfg), "absolute_footer@websites:1") {
		t.Errorf("foreign script host in the footer not flagged: %+v", cfg.Evidence.Findings)
	}
	cms := resultByID(t, rs, CheckDBCMSContent)
	if !strings.Contains(findingPaths(cms), "m1_cms_block[1 promo]") {
		t.Errorf("cms_block skimmer not flagged: %+v", cms.Evidence.Findings)
	}
	if adm := resultByID(t, rs, CheckDBAdminUsers); strings.Contains(findingPaths(adm), "rogue_off") || strings.Contains(findingPaths(adm), "[ann]") {
		t.Errorf("inactive or known admins flagged: %s", findingPaths(adm))
	}
	js, _ := json.Marshal(rs)
	if strings.Contains(string(js), "s3cret-Pa55") {
		t.Error("the database password from local.xml appears in the results")
	}

	// Recent but known admin: a person confirms; no list at all: a person
	// confirms every admin.
	o.KnownAdmins = []string{"ann", "support"}
	if r := resultByID(t, dbChecks(ctx, tg, o), CheckDBAdminUsers); r.Status != StatusNeedsPerson || r.Compromise {
		t.Errorf("recent known admin: %s compromise=%v", r.Status, r.Compromise)
	}
	o.KnownAdmins = nil
	o.DB = &DBConfig{Socket: m.Socket, User: "auditor", Password: "audit-pw", Name: "clean"}
	if r := resultByID(t, dbChecks(ctx, tg, o), CheckDBAdminUsers); r.Status != StatusNeedsPerson {
		t.Errorf("no known-admin list: %s", r.Status)
	}
	// A password reference (what a workflow passes) is resolved on the host.
	ref := filepath.Join(t.TempDir(), "dbpw")
	writeFile(t, ref, "audit-pw\n")
	o.DB = &DBConfig{Socket: m.Socket, User: "auditor", PasswordRef: "file:" + ref, Name: "clean"}
	if r := resultByID(t, dbChecks(ctx, tg, o), CheckDBFormKey); r.Status != StatusPass {
		t.Errorf("password from file: reference: %s %s", r.Status, r.Evidence.Detail)
	}
	o.DB.PasswordRef = "env:M1AUDIT_TEST_UNSET_VARIABLE"
	if r := resultByID(t, dbChecks(ctx, tg, o), CheckDBFormKey); r.Status != StatusError || !strings.Contains(r.Evidence.Detail, "not set") {
		t.Errorf("unset env: reference: %s %s", r.Status, r.Evidence.Detail)
	}
	// Wrong password: every database check says error, password not echoed.
	o.DB = &DBConfig{Socket: m.Socket, User: "auditor", Password: "wrong-pw-xyz", Name: "clean"}
	for _, r := range dbChecks(ctx, tg, o) {
		if r.Status != StatusError || strings.Contains(r.Evidence.Detail, "wrong-pw-xyz") {
			t.Errorf("bad credentials %s: %s %q", r.ID, r.Status, r.Evidence.Detail)
		}
	}
}
