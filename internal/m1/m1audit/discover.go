package m1audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// DiscoverOptions says where to look; the zero value asks the running host
// (nginx -T, /etc/php/*/fpm/php-fpm.conf).
type DiscoverOptions struct {
	NginxBinary string   // default "nginx" on PATH
	NginxArgs   []string // e.g. {"-c", "/tmp/x/nginx.conf"}; nginx -T is run with them
	NginxDump   string   // if set, parsed instead of running nginx -T (tests)
	ServerName  string   // pick the vhost serving this name when several serve Magento
	Root        string   // override the web root (skip detection)
	// PHPFPMBinary is run with -v for the PHP version (default: php-fpmX.Y
	// matching the configuration directory, then php-fpm, then php).
	PHPFPMBinary string
	// PHPFPMConf is the php-fpm main file (default: every
	// /etc/php/*/fpm/php-fpm.conf until one has the vhost's pool).
	PHPFPMConf string
}

// Discover derives the store's topology from nginx, PHP-FPM and the Magento
// tree. It fails only when the Magento root cannot be found; a missing pool
// or version is recorded in Target.Notes and the checks needing it report
// status error.
func Discover(ctx context.Context, o DiscoverOptions) (*Target, error) {
	dumpText := o.NginxDump
	t := &Target{}
	if dumpText == "" {
		bin := o.NginxBinary
		if bin == "" {
			bin = sbin("nginx")
		}
		args := append(append([]string{}, o.NginxArgs...), "-T")
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			if o.Root == "" {
				return nil, fmt.Errorf("%s %s: %w: %s (fix the nginx configuration, or pass the web root explicitly)", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
			}
			t.Notes = append(t.Notes, fmt.Sprintf("nginx -T failed (%v); vhosts unknown", err))
		}
		dumpText = stdout.String()
	}
	var servers []nginxServer
	if dumpText != "" {
		dump, err := ParseNginxDump(dumpText)
		if err != nil {
			if o.Root == "" {
				return nil, err
			}
			t.Notes = append(t.Notes, err.Error())
		} else {
			servers = dump.servers()
			t.Logs = dump.logs()
		}
	}
	if err := chooseVhost(t, servers, o); err != nil {
		return nil, err
	}
	discoverFPM(ctx, t, o)
	discoverMagento(t)
	return t, nil
}

// magentoRoot returns the Magento root for an nginx root: the root itself
// when it holds app/Mage.php, its parent for a pub/ docroot.
func magentoRoot(root string) (string, bool) {
	if root == "" {
		return "", false
	}
	if fileExists(filepath.Join(root, "app", "Mage.php")) {
		return root, true
	}
	parent := filepath.Dir(root)
	if fileExists(filepath.Join(parent, "app", "Mage.php")) {
		return parent, true
	}
	return "", false
}

