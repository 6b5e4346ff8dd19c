package m1core

import (
	"path"
	"strings"
)

// scopeDirs are the directory trees (slash-separated, relative to the
// Magento root) whose every file belongs to the release.
var scopeDirs = []string{
	"app/code/core/",
	"lib/",
	"js/",
	"errors/",
	"shell/",
	"app/etc/modules/",
}

// themeRoots are the design and skin trees whose base, default and rwd
// packages ship with the release ("app/design/<area>/<package>/...").
var themeRoots = []string{"app/design/", "skin/"}

// themePackages are the packages of themeRoots that ship with the release.
var themePackages = map[string]bool{"base": true, "default": true, "rwd": true}

// scopeFiles are single files outside scopeDirs.
var scopeFiles = map[string]bool{
	"app/Mage.php":       true,
	"app/bootstrap.php":  true,
	"app/etc/config.xml": true,
}

// rootFileExt are the top-level files that belong to the release: entry
// points and web server configuration, not licences or build files.
var rootFileExt = map[string]bool{".php": true, ".sh": true, ".htaccess": true, ".sample": true, ".ico": true}

// InScope reports whether a slash-separated path relative to the Magento
// root is a core file the manifests cover: app/code/core, lib, js, errors,
// shell, app/etc/config.xml and app/etc/modules, app/Mage.php, the base,
// default and rwd packages of app/design and skin, entry points at the top
// level (index.php, cron.php, api.php, get.php, .htaccess, ...) and pub/
// outside pub/media.
func InScope(p string) bool {
	if scopeFiles[p] {
		return true
	}
	for _, d := range scopeDirs {
		if strings.HasPrefix(p, d) {
			return true
		}
	}
	for _, r := range themeRoots {
		if rest, ok := strings.CutPrefix(p, r); ok {
			parts := strings.SplitN(rest, "/", 3)
			return len(parts) == 3 && themePackages[parts[1]]
		}
	}
	if rest, ok := strings.CutPrefix(p, "pub/"); ok {
		return !strings.HasPrefix(rest, "media/")
	}
	if !strings.Contains(p, "/") {
		if strings.HasPrefix(p, ".") { // .php-cs-fixer.dist.php and other build files
			return p == ".htaccess" || p == ".htaccess.sample" || p == ".user.ini"
		}
		return p == "mage" || rootFileExt[path.Ext(p)]
	}
	return false
}

// strictPrefixes are the areas where an extension never installs files, so
// a file that no release has is itself a finding.
var strictPrefixes = []string{
	"app/code/core/Mage/",
	"app/code/core/Zend/",
	"lib/Varien/",
	"lib/Mage/",
	"lib/Zend/",
	"errors/",
	"app/etc/modules/Mage_",
	"pub/",
}

// Strict reports whether a file added at p (in scope, in no release) is a
// finding by itself: core module and framework directories, errors/, the
// top-level entry points. Elsewhere in scope (js/, skin/*/base, lib/)
// extensions install their own files, so those are only counted.
func Strict(p string) bool {
	if !strings.Contains(p, "/") || p == "app/Mage.php" || p == "app/bootstrap.php" {
		return true
	}
	for _, s := range strictPrefixes {
		if strings.HasPrefix(p, s) {
			return true
		}
	}
	return false
}

// codeExt are extensions of files that run: PHP on the server, scripts
// and markup in the shopper's browser, shell scripts.
var codeExt = map[string]bool{
	".php": true, ".phtml": true, ".inc": true, ".phar": true, ".php5": true, ".php7": true, ".phps": true,
	".js": true, ".html": true, ".htm": true, ".sh": true, "": true,
}

// IsCode reports whether p is a file that runs (PHP, templates,
// JavaScript, HTML, shell scripts, files without an extension, .user.ini
// whose auto_prepend_file runs PHP). Configuration (.xml, .htaccess) and
// assets are not: a change there is reported at a lower severity.
func IsCode(p string) bool {
	b := path.Base(p)
	if b == ".user.ini" {
		return true
	}
	if b == ".htaccess" {
		return false
	}
	return codeExt[strings.ToLower(path.Ext(b))]
}

// localConfig are files an installation creates beside the release's
// samples; they are not "added" core files.
var localConfig = map[string]bool{"errors/local.xml": true}

// lineExt are the files whose line hashes the index stores so a change can
// be shown line by line.
var lineExt = map[string]bool{".php": true, ".phtml": true, ".js": true, ".html": true, ".htaccess": true, ".sh": true}

// ownLib are the lib/ trees of Magento's own code. The index keeps no line
// hashes for the bundled third-party libraries beside them (Zend, PEAR,
// phpseclib, ...): they are most of the line count and rarely the target,
// and a change there is still reported, only without its lines.
var ownLib = map[string]bool{"Varien": true, "Mage": true, "Magento": true}

// HasLines reports whether the index keeps line hashes for p: code files
// of Magento's own code (app/code/core, templates, js, errors, entry
// points, lib/Varien and lib/Mage), not bundled libraries.
func HasLines(p string) bool {
	if rest, ok := strings.CutPrefix(p, "lib/"); ok {
		top, _, _ := strings.Cut(rest, "/")
		if !ownLib[top] {
			return false
		}
	}
	if strings.HasPrefix(p, "app/code/core/Zend/") {
		return false
	}
	b := path.Base(p)
	if b == ".htaccess" {
		return true
	}
	return lineExt[strings.ToLower(path.Ext(b))]
}
