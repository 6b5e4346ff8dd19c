package m1verify

import (
	"fmt"
	"strings"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// AdminPlaceholder in a Probe's Path stands for the store's admin frontName
// (Options.AdminFrontName).
const AdminPlaceholder = "{admin}"

// Probe is one path of the catalogue: what is requested (with all its
// Variants) and what must not come back.
type Probe struct {
	// ID is the check ID in the report, e.g. "m1.http.path.downloader".
	ID    string
	Title string
	// Path is the canonical path; it may contain AdminPlaceholder.
	Path string
	// Leak says what an answer must not reveal or do, for the report.
	Leak string
	// Markers are body substrings proving the leak, in addition to the
	// markers every probe checks (see the package doc).
	Markers  []string
	Severity m1audit.Severity
	// Admin probes accept 401 (a credentials prompt) as a refusal.
	Admin bool
	// Fix says what to do when the probe fails.
	Fix string
}

// commonMarkers are searched in every probe's answers. Markers that could
// occur in a themed store page ("[core]", "ref:", "<key>") are used only by
// the probes they belong to, or in forms a store page does not contain.
var commonMarkers = []string{
	"<connection>", "<?php", "Mage::", "Magento Connect", "Index of /",
	"ref: refs/", "repositoryformatversion",
}

const (
	fixDeny  = "Deny the path in the vhost with a prefix location that no regex can override (`location ^~ /path/ { deny all; }`), e.g. with mageflow's managed M1 include, reload nginx and verify again."
	fixAdmin = "Protect the admin frontName in every spelling Magento routes there (/<front>/, /index.php/<front>/ and /index.php<front>/ without the slash, any case) with basic auth or an IP allowlist (`satisfy any`), or serve it only on a separate admin vhost; with mageflow: set hosts.<name>.hardening.basic_auth and/or admin_allow and run `mageflow harden --host <name> --apply`."
)

// catalogue is the path list of the hardening reference (§3). Order is the
// report order.
var catalogue = []Probe{
	{ID: "m1.http.path.downloader", Title: "Magento Connect /downloader/ is unreachable", Path: "/downloader/",
		Leak: "Magento Connect Manager (2020 mass hack entry point)", Markers: []string{"Magento Connect Manager", "Maged_"},
		Severity: m1audit.SeverityCritical, Fix: fixDeny + " Better: delete downloader/ (OpenMage removed it)."},
	{ID: "m1.http.path.downloader_cfg", Title: "downloader/connect.cfg is unreachable", Path: "/downloader/connect.cfg",
		Leak: "Connect configuration (FTP credentials)", Markers: []string{"::ConnectConfig::"},
		Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.local_xml", Title: "app/etc/local.xml is unreachable", Path: "/app/etc/local.xml",
		Leak: "database credentials and crypt key", Markers: []string{"<key>", "<config>", "<crypt>"},
		Severity: m1audit.SeverityCritical, Fix: fixDeny},
	{ID: "m1.http.path.app_php", Title: "PHP under app/ does not run or show", Path: "/app/Mage.php",
		Leak: "core source or its execution", Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.errors_local_xml", Title: "errors/local.xml is unreachable", Path: "/errors/local.xml",
		Leak: "error-report configuration", Markers: []string{"<config>"}, Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.git_config", Title: ".git/config is unreachable", Path: "/.git/config",
		Leak: "repository configuration and remote credentials", Markers: []string{"[core]", "[remote "},
		Severity: m1audit.SeverityHigh, Fix: fixDeny + " Deploy without .git in the web root."},
	{ID: "m1.http.path.git_head", Title: ".git/HEAD is unreachable", Path: "/.git/HEAD",
		Leak: "the repository (source download)", Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.git_dir", Title: ".git/ is not listed", Path: "/.git/",
		Leak: "repository listing", Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.composer_json", Title: "composer.json is unreachable", Path: "/composer.json",
		Leak: "dependency list (extension versions for exploit lookup)", Markers: []string{`"require"`},
		Severity: m1audit.SeverityLow, Fix: fixDeny},
	{ID: "m1.http.path.composer_lock", Title: "composer.lock is unreachable", Path: "/composer.lock",
		Leak: "exact dependency versions", Markers: []string{`"content-hash"`, `"packages"`}, Severity: m1audit.SeverityLow, Fix: fixDeny},
	{ID: "m1.http.path.release_notes", Title: "RELEASE_NOTES.txt is unreachable", Path: "/RELEASE_NOTES.txt",
		Leak: "exact Magento version", Markers: []string{"==== 1."}, Severity: m1audit.SeverityLow, Fix: fixDeny},
	{ID: "m1.http.path.dev", Title: "dev/ is unreachable", Path: "/dev/tests/",
		Leak: "test suites and tools", Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.shell", Title: "shell/ scripts do not run or show", Path: "/shell/indexer.php",
		Leak: "CLI scripts", Markers: []string{"This script cannot be run from Browser"}, Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.cron_php", Title: "cron.php does not run over HTTP", Path: "/cron.php",
		Leak: "cron triggered by anyone (denial of service)", Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.install_php", Title: "install.php is unreachable", Path: "/install.php",
		Leak: "the installer", Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.includes", Title: "includes/ is unreachable", Path: "/includes/config.php",
		Leak: "compiler configuration", Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.lib", Title: "lib/ is unreachable", Path: "/lib/Varien/Object.php",
		Leak: "library source", Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.pkginfo", Title: "pkginfo/ is unreachable", Path: "/pkginfo/",
		Leak: "installed package list", Severity: m1audit.SeverityLow, Fix: fixDeny},
	{ID: "m1.http.path.var_cache", Title: "var/cache/ is unreachable (cacheleak)", Path: "/var/cache/",
		Leak: "cached configuration with credentials", Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.var_session", Title: "var/session/ is unreachable", Path: "/var/session/",
		Leak: "session files (session hijack)", Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.var_log", Title: "var/log/ is unreachable", Path: "/var/log/system.log",
		Leak: "logs", Markers: []string{" ERR (3):", " DEBUG (7):", " CRIT (2):"}, Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.var_exception_log", Title: "var/log/exception.log is unreachable", Path: "/var/log/exception.log",
		Leak: "stack traces with paths and queries", Markers: []string{"Stack trace:", " ERR (3):"}, Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.var_report", Title: "var/report/ is unreachable", Path: "/var/report/",
		Leak: "error reports with stack traces", Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.var_export", Title: "var/export/ is unreachable", Path: "/var/export/",
		Leak: "exported customer and order data", Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.media_downloadable", Title: "media/downloadable/ is unreachable", Path: "/media/downloadable/",
		Leak: "paid downloadable products", Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.media_customer", Title: "media/customer/ is unreachable", Path: "/media/customer/",
		Leak: "customer uploads", Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.media_import", Title: "media/import/ is unreachable", Path: "/media/import/",
		Leak: "import files", Severity: m1audit.SeverityLow, Fix: fixDeny},
	{ID: "m1.http.path.magmi", Title: "Magmi is unreachable", Path: "/magmi/web/magmi.php",
		Leak: "Magmi importer (unauthenticated RCE)", Markers: []string{"MAGMI", "Magmi"}, Severity: m1audit.SeverityCritical, Fix: fixDeny + " Better: remove magmi/."},
	{ID: "m1.http.path.rss_order_new", Title: "RSS new-orders feed is blocked (SUPEE-6285)", Path: "/rss/order/new/",
		Leak: "order data", Markers: []string{"<rss", "<channel>"}, Severity: m1audit.SeverityHigh, Fix: fixDeny},
	{ID: "m1.http.path.rss_notifystock", Title: "RSS low-stock feed is blocked (SUPEE-6285)", Path: "/rss/catalog/notifystock/",
		Leak: "stock data", Markers: []string{"<rss", "<channel>"}, Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.path.rss_review", Title: "RSS review feed is blocked (SUPEE-6285)", Path: "/rss/catalog/review/",
		Leak: "unapproved reviews", Markers: []string{"<rss", "<channel>"}, Severity: m1audit.SeverityMedium, Fix: fixDeny},
	{ID: "m1.http.admin.front", Title: "Admin asks for credentials before Magento", Path: "/" + AdminPlaceholder + "/",
		Leak: "the admin login form", Markers: []string{"login[username]"}, Severity: m1audit.SeverityHigh, Admin: true, Fix: fixAdmin},
	{ID: "m1.http.admin.shoplift", Title: "Shoplift route (SUPEE-5344) is behind credentials", Path: "/" + AdminPlaceholder + "/Cms_Wysiwyg/directive/index/",
		Leak: "the Cms_Wysiwyg directive action", Markers: []string{"login[username]"}, Severity: m1audit.SeverityCritical, Admin: true, Fix: fixAdmin},
	// Only probed when the frontName is not "admin" (otherwise the two
	// probes above cover it): bots try /admin on every store.
	{ID: "m1.http.admin.default_path", Title: "/admin/ on the frontend host answers 404", Path: "/admin/",
		Leak: "an admin at the guessable path", Markers: []string{"login[username]"}, Severity: m1audit.SeverityMedium,
		Fix: "Nothing may answer /admin/ once the frontName is changed; check for a second admin route or a rewrite."},
}

// Paths returns the probe catalogue (a copy), in report order.
func Paths() []Probe {
	out := make([]Probe, len(catalogue))
	for i, p := range catalogue {
		out[i] = p
		out[i].Markers = append([]string(nil), p.Markers...)
	}
	return out
}

// Variants returns path followed by the spellings that reach the same
// resource (or Magento route) but slip past naive nginx rules, without
// duplicates:
//
//   - case: /DOWNLOADER/, /Downloader/ (case-insensitive file systems and
//     Magento's case-insensitive router; case-sensitive location rules miss
//     them)
//   - /index.php/<path> (Magento's front controller with PATH_INFO) and,
//     when the first segment could be a Magento route (it has no dot),
//     /index.php<path> without the slash, which Magento strips as a
//     prefix (/index.phprss/..., /index.phpadmin/ — the Shoplift spelling
//     on stores without SUPEE-6285-era routing), and /index.php//<path>,
//     /index.php/./<path>, /index.php%2F<path> and the upper-cased
//     /INDEX.PHP<PATH>, which rules written for one slash after
//     index.php, or matched case-sensitively, miss
//   - //<path>: only merge_slashes (on by default) makes prefix locations
//     match
//   - a percent-encoded letter in the first and in the last segment
//     (/%61pp/etc/local.xml): nginx decodes before matching, naive
//     $request_uri checks do not
//   - a percent-encoded slash (/app%2Fetc/local.xml) for paths with more
//     than one segment
//   - trailing slash and trailing dot for files (local.xml/, local.xml.);
//     for directories the bare name, "<dir>/." and "<dir>/index.php"
//   - a dot segment (/mageflow/../<path>), which nginx resolves before
//     matching
//
// Tomcat-style "/x/..;/" is left out: nginx and PHP treat ";" as an
// ordinary character, so it reaches nothing new.
func Variants(path string) []string {
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	var out []string
	seen := map[string]bool{}
	add := func(v string) {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	add(path)
	add(strings.ToUpper(path))
	add(capitalizeFirst(path))
	rest := path[1:]
	add("/index.php/" + rest)
	if isRoute(path) {
		add("/index.php" + rest)
		add("/index.php//" + rest)
		add("/index.php/./" + rest)
		add("/index.php%2F" + rest)
		add("/INDEX.PHP" + strings.ToUpper(rest))
	}
	add("//" + rest)
	segs := strings.Split(rest, "/")
	if enc, ok := encodeFirstLetter(segs, 0); ok {
		add("/" + enc)
	}
	if last := lastNonEmpty(segs); last > 0 {
		if enc, ok := encodeFirstLetter(segs, last); ok {
			add("/" + enc)
		}
	}
	if i := strings.Index(rest, "/"); i > 0 && i < len(rest)-1 {
		add("/" + rest[:i] + "%2F" + rest[i+1:])
	}
	if strings.HasSuffix(path, "/") {
		if len(path) > 1 {
			add(strings.TrimSuffix(path, "/"))
			add(path + ".")
			add(path + "index.php")
		}
	} else {
		add(path + "/")
		add(path + ".")
	}
	add("/mageflow/.." + path)
	return out
}

// isRoute says whether the first segment is one Magento's router could
// take (no dot: not a file at the web root).
func isRoute(path string) bool {
	first, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return first != "" && !strings.Contains(first, ".")
}

func capitalizeFirst(path string) string {
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c >= 'a' && c <= 'z' {
			return path[:i] + string(c-'a'+'A') + path[i+1:]
		}
		if c >= 'A' && c <= 'Z' {
			return path // already capitalized: the ToUpper variant covers it
		}
	}
	return path
}

func lastNonEmpty(segs []string) int {
	for i := len(segs) - 1; i >= 0; i-- {
		if segs[i] != "" {
			return i
		}
	}
	return -1
}

// encodeFirstLetter returns the segments joined with the first ASCII letter
// of segment i percent-encoded.
func encodeFirstLetter(segs []string, i int) (string, bool) {
	if i < 0 || i >= len(segs) {
		return "", false
	}
	s := segs[i]
	for j := 0; j < len(s); j++ {
		c := s[j]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			cp := append([]string(nil), segs...)
			cp[i] = s[:j] + fmt.Sprintf("%%%02x", c) + s[j+1:]
			return strings.Join(cp, "/"), true
		}
	}
	return "", false
}
