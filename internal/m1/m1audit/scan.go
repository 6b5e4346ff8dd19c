package m1audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// Check IDs produced by ScanFiles. They are stable: reports, dashboards and
// operator suppressions refer to them.
const (
	// CheckSignature: a malware signature matched a file.
	CheckSignature = "m1.files.signature"
	// CheckPHPInImage: an image under media/, skin/ or js/ contains PHP.
	CheckPHPInImage = "m1.files.php_in_image"
	// CheckPHPInStatic: a PHP file under media/, skin/ or js/, where a stock
	// store has none (OpenMage removed the last one, js/index.php).
	CheckPHPInStatic = "m1.files.php_in_static"
	// CheckUnscanned: a file that should be scanned exceeded MaxFileSize.
	// Attackers pad files to slip past size limits, so this is reported
	// rather than silently skipped.
	CheckUnscanned = "m1.files.unscanned"
)

// Finding is one problem found in a file.
type Finding struct {
	CheckID  string   `json:"check_id"`
	Severity Severity `json:"severity"`
	// Path is slash-separated and relative to the scanned root.
	Path string `json:"path"`
	// Line is 1-based; 0 when the finding is about the whole file.
	Line        int    `json:"line,omitempty"`
	SignatureID string `json:"signature_id,omitempty"`
	// Evidence is a short excerpt with non-printable bytes escaped, safe to
	// put in a terminal, JSON or Markdown report.
	Evidence string `json:"evidence,omitempty"`
	// NeedsPerson marks findings a program cannot decide, e.g. the stock
	// js/index.php of Magento 1.9.4.5, which may or may not still be used.
	NeedsPerson bool `json:"needs_person,omitempty"`
}

// ScanOptions bounds a scan. The zero value is usable.
type ScanOptions struct {
	// MaxFileSize is the largest file read, in bytes; larger candidates are
	// reported as CheckUnscanned. Default 8 MiB.
	MaxFileSize int64
	// Skip lists slash-separated directories relative to root that are not
	// descended into. Default: var/cache, var/full_page_cache, var/session
	// (generated data full of serialized user input, never code).
	Skip []string
	// MaxEvidence caps the evidence excerpt, in bytes of input. Default 120.
	MaxEvidence int
}

func (o ScanOptions) withDefaults() ScanOptions {
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = 8 << 20
	}
	if o.Skip == nil {
		o.Skip = []string{"var/cache", "var/full_page_cache", "var/session"}
	}
	if o.MaxEvidence <= 0 {
		o.MaxEvidence = 120
	}
	return o
}

// staticDirs are the top-level directories nginx serves as plain files. No
// PHP may live or run there; attackers drop shells and PHP-bearing images in
// them because they are often writable by the PHP user.
var staticDirs = []string{"media", "skin", "js"}

// scopesByExt maps a lower-case extension to the signature scopes that apply.
// .phtml is a PHP template that emits HTML, so both kinds of signature apply.
var scopesByExt = map[string][]Scope{
	".php": {ScopePHP}, ".php3": {ScopePHP}, ".php4": {ScopePHP}, ".php5": {ScopePHP},
	".php7": {ScopePHP}, ".phtml": {ScopePHP, ScopeHTML}, ".inc": {ScopePHP}, ".phar": {ScopePHP},
	".js": {ScopeJS}, ".jsx": {ScopeJS},
	".html": {ScopeHTML}, ".htm": {ScopeHTML},
	".htaccess": {}, ".ini": {}, ".sh": {},
}

// phpExts are the extensions PHP-FPM might execute under a lax
// security.limit_extensions, so their mere presence in a static directory
// is a finding.
var phpExts = map[string]bool{
	".php": true, ".php3": true, ".php4": true, ".php5": true, ".php7": true,
	".phtml": true, ".phar": true, ".pht": true, ".phps": true,
}

var imageExts = map[string]bool{
	".jpg": true, ".jpeg": true, ".png": true, ".gif": true, ".bmp": true,
	".ico": true, ".webp": true, ".svg": true, ".tif": true, ".tiff": true,
}

// phpOpenTag finds PHP inside binary image data. "<?php" is five specific
// bytes, so chance hits in compressed pixels are negligible. A bare "<?=" is
// only three bytes and occurs by chance in about one JPEG in twenty, so it
// counts only when it is followed by an expression start and a closing "?>"
// nearby, which real polyglots have and random data practically never does.
var phpOpenTag = regexp.MustCompile(`(?i)<\?php|<\?=\s*[$A-Za-z_][^\x00]{0,200}?\?>`)