// sbin returns name when it is on PATH, else /usr/sbin/name when that
// exists: daemons live in /usr/sbin, which a non-login PATH may lack.
func sbin(name string) string {
	if _, err := exec.LookPath(name); err != nil && fileExists("/usr/sbin/"+name) {
		return "/usr/sbin/" + name
	}
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// serves reports whether a server_name list answers for name (exact,
// "*.example.com", ".example.com" or a ~regex).
func serves(names []string, name string) bool {
	name = strings.ToLower(name)
	for _, n := range names {
		n = strings.ToLower(n)
		switch {
		case n == name:
			return true
		case strings.HasPrefix(n, "*.") && strings.HasSuffix(name, n[1:]):
			return true
		case strings.HasPrefix(n, ".") && (name == n[1:] || strings.HasSuffix(name, n)):
			return true
		case strings.HasSuffix(n, ".*") && strings.HasPrefix(name, n[:len(n)-1]):
			return true
		case strings.HasPrefix(n, "~"):
			if re, err := regexp.Compile("(?i)" + n[1:]); err == nil && re.MatchString(name) {
				return true
			}
		}
	}
	return false
}

// vhostCand is a server block whose root holds a Magento 1 store at root.
type vhostCand struct {
	s    nginxServer
	root string
}

// chooseVhost picks the store to audit among the nginx server blocks (the
// root or server name given, else the only store served) and records its
// vhosts and staging copies in t.
func chooseVhost(t *Target, servers []nginxServer, o DiscoverOptions) error {
	var mage []vhostCand
	for _, s := range servers {
		if r, ok := magentoRoot(s.Root); ok {
			mage = append(mage, vhostCand{s, r})
		}
	}
	var chosen *vhostCand
	var err error
	switch {
	case o.Root != "":
		chosen, err = chooseByRoot(t, mage, o)
	case o.ServerName != "":
		chosen, err = chooseByName(mage, o.ServerName)
	default:
		chosen, err = chooseOnly(mage, len(servers))
	}
	if err != nil {
		return err
	}
	if chosen != nil {
		t.WebRoot = chosen.root
		t.DocRoot = chosen.s.Root
		if len(chosen.s.ServerNames) > 0 {
			t.ServerName = chosen.s.ServerNames[0]
		}
		t.fastcgiFrom(chosen.s.Vhost)
	}
	for _, c := range mage {
		if c.root == t.WebRoot || c.s.Staging {
			t.Vhosts = append(t.Vhosts, c.s.Vhost)
			if t.FPMListen == "" && c.root == t.WebRoot {
				t.fastcgiFrom(c.s.Vhost)
			}
		}
	}
	if t.FPMListen == "" {
		t.Notes = append(t.Notes, "no fastcgi_pass found in the store's server blocks; PHP-FPM pool unknown")
	}
	return nil
}

// chooseByRoot takes the web root given (which must hold app/Mage.php) and
// the server block serving it, if any.
func chooseByRoot(t *Target, mage []vhostCand, o DiscoverOptions) (*vhostCand, error) {
	root := filepath.Clean(o.Root)
	if !fileExists(filepath.Join(root, "app", "Mage.php")) {
		return nil, fmt.Errorf("%s/app/Mage.php does not exist; pass the Magento 1 root (the directory holding app/ and index.php)", root)
	}
	t.WebRoot, t.DocRoot = root, root
	for i := range mage {
		if mage[i].root == root && (o.ServerName == "" || serves(mage[i].s.ServerNames, o.ServerName)) {
			return &mage[i], nil
		}
	}
	return nil, nil
}

// chooseByName takes the first store whose server block serves name.
func chooseByName(mage []vhostCand, name string) (*vhostCand, error) {
	for i := range mage {
		if serves(mage[i].s.ServerNames, name) {
			return &mage[i], nil
		}
	}
	return nil, fmt.Errorf("no nginx server block serving %q has a root holding app/Mage.php (or ../app/Mage.php for a pub/ docroot); check server_name and root, or pass the web root", name)
}

// chooseOnly takes the only non-staging store (or, with only staging
// copies, the first), refusing to guess among several.
func chooseOnly(mage []vhostCand, nServers int) (*vhostCand, error) {
	var chosen *vhostCand
	roots := map[string]bool{}
	for i := range mage {
		if !mage[i].s.Staging {
			roots[mage[i].root] = true
			if chosen == nil {
				chosen = &mage[i]
			}
		}
	}
	if len(roots) > 1 {
		var list []string
		for _, c := range mage {
			if !c.s.Staging {
				list = append(list, fmt.Sprintf("%s (%s, %s)", c.root, strings.Join(c.s.ServerNames, " "), c.s.File))
			}
		}
		return nil, fmt.Errorf("several Magento stores are served by nginx: %s; pass the server name of the one to audit", strings.Join(list, "; "))
	}
	if chosen == nil && len(mage) > 0 {
		chosen = &mage[0] // only staging copies: audit the first
	}
	if chosen == nil {
		return nil, fmt.Errorf("no nginx server block has a root holding app/Mage.php (or ../app/Mage.php for a pub/ docroot) among %d server blocks; pass the web root explicitly", nServers)
	}
	return chosen, nil
}

// fastcgiFrom records v's fastcgi_pass as the FPM address when none is
// known yet.
func (t *Target) fastcgiFrom(v Vhost) {
	if t.FPMListen == "" && v.FastCGIPass != "" {
		t.FPMListen = v.FastCGIPass
	}
}

// fpmVersionDirRe finds X.Y in /etc/php/X.Y/fpm/php-fpm.conf.
var fpmVersionDirRe = regexp.MustCompile(`/php/(\d+\.\d+)/fpm/`)

// discoverFPM finds the PHP-FPM pool listening on t.FPMListen and records
// its user, group, extensions, clear_env and logs, then the PHP version.
func discoverFPM(ctx context.Context, t *Target, o DiscoverOptions) {
	confs := []string{o.PHPFPMConf}
	if o.PHPFPMConf == "" {
		confs, _ = filepath.Glob("/etc/php/*/fpm/php-fpm.conf")
		sort.Sort(sort.Reverse(sort.StringSlice(confs)))
		confs = append(confs, "/etc/php-fpm.conf", "/usr/local/etc/php-fpm.conf")
	}
	var usedConf string
	for _, c := range confs {
		if !fileExists(c) {
			continue
		}
		cfg, err := ParseFPMConfig(c)
		if err != nil {
			t.Notes = append(t.Notes, err.Error())
			continue
		}
		if usedConf == "" {
			usedConf = c
		}
		pool, ok := cfg.PoolFor(t.FPMListen)
		if !ok {
			continue
		}
		usedConf = c
		t.recordPool(cfg, pool)
		break
	}
	if t.FPMPoolFile == "" && t.FPMListen != "" {
		t.Notes = append(t.Notes, fmt.Sprintf("no PHP-FPM pool listens on %s (looked in %s); pass the php-fpm.conf path", t.FPMListen, strings.Join(confs, ", ")))
	}
	discoverPHPVersion(ctx, t, o, usedConf)
}

// recordPool records what the audit needs from the store's pool and its
// configuration.
func (t *Target) recordPool(cfg *FPMConfig, pool *FPMPool) {
	t.FPMPoolFile = pool.File
	t.PHPUser = pool.Settings["user"]
	t.PHPGroup = pool.Settings["group"]
	if t.PHPGroup == "" {
		t.PHPGroup = t.PHPUser // php-fpm uses the user's group; record the name to look up
	}
	if v, ok := pool.Settings["security.limit_extensions"]; ok {
		t.LimitExt = strings.Fields(v)
		if t.LimitExt == nil {
			t.LimitExt = []string{}
		}
	} else {
		t.LimitExt, t.LimitExtDefault = []string{".php", ".phar"}, true
	}
	t.ClearEnv = pool.Settings["clear_env"]
	if t.ClearEnv == "" {
		t.ClearEnv = "yes"
	}
	for _, k := range []string{"slowlog", "access.log", "php_admin_value[error_log]", "php_value[error_log]"} {
		if v := pool.Settings[k]; v != "" {
			t.Logs = append(t.Logs, v)
		}
	}
	if v := cfg.Global["error_log"]; v != "" && v != "syslog" {
		t.Logs = append(t.Logs, v)
	}
}

// discoverPHPVersion asks the FPM binary of usedConf, else php, for its
// version.
func discoverPHPVersion(ctx context.Context, t *Target, o DiscoverOptions, usedConf string) {
	// PHP version: the FPM binary of that configuration, else php.
	var bins []string
	if o.PHPFPMBinary != "" {
		bins = []string{o.PHPFPMBinary}
	} else {
		if m := fpmVersionDirRe.FindStringSubmatch(usedConf); m != nil {
			bins = append(bins, "php-fpm"+m[1])
		}
		bins = append(bins, "php-fpm", "php")
		for i, b := range bins {
			bins[i] = sbin(b)
		}
	}
	for _, b := range bins {
		out, err := exec.CommandContext(ctx, b, "-v").Output()
		if err != nil {
			continue
		}
		if v, err := ParsePHPVersion(string(out)); err == nil {
			t.PHPVersion, t.FPMBinary = v, b
			return
		}
	}
	t.Notes = append(t.Notes, fmt.Sprintf("PHP version unknown: none of %s answered -v", strings.Join(bins, ", ")))
}

func discoverMagento(t *Target) {
	if src, err := os.ReadFile(filepath.Join(t.WebRoot, "app", "Mage.php")); err == nil {
		if v, err := ParseMageVersion(src); err == nil {
			t.Version, t.Edition, t.OpenMage = v.Version, v.Edition, v.OpenMage
		} else {
			t.Notes = append(t.Notes, err.Error())
		}
	}
	if src, err := os.ReadFile(filepath.Join(t.WebRoot, "app", "etc", "applied.patches.list")); err == nil {
		t.Patches = ParseAppliedPatches(src)
	}
	local, err := os.ReadFile(filepath.Join(t.WebRoot, "app", "etc", "local.xml"))
	if err != nil {
		t.Notes = append(t.Notes, fmt.Sprintf("read app/etc/local.xml: %v", err))
		return
	}
	if name, err := AdminFrontName(local); err == nil {
		t.AdminFrontName = name
	} else {
		t.Notes = append(t.Notes, err.Error())
	}
	if db, err := ParseLocalXMLDB(local); err == nil {
		t.DBHost, t.DBName, t.DBPrefix = db.Host, db.Name, db.Prefix
	} else {
		t.Notes = append(t.Notes, err.Error())
	}
}
