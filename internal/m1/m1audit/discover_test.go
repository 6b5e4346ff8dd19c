package m1audit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// dumpFor builds `nginx -T` output the way nginx prints it: status lines,
// then each file after its marker, include directives left in place.
func dumpFor(files ...string) string {
	var b strings.Builder
	b.WriteString("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\nnginx: configuration file /etc/nginx/nginx.conf test is successful\n")
	for i := 0; i+1 < len(files); i += 2 {
		fmt.Fprintf(&b, "# configuration file %s:\n%s\n", files[i], files[i+1])
	}
	return b.String()
}

const mainConf = `user www-data;
error_log /var/log/nginx/error.log;
events { worker_connections 768; }
http {
    # a comment with { braces } and ; semicolons
    access_log /var/log/nginx/access.log;
    include mime.types;
    map $http_user_agent $bad_ua { default 0; "~*visbot" 1; }
    upstream fpm_shop { server unix:/run/php/shop.sock; }
    include /etc/nginx/sites-enabled/*;
}
`

func siteConf(root string) string {
	return fmt.Sprintf(`server {
    listen 443 ssl http2;
    listen [::]:443 ssl;
    server_name shop.example.com www.shop.example.com;
    root %s;
    access_log /var/log/nginx/shop.access.log combined;
    add_header Content-Security-Policy "script-src 'self'; object-src 'none'";
    location / { try_files $uri $uri/ @handler; }
    location ~ ^/(app|var)/ { deny all; }
    location ~ \.php$ {
        if (!-e $request_filename) { rewrite / /index.php last; }
        fastcgi_pass fpm_shop;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        include fastcgi_params;
    }
}
`, root)
}

func TestParseNginxDump(t *testing.T) {
	dump := dumpFor(
		"/etc/nginx/nginx.conf", mainConf,
		"/etc/nginx/mime.types", "types { text/html html; }",
		"/etc/nginx/sites-enabled/shop", siteConf("/srv/shop/current"),
		"/etc/nginx/sites-enabled/other", `server { listen 80; server_name "other.example.com"; location / { root '/srv/other'; fastcgi_pass 127.0.0.1:9000; } error_log /var/log/nginx/other.err warn; access_log off; }`,
		"/etc/nginx/fastcgi_params", "fastcgi_param QUERY_STRING $query_string;",
	)
	d, err := ParseNginxDump(dump)
	if err != nil {
		t.Fatal(err)
	}
	ss := d.servers()
	if len(ss) != 2 {
		t.Fatalf("want 2 servers, got %d", len(ss))
	}
	other, shop := ss[0].Vhost, ss[1].Vhost // include globs expand in sorted order
	if !reflect.DeepEqual(shop.ServerNames, []string{"shop.example.com", "www.shop.example.com"}) || shop.Root != "/srv/shop/current" ||
		shop.FastCGIPass != "unix:/run/php/shop.sock" || len(shop.Listen) != 2 || shop.File != "/etc/nginx/sites-enabled/shop:1" {
		t.Errorf("shop vhost: %+v", shop)
	}
	if other.Root != "/srv/other" || other.FastCGIPass != "127.0.0.1:9000" || other.ServerNames[0] != "other.example.com" {
		t.Errorf("other vhost (root from location /, quoted names): %+v", other)
	}
	logs := strings.Join(d.logs(), ",")
	for _, l := range []string{"/var/log/nginx/error.log", "/var/log/nginx/access.log", "/var/log/nginx/shop.access.log", "/var/log/nginx/other.err"} {
		if !strings.Contains(logs, l) {
			t.Errorf("logs %s miss %s", logs, l)
		}
	}
	if strings.Contains(logs, "off") {
		t.Errorf("access_log off listed as a log: %s", logs)
	}
	for _, bad := range []string{"", "nginx: [emerg] unknown directive\n", dumpFor("/etc/nginx/nginx.conf", "http { server { listen 80; }"), dumpFor("/etc/nginx/nginx.conf", "http { server_name \"x; }")} {
		if _, err := ParseNginxDump(bad); err == nil {
			t.Errorf("dump %q parsed without error", bad)
		}
	}
}