// ScanFiles walks a Magento 1 tree and returns findings sorted by path, then
// line. Symbolic links are followed (modman installs are built from them)
// but every directory is entered once, so link loops end the walk instead of
// hanging it. Unreadable files and directories do not stop the walk: the
// findings are returned together with an error listing them, because a scan
// that silently missed files must not read as clean.
func ScanFiles(ctx context.Context, root string, sigs *Signatures, opts ScanOptions) ([]Finding, error) {
	if sigs == nil {
		return nil, fmt.Errorf("no signatures given: load them with LoadSignatures or LoadSignaturesFS(Shipped())")
	}
	opts = opts.withDefaults()
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("scan root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("scan root %s is not a directory; pass the Magento web root", root)
	}
	s := &scanner{ctx: ctx, sigs: sigs, opts: opts, visited: map[fileKey]bool{}}
	for _, sk := range opts.Skip {
		s.skip = append(s.skip, strings.Trim(filepath.ToSlash(sk), "/"))
	}
	if err := s.walkDir(root, ""); err != nil {
		return nil, err
	}
	sort.SliceStable(s.findings, func(i, j int) bool {
		a, b := s.findings[i], s.findings[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.CheckID != b.CheckID {
			return a.CheckID < b.CheckID
		}
		return a.SignatureID < b.SignatureID
	})
	if len(s.unreadable) > 0 {
		return s.findings, fmt.Errorf("scan incomplete, %d path(s) unreadable (run the audit as a user that can read the web root): %s",
			len(s.unreadable), strings.Join(firstN(s.unreadable, 5), "; "))
	}
	return s.findings, nil
}

type fileKey struct{ dev, ino uint64 }

type scanner struct {
	ctx        context.Context
	sigs       *Signatures
	opts       ScanOptions
	skip       []string
	visited    map[fileKey]bool
	findings   []Finding
	unreadable []string
}

func (s *scanner) skipped(rel string) bool {
	for _, sk := range s.skip {
		if rel == sk {
			return true
		}
	}
	return false
}

// walkDir scans dir (absolute) whose path relative to the root is rel ("" for
// the root itself).
func (s *scanner) walkDir(dir, rel string) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	st, err := os.Stat(dir)
	if err != nil {
		s.unreadable = append(s.unreadable, fmt.Sprintf("%s: %v", relOrDot(rel), err))
		return nil
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		k := fileKey{uint64(sys.Dev), uint64(sys.Ino)}
		if s.visited[k] {
			return nil // already scanned through another path: a link loop or a duplicate link
		}
		s.visited[k] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		s.unreadable = append(s.unreadable, fmt.Sprintf("%s: %v", relOrDot(rel), err))
		return nil
	}
	for _, e := range entries {
		childRel := e.Name()
		if rel != "" {
			childRel = rel + "/" + e.Name()
		}
		child := filepath.Join(dir, e.Name())
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			target, err := os.Stat(child)
			if err != nil {
				continue // dangling link: nothing to execute or serve
			}
			mode = target.Mode().Type()
		}
		switch {
		case mode.IsDir():
			if s.skipped(childRel) {
				continue
			}
			if err := s.walkDir(child, childRel); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := s.ctx.Err(); err != nil {
				return err
			}
			s.scanFile(child, childRel)
		}
	}
	return nil
}

func relOrDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string{}, s[:n]...), fmt.Sprintf("and %d more", len(s)-n))
}

func inStaticDir(rel string) bool {
	top, _, _ := strings.Cut(rel, "/")
	for _, d := range staticDirs {
		if top == d && rel != d {
			return true
		}
	}
	return false
}

// fileExt is the lower-case extension; a dot file such as .htaccess is its
// own extension so it can be recognised.
func fileExt(rel string) string {
	base := rel[strings.LastIndex(rel, "/")+1:]
	if strings.HasPrefix(base, ".") && strings.Count(base, ".") == 1 {
		return strings.ToLower(base)
	}
	if base == ".user.ini" {
		return ".ini"
	}
	return strings.ToLower(filepath.Ext(base))
}

