package m1fix

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) {
	bcryptCost = bcrypt.MinCost // same code path, cheaper hash (see bcryptCost)
	os.Exit(m.Run())
}

func TestFindServersAndInclude(t *testing.T) {
	src := `upstream php { server 127.0.0.1:9000; }
server { # live
    listen 80;
    server_name "shop.example" www.shop.example;
    location = /x { return 200 "}{;"; }
    location ^~ /app/ { deny all; }
    location ~ \.php$ { fastcgi_pass php; }
    include /etc/nginx/snippets/a.conf;
}
server {
    server_name staging.shop.example;
    include /etc/nginx/mageflow/m1-staging.conf;
}
`
	bs := findServers(src)
	if len(bs) != 2 {
		t.Fatalf("found %d server blocks, want 2", len(bs))
	}
	if got := strings.Join(bs[0].names, ","); got != "shop.example,www.shop.example" {
		t.Errorf("names %q", got)
	}
	if len(bs[0].locations) != 3 || bs[0].locations[1] != [2]string{"^~", "/app/"} {
		t.Errorf("locations %v", bs[0].locations)
	}
	if !vhostHas(bs[0].locations, "^~ /app/") || vhostHas(bs[0].locations, "= /app/") || !vhostHas(bs[0].locations, "= /x") {
		t.Error("vhostHas: a prefix duplicates a prefix, an exact location only an exact one")
	}
	sb, need, err := needInclude(src, 0, []string{"staging.shop.example"}, "/etc/nginx/mageflow/m1-staging.conf")
	if err != nil || need || sb.line != 10 {
		t.Errorf("staging already includes its file: need=%v line=%d err=%v", need, sb.line, err)
	}
	sb, need, err = needInclude(src, 4, nil, "/etc/nginx/mageflow/m1-shop.conf")
	if err != nil || !need || sb.line != 2 {
		t.Fatalf("live by line: need=%v line=%d err=%v", need, sb.line, err)
	}
	out := addIncludes(src, []insertion{{at: sb.open, path: "/etc/nginx/mageflow/m1-shop.conf"}})
	if again := findServers(out); len(again[0].includes) != 2 || again[0].includes[0] != "/etc/nginx/mageflow/m1-shop.conf" {
		t.Errorf("include not first in the block:\n%s", out)
	}
	if _, _, err := needInclude(src, 0, []string{"other.example"}, "/x.conf"); err == nil {
		t.Error("two blocks, no name match: want an error, not a guess")
	}
}

func TestSetLimitExt(t *testing.T) {
	debian := "[www]\nuser = www-data\nlisten = /run/php/php8.2-fpm.sock\n;security.limit_extensions = .php .php3 .php4\n\n"
	out, was, changed, err := setLimitExt(debian, "unix:/run/php/php8.2-fpm.sock")
	if err != nil || !changed || was != "" || !strings.Contains(out, "\nsecurity.limit_extensions = .php ;") {
		t.Fatalf("commented default: changed=%v was=%q err=%v\n%s", changed, was, err, out)
	}
	if _, _, changed, _ := setLimitExt(out, ""); changed {
		t.Error("second run changed the pool")
	}
	two := "[global]\npid = /run/x.pid\n[a]\nlisten = /a.sock\nsecurity.limit_extensions = .php .jpg\n[b]\nlisten = /b.sock\n"
	out, was, changed, err = setLimitExt(two, "/a.sock")
	if err != nil || !changed || was != ".php .jpg" || strings.Contains(out, ".jpg") || strings.Count(out, "limit_extensions") != 1 {
		t.Errorf("replace in pool a: was=%q err=%v\n%s", was, err, out)
	}
	if _, _, _, err := setLimitExt(two, "/c.sock"); err == nil {
		t.Error("two pools, none matching: want an error")
	}
}

func TestSealDetectsHandEdit(t *testing.T) {
	s := seal("a\nb\n")
	if m, ok := sealState([]byte(s)); !m || !ok {
		t.Fatal("fresh file not intact")
	}
	if m, ok := sealState([]byte(s + "x\n")); !m || ok {
		t.Error("edit not detected")
	}
	if m, _ := sealState([]byte("server {}\n")); m {
		t.Error("foreign file taken as managed")
	}
}

func TestHtpasswdKeptWhenPasswordMatches(t *testing.T) {
	a := BasicAuth{User: "ops", Password: "pw one"}
	first, err := htpasswd(nil, a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(first), "ops:$2a$") || strings.Contains(string(first), "pw one") {
		t.Fatalf("htpasswd %q", first)
	}
	if again, _ := htpasswd(first, a); string(again) != string(first) {
		t.Error("same password re-hashed: a second Apply would change the file")
	}
	if other, _ := htpasswd(first, BasicAuth{User: "ops", Password: "pw two"}); string(other) == string(first) {
		t.Error("changed password kept the old hash")
	}
}