func TestLooksStaging(t *testing.T) {
	for _, c := range []struct {
		names []string
		root  string
		want  bool
	}{
		{[]string{"staging.shop.example.com"}, "/srv/shop", true},
		{[]string{"dev-shop.example.com"}, "/srv/shop", true},
		{[]string{"shop.example.com"}, "/var/www/staging/current", true},
		{[]string{"shop.example.com"}, "/srv/shop/current", false},
		{[]string{"shop.dev"}, "/srv/shop", false},
		{[]string{"contest.example.com"}, "/srv/shop", false},
	} {
		if got := looksStaging(c.names, c.root); got != c.want {
			t.Errorf("looksStaging(%v, %s) = %v", c.names, c.root, got)
		}
	}
}

func TestListenMatches(t *testing.T) {
	for _, c := range []struct {
		listen, pass string
		want         bool
	}{
		{"/run/php/shop.sock", "unix:/run/php/shop.sock", true},
		{"/run/php/other.sock", "unix:/run/php/shop.sock", false},
		{"127.0.0.1:9000", "127.0.0.1:9000", true},
		{"9000", "127.0.0.1:9000", true},
		{"127.0.0.1:9000", "localhost:9000", true},
		{"127.0.0.1:9001", "127.0.0.1:9000", false},
		{"[::]:9000", "10.0.0.5:9000", true},
		{"/run/php/shop.sock", "127.0.0.1:9000", false},
	} {
		if got := listenMatches(c.listen, c.pass); got != c.want {
			t.Errorf("listenMatches(%q, %q) = %v", c.listen, c.pass, got)
		}
	}
}

func TestParseVersionsAndPatches(t *testing.T) {
	v, err := ParseMageVersion([]byte(fmt.Sprintf(mageCE, "5")))
	if err != nil || v.Version != "1.9.4.5" || v.OpenMage || v.Edition != "Community" {
		t.Errorf("CE: %+v %v", v, err)
	}
	v, err = ParseMageVersion([]byte(mageOM))
	if err != nil || v.Version != "20.10.2" || !v.OpenMage || v.Magento != "1.9.4.5" {
		t.Errorf("OpenMage: %+v %v", v, err)
	}
	if _, err := ParseMageVersion([]byte("<?php class Mage {}")); err == nil {
		t.Error("no version functions must be an error")
	}
	list := "2019-01-01 10:00:00 UTC | SUPEE-10975_CE_v1.9.3.10 | CE_1.9.3.10 | v1 | abc | n/a | SUPEE-10975_CE_v1.9.3.10.sh\n" +
		"2020-07-01 10:00:00 UTC | SUPEE-11346 | CE_1.9.3.10 | v1 | def | n/a | PATCH_SUPEE-11346_CE_1.9.3.10_v1.sh\n" +
		"2020-07-02 10:00:00 UTC | SUPEE-10975 | CE_1.9.3.10 | v1 | abc | n/a | SUPEE-10975.sh | REVERTED\n"
	if got := ParseAppliedPatches([]byte(list)); !reflect.DeepEqual(got, []string{"SUPEE-11346"}) {
		t.Errorf("patches %v, want [SUPEE-11346] (10975 reverted)", got)
	}
	if v, err := ParsePHPVersion("PHP 8.2.29 (fpm-fcgi) (built: Jul  3 2025)\nCopyright (c) The PHP Group\n"); err != nil || v != "8.2.29" {
		t.Errorf("php -v: %q %v", v, err)
	}
	if _, err := ParsePHPVersion("bash: php: not found"); err == nil {
		t.Error("garbage -v output must be an error")
	}
	if compareVersions("1.9.4.10", "1.9.4.5") != 1 || compareVersions("1.9.4.5", "1.9.4.5") != 0 {
		t.Error("compareVersions")
	}
}

// fpmFixture writes a php-fpm.conf including pool.d/*.conf with a shop pool
// on listen and an unrelated www pool.
func fpmFixture(t *testing.T, dir, listen, shopPool string) string {
	t.Helper()
	main := filepath.Join(dir, "php-fpm.conf")
	writeFile(t, main, "[global]\npid = /run/php/x.pid\nerror_log = /var/log/php8.2-fpm.log\ninclude=pool.d/*.conf\n")
	writeFile(t, filepath.Join(dir, "pool.d", "www.conf"), "[www]\nuser = www-data\ngroup = www-data\nlisten = /run/php/php8.2-fpm.sock\n")
	writeFile(t, filepath.Join(dir, "pool.d", "shop.conf"), "; shop pool\n[shop]\nlisten = "+listen+"\n"+shopPool)
	return main
}

