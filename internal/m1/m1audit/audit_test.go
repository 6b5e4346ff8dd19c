package m1audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fileOpts(t *testing.T) AuditOptions {
	return AuditOptions{Signatures: shipped(t), PHPIdentity: &Identity{UID: phpUID, GIDs: []int{phpUID}}, Now: func() time.Time { return fixedNow }}
}

func TestFileChecksGoodStoreAllPass(t *testing.T) {
	root := t.TempDir()
	goodStore(t, root)
	rs := fileChecks(context.Background(), targetFor(root), fileOpts(t))
	if len(rs) != 10 {
		t.Fatalf("want 10 file results, got %d", len(rs))
	}
	for _, r := range rs {
		if r.Status != StatusPass {
			t.Errorf("%s: status %s, want pass: %+v", r.ID, r.Status, r.Evidence)
		}
		if r.Compromise {
			t.Errorf("%s marked compromise on a clean tree", r.ID)
		}
	}
}

func TestFileChecksBadStore(t *testing.T) {
	root := t.TempDir()
	goodStore(t, root)
	bad := map[string]string{
		"downloader/index.php":                       phpHead + "// connect\n",
		"var/connect/package.xml":                    "<package/>",
		".git/config":                                "[core]\n",
		"install.php":                                phpHead,
		"RELEASE_NOTES.txt":                          "notes",
		"dev/tests/functional/x.php":                 phpHead,
		"app/code/local/Evil/Shell.php":              phpHead + "if (false) eval(base64_decode($_POST['x']));\n",
		"media/wysiwyg/x.php":                        phpHead + "// dropped\n",
		"skin/frontend/base/default/images/logo.gif": "GIF89a\x01\x00<?php system('id'); ?>",
		"app/code/local/Mine/Owned.php":              phpHead + "// owned by PHP user\n",
	}
	for p, c := range bad {
		writeFile(t, filepath.Join(root, p), c)
	}
	// Code owned by the PHP user at mode 0400 still fails (it can chmod).
	owned := filepath.Join(root, "app/code/local/Mine/Owned.php")
	if err := os.Chown(owned, phpUID, phpUID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(owned, 0o400); err != nil {
		t.Fatal(err)
	}
	// skin/ writable by the PHP user via its group; lib/ world-writable.
	if err := os.Chown(filepath.Join(root, "skin"), 0, phpUID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "skin"), 0o775); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "lib"), 0o777); err != nil {
		t.Fatal(err)
	}
	o := fileOpts(t)
	o.WritableExceptions = []string{"skin", "includes"}
	rs := fileChecks(context.Background(), targetFor(root), o)
	want := map[string]struct {
		st         Status
		compromise bool
		contains   string
	}{
		CheckSignature:     {StatusFail, true, "app/code/local/Evil/Shell.php"},
		CheckPHPInImage:    {StatusFail, true, "skin/frontend/base/default/images/logo.gif"},
		CheckPHPInStatic:   {StatusFail, true, "media/wysiwyg/x.php"},
		CheckUnscanned:     {StatusPass, false, ""},
		CheckDownloader:    {StatusFail, false, "var/connect"},
		CheckVCS:           {StatusFail, false, ".git"},
		CheckWorldWritable: {StatusFail, false, "lib"},
		CheckWritableTree:  {StatusFail, false, "skin"},
		CheckCodeOwner:     {StatusFail, false, "app/code/local/Mine/Owned.php"},
		CheckDevFiles:      {StatusNeedsPerson, false, "dev/tests"},
	}
	for _, r := range rs {
		w, ok := want[r.ID]
		if !ok {
			t.Errorf("unexpected result %s", r.ID)
			continue
		}
		if r.Status != w.st || r.Compromise != w.compromise {
			t.Errorf("%s: status %s compromise %v, want %s %v (%+v)", r.ID, r.Status, r.Compromise, w.st, w.compromise, r.Evidence)
		}
		all := findingPaths(r) + "," + strings.Join(r.Evidence.Files, ",")
		if !strings.Contains(all, w.contains) {
			t.Errorf("%s: evidence %q does not name %q", r.ID, all, w.contains)
		}
		if r.Status == StatusFail && r.Fix == "" {
			t.Errorf("%s fails without a Fix text", r.ID)
		}
	}
	wr := resultByID(t, rs, CheckWritableTree)
	if !strings.Contains(wr.Evidence.Detail, "skin") || strings.Contains(findingPaths(wr), "var") {
		t.Errorf("skin exception must be ignored and var allowed: detail %q findings %q", wr.Evidence.Detail, findingPaths(wr))
	}
}

