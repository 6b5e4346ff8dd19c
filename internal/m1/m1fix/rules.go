package m1fix

// rule is one path the managed include denies. Every rule is rendered
// twice where it can be:
//
//   - as a server-level `if ($uri ~* …) { return …; }`. nginx runs
//     server-level rewrite directives before it chooses a location, so no
//     location of the vhost (exact, ^~ prefix or regex) can let the request
//     past, and the match is case-insensitive on the normalised URI ($uri:
//     %XX decoded, // merged, /./ and /../ resolved) — /DOWNLOADER/,
//     //downloader/ and /%61pp/etc/local.xml all land here;
//   - as ^~ prefix / = exact locations for the canonical spelling, which no
//     regex location (the vhost's PHP handler) can override even if a later
//     rewrite in the vhost sends a request to such a path.
type rule struct {
	ID    string
	Title string
	// Regex is matched case-insensitively against $uri at server level.
	Regex string
	// Prefixes ("^~ /app/") and exact ("= /cron.php") locations for the
	// canonical spelling.
	Locations []string
	Status    int
}

// pathRules are the §3 paths of the hardening reference.
var pathRules = []rule{
	{ID: "code_dirs", Title: "code, config and cache directories (cacheleak, local.xml, var/export, var/log)",
		Regex:     `^/+(app|includes|lib|var|pkginfo|shell|dev)(/|$)`,
		Locations: []string{"^~ /app/", "^~ /includes/", "^~ /lib/", "^~ /var/", "^~ /pkginfo/", "^~ /shell/", "^~ /dev/"},
		Status:    404},
	{ID: "downloader", Title: "Magento Connect /downloader (2020 mass hack), any case",
		Regex:     `^/+(index\.php/*)?downloader(/|$)`,
		Locations: []string{"^~ /downloader"},
		Status:    404},
	{ID: "magmi", Title: "Magmi importer",
		Regex:     `^/+magmi(/|$)`,
		Locations: []string{"^~ /magmi"},
		Status:    404},
	{ID: "media_private", Title: "private media: downloadable products, customer uploads, imports",
		Regex:     `^/+media/+(downloadable|customer|import)(/|$)`,
		Locations: []string{"^~ /media/downloadable/", "^~ /media/customer/", "^~ /media/import/"},
		Status:    404},
	{ID: "dotfiles", Title: "dotfiles and VCS (.git, .svn, .htaccess, .env, .user.ini); /.well-known/ stays",
		Regex:     `/\.(?!well-known(/|$))`,
		Locations: []string{"^~ /.git", "^~ /.svn", "^~ /.hg", "= /.htaccess", "= /.env", "= /.user.ini"},
		Status:    404},
	{ID: "errors_xml", Title: "errors/*.xml (errors/local.xml) and report/config.xml",
		Regex:     `^/+(errors|report)/.*\.xml$`,
		Locations: []string{"= /errors/local.xml", "= /errors/design.xml", "= /report/config.xml"},
		Status:    404},
	{ID: "entry_scripts", Title: "cron, installer and Connect scripts (cron.php, cron.sh, install.php, mage)",
		Regex:     `^/+(cron\.(php|sh)|install\.php|mage)$`,
		Locations: []string{"= /cron.php", "= /cron.sh", "= /install.php", "= /mage"},
		Status:    404},
	{ID: "release_files", Title: "version disclosure and build files (RELEASE_NOTES.txt, LICENSE*, composer.json/lock, *.sh, *.sql)",
		Regex:     `(^/+(RELEASE_NOTES\.txt|LICENSE[A-Z_]*\.(txt|html)|composer\.(json|lock)|php\.ini\.sample|index\.php\.sample)$|\.(sh|sql)$)`,
		Locations: []string{"= /RELEASE_NOTES.txt", "= /composer.json", "= /composer.lock"},
		Status:    404},
	{ID: "rss_leak", Title: "SUPEE-6285 RSS order/stock/review feeds (/rss/..., /index.php/rss/..., /index.phprss/..., store-code prefixes)",
		Regex:     `^/+(index\.php/*)?([a-z0-9_]+/+)?rss/+(order|catalog/+(notifystock|review))`,
		Locations: []string{"^~ /rss/order", "^~ /rss/catalog/notifystock", "^~ /rss/catalog/review", "^~ /index.php/rss/order", "^~ /index.phprss"},
		Status:    404},
	{ID: "php_in_static", Title: "no PHP (or CGI scripts) in media/, skin/, js/, including PATH_INFO tricks like /media/x.jpg/x.php",
		Regex:  `^/+(media|skin|js)/.*\.(php[0-9]?|phtml|phar|pht|phps|pl|py|cgi)(/|$)`,
		Status: 403},
}

// DefaultPHPEntryPoints are the only scripts PHP may run for (Magento 1's
// front controller, the DB-media loader, the SOAP/XML-RPC API, and the
// error report page: Magento 1's error processor saves a report and
// redirects the browser to errors/report.php?id=…). The rest of errors/
// (processor.php, 404.php and 503.php, which index.php and Mage.php only
// include, the .phtml templates, local.xml) stays refused.
var DefaultPHPEntryPoints = []string{"index.php", "get.php", "api.php", "errors/report.php"}
