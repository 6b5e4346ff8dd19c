package builder

import (
	_ "embed"
	"errors"
	"path/filepath"
	"strings"
)

// minifyPHP is the Magento 1 minifier. It is PHP because PHP is the one
// runtime every Magento 1 build environment (the builder image or a host with
// build.builder: local) is guaranteed to have; it is fed to `php` on stdin so
// nothing has to be installed into the checkout.
//
//go:embed minify.php
var minifyPHP string

// minifyHeredoc delimits minify.php inside the step script; TestMinifyHeredoc
// checks the PHP source never contains it.
const minifyHeredoc = "MAGEFLOW_MINIFY_PHP"

func planMagento1(checkoutDir string) ([]Step, error) {
	if !exists(filepath.Join(checkoutDir, "app", "Mage.php")) {
		return nil, errors.New("app/Mage.php not found: is this a Magento 1 / OpenMage checkout? (set build.type accordingly)")
	}
	minify := "rm -rf skin.min js.min\n" +
		"php -- skin skin.min js js.min <<'" + minifyHeredoc + "'\n" +
		strings.TrimRight(minifyPHP, "\n") + "\n" + minifyHeredoc + "\n"
	return []Step{
		{Name: "minify skin and js", Script: minify},
		{
			// Checkouts carry whatever modes developers' machines had; web
			// servers and PHP-FPM expect dirs 0755 and files 0644.
			Name:   "normalize permissions",
			Script: "find . -path ./.git -prune -o -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +",
		},
	}, nil
}