func TestConfigChecks(t *testing.T) {
	good := targetFor("/srv/shop")
	o := AuditOptions{Now: func() time.Time { return fixedNow }}
	for _, r := range configChecks(good, o) {
		want := StatusPass
		switch r.ID {
		case CheckMagentoVersion:
			want = StatusNeedsPerson // CE 1.9.4.5 is patched but end-of-life
		case CheckStagingAuth:
			want = StatusNotApplicable
		}
		if r.Status != want {
			t.Errorf("good %s: %s, want %s (%s)", r.ID, r.Status, want, r.Evidence.Detail)
		}
	}
	cases := []struct {
		name   string
		mutate func(*Target)
		id     string
		want   Status
	}{
		{"limit_ext missing", func(t *Target) { t.LimitExt, t.LimitExtDefault = []string{".php", ".phar"}, true }, CheckLimitExt, StatusFail},
		{"limit_ext extra", func(t *Target) { t.LimitExt = []string{".php", ".jpg"} }, CheckLimitExt, StatusFail},
		{"limit_ext empty", func(t *Target) { t.LimitExt = []string{} }, CheckLimitExt, StatusFail},
		{"no pool", func(t *Target) { t.FPMPoolFile = "" }, CheckLimitExt, StatusError},
		{"admin default", func(t *Target) { t.AdminFrontName = "Admin" }, CheckAdminFrontName, StatusFail},
		{"admin unknown", func(t *Target) { t.AdminFrontName = "" }, CheckAdminFrontName, StatusError},
		{"php eol", func(t *Target) { t.PHPVersion = "7.4.33" }, CheckPHPVersion, StatusFail},
		{"php ends soon", func(t *Target) { t.PHPVersion = "8.2.29" }, CheckPHPVersion, StatusPass},
		{"php unknown branch", func(t *Target) { t.PHPVersion = "9.9.0" }, CheckPHPVersion, StatusNeedsPerson},
		{"php unknown", func(t *Target) { t.PHPVersion = "" }, CheckPHPVersion, StatusError},
		{"magento old", func(t *Target) { t.Version = "1.9.3.10" }, CheckMagentoVersion, StatusFail},
		{"magento old patched", func(t *Target) { t.Version, t.Patches = "1.9.4.2", []string{"SUPEE-11346"} }, CheckMagentoVersion, StatusNeedsPerson},
		{"magento unknown", func(t *Target) { t.Version = "" }, CheckMagentoVersion, StatusNeedsPerson},
		{"openmage", func(t *Target) { t.Version, t.OpenMage = "20.10.2", true }, CheckMagentoVersion, StatusPass},
		{"staging open", func(t *Target) {
			t.Vhosts = []Vhost{{ServerNames: []string{"staging.shop.example.com"}, Staging: true}}
		}, CheckStagingAuth, StatusFail},
		{"staging auth", func(t *Target) {
			t.Vhosts = []Vhost{{ServerNames: []string{"staging.shop.example.com"}, Staging: true, BasicAuth: true}}
		}, CheckStagingAuth, StatusPass},
	}
	for _, c := range cases {
		tg := targetFor("/srv/shop")
		c.mutate(tg)
		r := resultByID(t, configChecks(tg, o), c.id)
		if r.Status != c.want {
			t.Errorf("%s: %s = %s, want %s (%s)", c.name, c.id, r.Status, c.want, r.Evidence.Detail)
		}
	}
	// 8.2 ends 2026-12-31: within 90 days of that it needs a person.
	late := AuditOptions{Now: func() time.Time { return PHPSupportEnds["8.2"].AddDate(0, -1, 0) }}
	tg := targetFor("/srv/shop")
	tg.PHPVersion = "8.2.29"
	if r := resultByID(t, configChecks(tg, late), CheckPHPVersion); r.Status != StatusNeedsPerson {
		t.Errorf("PHP a month before end of support: %s, want needs_person", r.Status)
	}
	// The operator's table wins.
	over := AuditOptions{Now: func() time.Time { return fixedNow }, PHPSupport: map[string]time.Time{"8.3": fixedNow.AddDate(0, 0, -1)}}
	if r := resultByID(t, configChecks(targetFor("/srv/shop"), over), CheckPHPVersion); r.Status != StatusFail {
		t.Errorf("PHPSupport override ignored: %s", r.Status)
	}
}

func TestAuditCoversCatalogInOrder(t *testing.T) {
	root := t.TempDir()
	goodStore(t, root)
	o := fileOpts(t)
	o.SSHDBinary = "/nonexistent/sshd"
	o.DB = &DBConfig{Socket: filepath.Join(root, "no.sock"), User: "x", Password: "pw-never-shown", Name: "shop"}
	o.PasswdFile = writePasswd(t, "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n")
	rs, err := Audit(context.Background(), targetFor(root), o)
	if err != nil {
		t.Fatal(err)
	}
	cat := CheckCatalog()
	if len(rs) != len(cat) {
		t.Fatalf("%d results for %d catalog entries", len(rs), len(cat))
	}
	for i, r := range rs {
		if r.ID != cat[i].ID {
			t.Errorf("result %d is %s, catalog says %s", i, r.ID, cat[i].ID)
		}
		if r.Status == "" || r.Title == "" || r.Severity == "" {
			t.Errorf("%s incomplete: %+v", r.ID, r)
		}
		if strings.Contains(r.Evidence.Detail+r.Evidence.Command, "pw-never-shown") {
			t.Errorf("%s leaks the DB password: %s", r.ID, r.Evidence.Detail)
		}
	}
	if r := resultByID(t, rs, CheckSSHDDenied); r.Status != StatusNotApplicable {
		t.Errorf("absent sshd: %s, want not_applicable (%s)", r.Status, r.Evidence.Detail)
	}
	if r := resultByID(t, rs, CheckDBAdminUsers); r.Status != StatusError || !strings.Contains(r.Evidence.Detail, "no.sock") {
		t.Errorf("unreachable DB: %s %q", r.Status, r.Evidence.Detail)
	}
	if _, err := Audit(context.Background(), targetFor(root), AuditOptions{}); err == nil {
		t.Error("Audit without signatures must fail")
	}
}

func writePasswd(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, p, content)
	return p
}