func TestDiscoverFromDump(t *testing.T) {
	base := t.TempDir()
	live := filepath.Join(base, "shop", "current")
	stage := filepath.Join(base, "shop-staging", "current")
	for _, r := range []string{live, stage} {
		writeFile(t, filepath.Join(r, "app/Mage.php"), fmt.Sprintf(mageCE, "5"))
		writeFile(t, filepath.Join(r, "app/etc/local.xml"), localXMLFixture("shop_backend", "db.internal:3307", "m1_"))
	}
	writeFile(t, filepath.Join(live, "app/etc/applied.patches.list"), "2020-07-01 | SUPEE-11346 | x\n")
	fpm := fpmFixture(t, filepath.Join(base, "fpm"), "/run/php/shop.sock",
		"user = shop-php\ngroup = shop-php\nsecurity.limit_extensions = .php .php5 ; legacy\nclear_env = no\nslowlog = /var/log/php/$pool.slow.log\nenv[OPENMAGE_CONFIG_OVERRIDE_ALLOWED] = 1\n")
	dump := dumpFor(
		"/etc/nginx/nginx.conf", mainConf,
		"/etc/nginx/sites-enabled/a-other", `server { listen 80; server_name other.example.com; root /srv/nothing; }`,
		"/etc/nginx/sites-enabled/shop", siteConf(live),
		"/etc/nginx/sites-enabled/shop-staging", "server { listen 80; server_name staging.shop.example.com; root "+stage+"; location ~ \\.php$ { fastcgi_pass unix:/run/php/shop.sock; } }",
	)
	tg, err := Discover(context.Background(), DiscoverOptions{NginxDump: dump, PHPFPMConf: fpm, PHPFPMBinary: "/nonexistent/php-fpm"})
	if err != nil {
		t.Fatal(err)
	}
	if tg.WebRoot != live || tg.DocRoot != live || tg.ServerName != "shop.example.com" || tg.FPMListen != "unix:/run/php/shop.sock" {
		t.Errorf("target: %+v", tg)
	}
	if len(tg.Vhosts) != 2 || tg.Vhosts[1].Staging != true || tg.Vhosts[0].Staging {
		t.Errorf("vhosts: %+v", tg.Vhosts)
	}
	if tg.PHPUser != "shop-php" || tg.PHPGroup != "shop-php" || !reflect.DeepEqual(tg.LimitExt, []string{".php", ".php5"}) || tg.LimitExtDefault ||
		tg.ClearEnv != "no" || tg.FPMPoolFile != filepath.Join(base, "fpm/pool.d/shop.conf") {
		t.Errorf("pool: %+v", tg)
	}
	if tg.AdminFrontName != "shop_backend" || tg.DBHost != "db.internal:3307" || tg.DBName != "shop" || tg.DBPrefix != "m1_" {
		t.Errorf("local.xml: %+v", tg)
	}
	if tg.Version != "1.9.4.5" || !reflect.DeepEqual(tg.Patches, []string{"SUPEE-11346"}) {
		t.Errorf("version: %s %v", tg.Version, tg.Patches)
	}
	logs := strings.Join(tg.Logs, ",")
	for _, l := range []string{"/var/log/nginx/shop.access.log", "/var/log/php/shop.slow.log", "/var/log/php8.2-fpm.log"} {
		if !strings.Contains(logs, l) {
			t.Errorf("logs %s miss %s", logs, l)
		}
	}
	if tg.PHPVersion != "" || !strings.Contains(strings.Join(tg.Notes, ";"), "PHP version unknown") {
		t.Errorf("a missing php binary must leave a note: %q %v", tg.PHPVersion, tg.Notes)
	}

	// By server name, the staging copy is chosen.
	tg, err = Discover(context.Background(), DiscoverOptions{NginxDump: dump, ServerName: "staging.shop.example.com", PHPFPMConf: fpm, PHPFPMBinary: "/nonexistent"})
	if err != nil || tg.WebRoot != stage {
		t.Errorf("by server name: %v %+v", err, tg)
	}
	// No pool on that address: discovery goes on and says why.
	other := fpmFixture(t, filepath.Join(base, "fpm2"), "127.0.0.1:9000", "user = x\n")
	tg, err = Discover(context.Background(), DiscoverOptions{NginxDump: dump, PHPFPMConf: other, PHPFPMBinary: "/nonexistent"})
	if err != nil || tg.PHPUser != "" || !strings.Contains(strings.Join(tg.Notes, ";"), "no PHP-FPM pool listens on unix:/run/php/shop.sock") {
		t.Errorf("missing pool: %v %+v", err, tg)
	}
	// Two live stores: ambiguous without a name.
	live2 := filepath.Join(base, "shop2", "current")
	writeFile(t, filepath.Join(live2, "app/Mage.php"), fmt.Sprintf(mageCE, "5"))
	two := dump + "# configuration file /etc/nginx/sites-enabled/zz:\nserver { server_name shop2.example.com; root " + live2 + "; }\n"
	if _, err := Discover(context.Background(), DiscoverOptions{NginxDump: two, PHPFPMConf: fpm, PHPFPMBinary: "/nonexistent"}); err == nil || !strings.Contains(err.Error(), "several Magento stores") {
		t.Errorf("two stores without a name: %v", err)
	}
	if _, err := Discover(context.Background(), DiscoverOptions{NginxDump: dumpFor("/etc/nginx/nginx.conf", "http { server { root /srv/none; } }")}); err == nil {
		t.Error("no Magento root must be an error")
	}
	// pub/ docroot: the Magento root is its parent.
	pub := filepath.Join(base, "om")
	writeFile(t, filepath.Join(pub, "app/Mage.php"), mageOM)
	writeFile(t, filepath.Join(pub, "pub/index.php"), phpHead)
	tg, err = Discover(context.Background(), DiscoverOptions{NginxDump: dumpFor("/etc/nginx/nginx.conf", "http { server { server_name om.example.com; root "+pub+"/pub; } }"), PHPFPMConf: fpm, PHPFPMBinary: "/nonexistent"})
	if err != nil || tg.WebRoot != pub || tg.DocRoot != pub+"/pub" || !tg.OpenMage || tg.Version != "20.10.2" {
		t.Errorf("pub docroot: %v %+v", err, tg)
	}
}

