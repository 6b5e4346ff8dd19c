package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// hostPathRe matches "host.tld[:port]/path": a repository URL written
// without its scheme. The last label must be letters (a top-level domain),
// so directory names such as repos.d or shop.git are not taken for hosts.
var hostPathRe = regexp.MustCompile(`^([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.([A-Za-z]{2,63}))(?::[0-9]+)?/[^/]`)

// schemelessHost returns the host of a repository written as host/path
// without a scheme ("github.com/acme/shop"), which git would read as a
// directory next to the config file; "" for anything else, including such
// a path when that directory exists under base.
func schemelessHost(repo, base string) string {
	m := hostPathRe.FindStringSubmatch(repo)
	if m == nil || strings.EqualFold(m[2], "git") {
		return ""
	}
	if base != "" {
		if _, err := os.Stat(filepath.Join(base, repo)); err == nil {
			return ""
		}
	}
	return m[1]
}

// schemeHint is the fix suggested for a repo written without a scheme.
func schemeHint(repo string) string {
	return "did you mean https://" + repo + "? For ssh write git@" + strings.Replace(repo, "/", ":", 1) +
		"; for a directory next to the config, ./" + repo
}