func (s *scanner) scanFile(abs, rel string) {
	ext := fileExt(rel)
	static := inStaticDir(rel)
	scopes, isText := scopesByExt[ext]

	if static && phpExts[ext] {
		f := Finding{CheckID: CheckPHPInStatic, Severity: SeverityCritical, Path: rel,
			Evidence: "PHP file in a directory served as static files"}
		if rel == "js/index.php" {
			// Stock Magento 1.9.4.5 ships it (OpenMage removed it in
			// 20.0.15); only a person can tell whether the store still uses
			// it, so it is not called malware.
			f.Severity = SeverityMedium
			f.Evidence = "stock Magento 1 js/index.php; remove it if nothing loads /js/index.php (OpenMage removed it)"
			f.NeedsPerson = true
		}
		s.findings = append(s.findings, f)
	}

	// Images are checked in media/, skin/ and js/: uploads and attacker
	// drops land there and nginx serves them directly. A file there with no
	// known extension is still checked when its first bytes are an image
	// header, so renaming a polyglot does not hide it; other binaries
	// (fonts, PDFs) are left after reading those few bytes.
	image := static && imageExts[ext]
	if !isText && !image {
		if !static {
			return
		}
		head, err := readAtMost(abs, 15)
		if err != nil {
			s.unreadable = append(s.unreadable, fmt.Sprintf("%s: %v", rel, err))
			return
		}
		if !looksLikeImage(head) {
			return
		}
		image = true
	}
	fi, err := os.Stat(abs)
	if err != nil {
		s.unreadable = append(s.unreadable, fmt.Sprintf("%s: %v", rel, err))
		return
	}
	if fi.Size() > s.opts.MaxFileSize {
		s.findings = append(s.findings, Finding{CheckID: CheckUnscanned, Severity: SeverityLow, Path: rel, NeedsPerson: true,
			Evidence: fmt.Sprintf("%d bytes, over the %d byte scan limit; inspect it or raise MaxFileSize", fi.Size(), s.opts.MaxFileSize)})
		return
	}
	data, err := readAtMost(abs, s.opts.MaxFileSize)
	if err != nil {
		s.unreadable = append(s.unreadable, fmt.Sprintf("%s: %v", rel, err))
		return
	}
	if image || (static && looksLikeImage(data)) {
		if loc := phpOpenTag.FindIndex(data); loc != nil {
			s.findings = append(s.findings, Finding{CheckID: CheckPHPInImage, Severity: SeverityCritical, Path: rel,
				Line: lineAt(data, loc[0]), Evidence: excerpt(data, loc[0], loc[1], s.opts.MaxEvidence)})
		}
	}
	if !isText {
		return
	}
	var lower []byte
	lowerFn := func() []byte {
		if lower == nil {
			lower = asciiLower(data)
		}
		return lower
	}
	for _, sig := range s.sigs.list {
		if len(scopes) > 0 && !sig.appliesTo(scopes) {
			continue
		}
		if len(scopes) == 0 && sig.Scope != ScopeAny {
			continue // .htaccess, .ini, .sh: only language-neutral signatures
		}
		start, end, ok := sig.match(data, lowerFn)
		if !ok {
			continue
		}
		s.findings = append(s.findings, Finding{CheckID: CheckSignature, Severity: sig.Severity, Path: rel,
			Line: lineAt(data, start), SignatureID: sig.ID, Evidence: excerpt(data, start, end, s.opts.MaxEvidence)})
	}
}

func readAtMost(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// limit+1 so a file that grew since Stat is still bounded.
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// looksLikeImage recognises image magic bytes, so a PHP polyglot renamed to
// an innocent extension (or none) is still checked.
func looksLikeImage(b []byte) bool {
	switch {
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}): // JPEG
		return true
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return true
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return true
	case len(b) >= 12 && bytes.HasPrefix(b, []byte("RIFF")) && string(b[8:12]) == "WEBP":
		return true
	case bytes.HasPrefix(b, []byte{0, 0, 1, 0}): // ICO
		return true
	case bytes.HasPrefix(b, []byte("BM")) && len(b) >= 14: // BMP
		return true
	}
	return false
}

func lineAt(data []byte, off int) int {
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// excerpt returns data[start:end] cut to max bytes, with anything outside
// printable ASCII escaped, so hostile bytes cannot corrupt a terminal or a
// Markdown report.
func excerpt(data []byte, start, end, max int) string {
	cut := false
	if end-start > max {
		end = start + max
		cut = true
	}
	var b strings.Builder
	for _, c := range data[start:end] {
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	if cut {
		b.WriteString("…")
	}
	return b.String()
}