// TestDiscoverRealNginx runs the real `nginx -T` on a generated
// configuration and the real php-fpm -v.
func TestDiscoverRealNginx(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/nginx"); e != nil {
			t.Fatal("nginx not found: install the Debian package nginx-light")
		}
		nginx = "/usr/sbin/nginx"
	}
	fpmBin := "php-fpm8.2"
	if _, err := exec.LookPath(fpmBin); err != nil {
		if _, e := os.Stat("/usr/sbin/" + fpmBin); e != nil {
			t.Fatal("php-fpm8.2 not found: install the Debian package php8.2-fpm")
		}
		fpmBin = "/usr/sbin/" + fpmBin
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "shop")
	goodStore(t, root)
	conf := filepath.Join(dir, "nginx.conf")
	site := strings.Replace(siteConf(root), "listen 443 ssl http2;\n    listen [::]:443 ssl;", "listen 127.0.0.1:8080;", 1)
	writeFile(t, filepath.Join(dir, "sites", "shop.conf"), site)
	writeFile(t, filepath.Join(dir, "fastcgi_params"), "fastcgi_param QUERY_STRING $query_string;\n")
	writeFile(t, filepath.Join(dir, "mime.types"), "types { text/html html; }\n")
	writeFile(t, conf, fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 16; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/tmp;
    include mime.types;
    upstream fpm_shop { server unix:/run/php/shop.sock; }
    include %[1]s/sites/*.conf;
}
`, dir))
	fpm := fpmFixture(t, filepath.Join(dir, "fpm"), "/run/php/shop.sock", "user = www-data\ngroup = www-data\nsecurity.limit_extensions = .php\n")
	tg, err := Discover(context.Background(), DiscoverOptions{NginxBinary: nginx, NginxArgs: []string{"-p", dir, "-c", conf}, PHPFPMConf: fpm, PHPFPMBinary: fpmBin})
	if err != nil {
		t.Fatal(err)
	}
	if tg.WebRoot != root || tg.PHPUser != "www-data" || !strings.HasPrefix(tg.PHPVersion, "8.2.") || tg.AdminFrontName != "shop_backend" {
		t.Errorf("target from real nginx -T: %+v", tg)
	}
	if !strings.Contains(strings.Join(tg.Logs, ","), dir+"/access.log") {
		t.Errorf("logs: %v", tg.Logs)
	}
	_, err = Discover(context.Background(), DiscoverOptions{NginxBinary: nginx, NginxArgs: []string{"-p", dir, "-c", filepath.Join(dir, "missing.conf")}})
	if err == nil || !strings.Contains(err.Error(), "nginx") {
		t.Errorf("broken nginx config: %v", err)
	}
}
