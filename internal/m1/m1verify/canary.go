package m1verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// CanaryPrefix starts every canary file name: mageflow-canary-<16 hex>.php
// or .jpg, directly inside media/, skin/ or js/. RemoveCanaries relies on
// this scheme, so it never changes without a migration.
const CanaryPrefix = "mageflow-canary-"

var canaryNameRe = regexp.MustCompile(`^mageflow-canary-[0-9a-f]{16}\.(php|jpg)$`)

// canaryDirs are the static directories where PHP must never run.
var canaryDirs = []string{"media", "skin", "js"}

// jpegHead is a minimal JFIF header: enough for file(1), image libraries
// and mwscan-style checks to call the canary a JPEG.
var jpegHead = []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}

// canary is one file written for a check.
type canary struct {
	checkID string
	file    string   // absolute path
	paths   []string // URL paths requested
	nonce   string   // appears in a body only if PHP ran the file
}

// canaryIDs are the canary checks, in report order.
var canaryIDs = []struct{ id, dir, title string }{
	{"m1.http.php_exec.media", "media", "PHP does not run in media/"},
	{"m1.http.php_exec.skin", "skin", "PHP does not run in skin/"},
	{"m1.http.php_exec.js", "js", "PHP does not run in js/"},
	{"m1.http.php_exec.media_image", "media", "PHP hidden in a media/ image does not run (also via /x.php PATH_INFO)"},
}

const fixCanary = "Serve media/, skin/ and js/ as static files only: a prefix location (`location ^~ /media/ { try_files $uri $uri/ /get.php$is_args$args; }`) that no `\\.php` regex can override, SCRIPT_FILENAME fixed to index.php/get.php, and `security.limit_extensions = .php` in the PHP-FPM pool."

func canaryResult(id, title string) m1audit.CheckResult {
	return m1audit.CheckResult{ID: id, Title: title, Severity: m1audit.SeverityCritical}
}

// disabledCanaryResults says, for every canary check, that it was not run.
func disabledCanaryResults() []m1audit.CheckResult {
	var out []m1audit.CheckResult
	for _, c := range canaryIDs {
		r := canaryResult(c.id, c.title)
		r.Status = m1audit.StatusNotApplicable
		r.Evidence.Detail = "canaries disabled (Options.Canaries): PHP execution in static directories was not tested over HTTP"
		out = append(out, r)
	}
	return out
}

// writeCanaries writes one canary per check. A check whose canary could not
// be written gets its final result here (not applicable when the directory
// does not exist, error otherwise); the others get an empty Status and are
// completed by canaryCheck. The returned canaries include every file whose
// creation was attempted, so removal covers half-written ones.
func writeCanaries(root string, onCanary func(string)) ([]canary, []m1audit.CheckResult) {
	var cs []canary
	var results []m1audit.CheckResult
	for _, c := range canaryIDs {
		res := canaryResult(c.id, c.title)
		dir := filepath.Join(root, c.dir)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			res.Status = m1audit.StatusNotApplicable
			res.Evidence.Detail = fmt.Sprintf("%s does not exist: nothing is served from it", dir)
			results = append(results, res)
			continue
		}
		a, b := randomHex(8), randomHex(8)
		name := CanaryPrefix + randomHex(8)
		cn := canary{checkID: c.id, nonce: a + b}
		// The nonce is printed from two halves, so it is in a body only if
		// PHP ran the file, never when its source is served.
		code := fmt.Sprintf(`<?php echo "%s" . "%s"; ?>`, a, b)
		var data []byte
		if c.id == "m1.http.php_exec.media_image" {
			name += ".jpg"
			data = append(append(append([]byte{}, jpegHead...), code...), 0xFF, 0xD9)
			cn.paths = []string{"/" + c.dir + "/" + name, "/" + c.dir + "/" + name + "/x.php"}
		} else {
			name += ".php"
			data = []byte(code + "\n")
			cn.paths = []string{"/" + c.dir + "/" + name}
		}
		cn.file = filepath.Join(dir, name)
		if onCanary != nil {
			onCanary(cn.file)
		}
		cs = append(cs, cn)
		if err := writeNew(cn.file, data); err != nil {
			res.Status = m1audit.StatusError
			res.Evidence.Detail = fmt.Sprintf("could not write canary %s: %v", cn.file, err)
			res.Fix = "Run verification as a user that may write to the web root's static directories, or disable canaries."
		}
		res.Evidence.Files = []string{cn.file}
		results = append(results, res)
	}
	return cs, results
}

func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// removeCanaryFiles removes the canaries; a file already gone is fine.
func removeCanaryFiles(cs []canary) error {
	var errs []error
	for _, c := range cs {
		if err := os.Remove(c.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove canary %s: %w (remove it by hand or run the cleanup: it is a PHP file in a public directory)", c.file, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveCanaries removes every canary (mageflow-canary-<16 hex>.php|.jpg)
// directly inside root's media/, skin/ and js/ and returns the removed
// paths, sorted. It is idempotent and needs no record of the run, so a
// cleanup after a crash (or a killed agent) can call it. Canaries are only
// ever written directly in those directories, which keeps this from
// walking a media tree of millions of files.
func RemoveCanaries(root string) ([]string, error) {
	var removed []string
	var errs []error
	for _, d := range canaryDirs {
		dir := filepath.Join(root, d)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", dir, err))
			continue
		}
		for _, e := range entries {
			if !canaryNameRe.MatchString(e.Name()) || e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove canary %s: %w", p, err))
				continue
			}
			removed = append(removed, p)
		}
	}
	sort.Strings(removed)
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("m1verify: %w (remove them by hand: they are PHP files in public directories)", err)
	}
	return removed, nil
}

// canaryCheck requests one canary's URLs and fails when PHP ran it.
func (v *verifier) canaryCheck(ctx context.Context, res m1audit.CheckResult, cs []canary) (m1audit.CheckResult, error) {
	if res.Status != "" {
		return res, nil
	}
	var cn *canary
	for i := range cs {
		if cs[i].checkID == res.ID {
			cn = &cs[i]
		}
	}
	if cn == nil {
		res.Status = m1audit.StatusError
		res.Evidence.Detail = "internal: no canary for this check"
		return res, nil
	}
	var executed, unanswered []string
	for _, p := range cn.paths {
		r, err := v.f.do(ctx, http.MethodGet, v.o.Host, p, nil, nil)
		if err != nil {
			return res, err
		}
		var note string
		leaked := false
		switch {
		case r.err != nil:
			unanswered = append(unanswered, p)
		case bytes.Contains(r.body, []byte(cn.nonce)):
			leaked = true
			executed = append(executed, p)
			note = "EXECUTED: the body holds the canary's nonce"
		case bytes.Contains(r.body, []byte("<?php")):
			note = fmt.Sprintf("status %d, source served as a file, not executed", r.status)
		default:
			note = fmt.Sprintf("status %d, not executed", r.status)
		}
		res.Evidence.HTTP = append(res.Evidence.HTTP, r.evidence(leaked, note))
	}
	switch {
	case len(executed) > 0:
		res.Status = m1audit.StatusFail
		res.Evidence.Detail = "PHP ran a file an attacker could upload: " + strings.Join(executed, " ")
		res.Fix = fixCanary
	case len(unanswered) > 0:
		res.Status = m1audit.StatusError
		res.Evidence.Detail = "no answer for " + strings.Join(unanswered, " ")
	default:
		res.Status = m1audit.StatusPass
		res.Evidence.Detail = "the canary's nonce never appeared: PHP did not run it (source shown as a file is not execution; PHP files there are the file scan's m1.files.php_in_static)"
	}
	return res, nil
}