func TestRenderNginxValidates(t *testing.T) {
	base := m1audit.Target{WebRoot: "/w", AdminFrontName: "ctl", Vhosts: []m1audit.Vhost{{ServerNames: []string{"s"}, FastCGIPass: "unix:/run/php.sock"}}}
	for name, mut := range map[string]func(*m1audit.Target, *Options){
		"front name":  func(t *m1audit.Target, _ *Options) { t.AdminFrontName = "a;b" },
		"fastcgi":     func(t *m1audit.Target, _ *Options) { t.Vhosts[0].FastCGIPass = "unix:/x; evil" },
		"allow":       func(_ *m1audit.Target, o *Options) { o.AdminAllow = []string{"10.0.0.0/8; allow all"} },
		"realm":       func(_ *m1audit.Target, o *Options) { o.BasicAuth = &BasicAuth{User: "u", Password: "p", Realm: `x"y`} },
		"entry point": func(_ *m1audit.Target, o *Options) { o.PHPEntryPoints = []string{"../x.php"} },
	} {
		tg := base
		tg.Vhosts = append([]m1audit.Vhost(nil), base.Vhosts...)
		var o Options
		mut(&tg, &o)
		if _, _, err := RenderNginx(&tg, o); err == nil {
			t.Errorf("%s: bad value accepted", name)
		}
	}
	a, _, err := RenderNginx(&base, Options{})
	b, _, _ := RenderNginx(&base, Options{})
	if err != nil || a != b {
		t.Fatalf("render not deterministic: %v", err)
	}
	if !strings.Contains(a, `if ($uri ~* "^/+(index\.php/*)?((?!(media|skin|js|errors)/)[a-z0-9_]+/+)?admin(/|$)") { return 404; }`) {
		t.Error("/admin not refused when the frontName differs")
	}
}

func TestSSHDNotIncludedIsReverted(t *testing.T) {
	s := sshdFixture(t, t.TempDir())
	// A main config that does not read the drop-in directory.
	main := s.args[1]
	if err := os.WriteFile(main, []byte("PasswordAuthentication no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := &m1audit.Target{PHPUser: "nobody"}
	r := applySSHD(context.Background(), tg, Options{SSHDBinary: s.bin, SSHDArgs: s.args, SSHDDropInDir: s.dropIns, ReloadSSHD: func(context.Context) error { t.Error("reloaded"); return nil }})
	if r.Status != m1audit.StatusNeedsPerson || !strings.Contains(r.Fix, "Include") {
		t.Errorf("status %s %q", r.Status, r.Evidence.Detail)
	}
	if _, err := os.Stat(filepath.Join(s.dropIns, SSHDropIn)); err == nil {
		t.Error("drop-in left behind although sshd does not read it")
	}
	r = applySSHD(context.Background(), tg, Options{SSHDBinary: filepath.Join(t.TempDir(), "no-sshd")})
	if r.Status != m1audit.StatusNotApplicable {
		t.Errorf("no sshd: %s", r.Status)
	}
}

// applyOwnership plans, carries out and reports the ownership fix alone
// (Apply adds the forensic snapshot in between).
func applyOwnership(t *m1audit.Target, o Options) m1audit.CheckResult {
	ids, stop := resolveOwners(t, o)
	if stop != nil {
		return *stop
	}
	p := planOwnership(t, o, ids)
	if !o.DryRun {
		p.execute()
	}
	return ownershipResult(t, o, p)
}

func TestOwnershipWithoutDeployUserNeedsPerson(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root)
	chownFixture(t, root)
	r := applyOwnership(&m1audit.Target{WebRoot: root, PHPUser: "nobody", PHPGroup: "nogroup"}, Options{Writable: []string{"skin/frontend"}})
	if r.Status != m1audit.StatusNeedsPerson || !strings.Contains(r.Evidence.Detail, "skin/ was listed as writable and ignored") {
		t.Errorf("%s %q", r.Status, r.Evidence.Detail)
	}
	fi, _ := os.Stat(filepath.Join(root, "app/code/local/Evil/x.php"))
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("group write for the PHP group not removed: %o", fi.Mode().Perm())
	}
}

func TestCatalogCoversResults(t *testing.T) {
	ids := map[string]bool{}
	for _, c := range Catalog() {
		ids[c.ID] = true
	}
	for _, id := range []string{IDNginx, IDDesignPost, IDAdminAuth, IDAdminDaily, IDFPMLimitExt, IDSSHDenyPHP, IDOwnership, IDForensics} {
		if !ids[id] {
			t.Errorf("%s missing from Catalog", id)
		}
	}
}
