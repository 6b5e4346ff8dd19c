package m1audit

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// Handler tricks: Apache and PHP configuration files an attacker writes so
// that a harmless-looking file runs as PHP (<Files *.jpg> ForceType
// application/x-httpd-php, AddHandler php .ico, a bare SetHandler in an
// upload directory) or so that every request first runs their file
// (auto_prepend_file). nginx ignores .htaccess, but stores move between
// servers and Apache often sits behind nginx, so they are reported in any
// form.

var (
	filesOpenRe  = regexp.MustCompile(`(?i)^<(Files|FilesMatch)\s+(.*?)>`)
	filesCloseRe = regexp.MustCompile(`(?i)^</Files(Match)?\s*>`)
	handlerRe    = regexp.MustCompile(`(?i)^(SetHandler|ForceType|AddHandler|AddType)\s+(\S+)(.*)$`)
	phpHandlerRe = regexp.MustCompile(`(?i)php|x-httpd-|lsapi|fcgid|proxy:`)
	prependRe    = regexp.MustCompile(`(?i)^(php_value\s+|php_admin_value\s+)?auto_(prepend|append)_file\s*[= ]\s*["']?([^"'\s;]*)`)
	// phpOnlyExtRe accepts selectors and extension lists naming only PHP
	// extensions, the normal way to route PHP to a handler.
	phpOnlyExtRe = regexp.MustCompile(`(?i)^\.?(php[0-9s]?|phtml|pht|phar)$`)
)

// handlerTricks checks one .htaccess or .user.ini file.
func (c *heurCtx) handlerTricks(rel string) {
	dataDir := inDataDir(rel)
	inFiles, filesSel, off := false, "", 0
	for _, raw := range bytes.SplitAfter(c.data, []byte("\n")) {
		start := off
		off += len(raw)
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if m := filesOpenRe.FindStringSubmatch(line); m != nil {
			inFiles, filesSel = true, strings.Trim(m[2], `"' `)
			continue
		}
		if filesCloseRe.MatchString(line) {
			inFiles = false
			continue
		}
		if m := prependRe.FindStringSubmatch(line); m != nil {
			c.judgePrepend(m[3], start, off)
			continue
		}
		m := handlerRe.FindStringSubmatch(line)
		if m == nil || !phpHandlerRe.MatchString(m[2]) {
			continue
		}
		dir := strings.ToLower(m[1])
		exts := strings.Fields(m[3])
		switch {
		case inFiles && !phpSelector(filesSel):
			c.add("heur.htaccess.php_handler_on_files", SeverityCritical, start, off, fmt.Sprintf("<Files %s> runs as PHP: a non-PHP file becomes executable", filesSel))
		case (dir == "addhandler" || dir == "addtype") && !allPHPExts(exts):
			c.add("heur.htaccess.php_handler_on_ext", SeverityCritical, start, off, fmt.Sprintf("maps %s to PHP", strings.Join(exts, " ")))
		case (dir == "sethandler" || dir == "forcetype") && !inFiles:
			sev := SeverityHigh
			if dataDir {
				sev = SeverityCritical
			}
			c.add("heur.htaccess.php_handler_all", sev, start, off, "every file in this directory runs as PHP")
		}
	}
}

// judgePrepend rates an auto_prepend/append_file setting by its target.
func (c *heurCtx) judgePrepend(target string, start, end int) {
	low := strings.ToLower(target)
	hidden := !strings.HasSuffix(low, ".php") || strings.Contains(low, "/media/") || strings.Contains(low, "/var/") ||
		strings.HasPrefix(low, "/tmp/") || strings.Contains(low, "/skin/") || strings.Contains(low, "/js/") || strings.Contains(low, "/.")
	if hidden {
		c.add("heur.htaccess.prepend_hidden", SeverityCritical, start, end, fmt.Sprintf("every request first runs %q, a file that is not a normal PHP script in a code directory", target))
		return
	}
	c.add("heur.htaccess.prepend", SeverityMedium, start, end, fmt.Sprintf("every request first runs %q; confirm it is yours (a security or APM agent)", target))
}

func phpSelector(sel string) bool {
	s := strings.ToLower(sel)
	for _, bad := range []string{"jpg", "jpeg", "gif", "png", "ico", "bmp", "webp", "svg", "txt", "css", "js", "html", "htm", "json", "xml", "log", "*"} {
		if strings.Contains(s, bad) && !strings.Contains(s, "php") {
			return false
		}
		if strings.Contains(s, "."+bad) || strings.Contains(s, "|"+bad) || strings.Contains(s, "("+bad) {
			return false
		}
	}
	return true
}

func allPHPExts(exts []string) bool {
	if len(exts) == 0 {
		return true // a bare AddHandler/AddType without extensions does nothing
	}
	for _, e := range exts {
		if !phpOnlyExtRe.MatchString(e) {
			return false
		}
	}
	return true
}
