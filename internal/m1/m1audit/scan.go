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
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// Check IDs produced by ScanFiles. They are stable: reports, dashboards and
// operator suppressions refer to them.
const (
	// CheckSignature: a malware signature matched a file.
	CheckSignature = "m1.files.signature"
	// CheckPHPInImage: an image (by extension or magic bytes) anywhere in the
	// docroot contains PHP.
	CheckPHPInImage = "m1.files.php_in_image"
	// CheckPHPInStatic: a PHP file under media/, skin/, js/ or var/, where a
	// stock store has none (OpenMage removed the last one, js/index.php).
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
	// descended into. Default: none. Generated data (var/cache,
	// var/full_page_cache, var/session, var/report) is always walked but only
	// checked for executable content, never against the code signatures:
	// it is full of serialized user input, and a PHP-bearing file there is
	// exactly what an attacker plants for a file-inclusion bug.
	Skip []string
	// MaxEvidence caps the evidence excerpt, in bytes of input. Default 120.
	MaxEvidence int
	// Workers is the number of files read and matched at once. Default
	// GOMAXPROCS, at least 2 (reads and matching overlap).
	Workers int
}

func (o ScanOptions) withDefaults() ScanOptions {
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = 8 << 20
	}
	if o.MaxEvidence <= 0 {
		o.MaxEvidence = 120
	}
	if o.Workers <= 0 {
		o.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	return o
}

// staticDirs are the top-level directories nginx serves as plain files. No
// PHP may live or run there; attackers drop shells and PHP-bearing images in
// them because they are often writable by the PHP user.
var staticDirs = []string{"media", "skin", "js"}

// generatedDirs hold data the store writes at run time; see
// ScanOptions.Skip.
var generatedDirs = []string{"var/cache", "var/full_page_cache", "var/session", "var/report", "var/log", "var/locks", "var/tmp"}

// scopesByExt maps a lower-case extension to the signature scopes that apply.
// Templates, HTML and layout XML carry inline scripts, so the browser-side
// (js) signatures apply to them as well.
var scopesByExt = map[string][]Scope{
	".php": {ScopePHP}, ".php3": {ScopePHP}, ".php4": {ScopePHP}, ".php5": {ScopePHP},
	".php7": {ScopePHP}, ".phtml": {ScopePHP, ScopeHTML, ScopeJS}, ".inc": {ScopePHP}, ".phar": {ScopePHP},
	".pht": {ScopePHP}, ".js": {ScopeJS}, ".jsx": {ScopeJS}, ".mjs": {ScopeJS},
	".html": {ScopeHTML, ScopeJS}, ".htm": {ScopeHTML, ScopeJS}, ".xml": {ScopeHTML, ScopeJS}, ".svg": {ScopeHTML, ScopeJS},
	".htaccess": {}, ".ini": {}, ".sh": {},
}

// phpExts are the extensions PHP-FPM might execute under a lax
// security.limit_extensions, so their mere presence in a static directory
// is a finding.
var phpExts = map[string]bool{
	".php": true, ".php3": true, ".php4": true, ".php5": true, ".php7": true,
	".phtml": true, ".phar": true, ".pht": true, ".phps": true, ".inc": true,
}

var imageExts = map[string]bool{
	".jpg": true, ".jpeg": true, ".png": true, ".gif": true, ".bmp": true,
	".ico": true, ".webp": true, ".svg": true, ".tif": true, ".tiff": true,
}

// opaqueExts are binary formats that are only checked for a PHP opening
// in their first bytes (a text file renamed to look like a font).
var opaqueExts = map[string]bool{
	".woff": true, ".woff2": true, ".ttf": true, ".eot": true, ".otf": true, ".pdf": true,
	".zip": true, ".gz": true, ".tgz": true, ".bz2": true, ".xz": true, ".mp4": true, ".webm": true,
	".mp3": true, ".swf": true, ".flv": true, ".avi": true, ".mov": true,
}

// backupExts mark copies nobody executes; PHP inside them is expected.
var backupExts = map[string]bool{
	".sample": true, ".bak": true, ".orig": true, ".old": true, ".dist": true, ".save": true,
	".swp": true, ".tmp": true, ".rej": true, ".patch": true, ".diff": true, ".md": true,
}

// imageCarrier finds PHP inside binary image data. "<?php" is five specific
// bytes, so chance hits in compressed pixels are negligible. A bare "<?=" or
// short "<? " tag is only a few bytes and occurs by chance in compressed
// data, so it counts only when followed by an expression start and a
// closing "?>" nearby (printable text in between for the short tag), which
// real polyglots have and random data practically never does.
var imageCarrier = regexp.MustCompile(`(?i)<\?php|<\?=\s*[$A-Za-z_][^\x00]{0,200}?\?>|<\?[ \t\r\n]+[$@A-Za-z_][\x20-\x7e\t\r\n]{0,200}?\?>`)

// textCarrier finds PHP in a text file whose name PHP-FPM would not run
// (.txt, .ico without image bytes, no extension): such a file is only ever
// reached by an include() or a handler trick, the hiding place of loaders.
var textCarrier = regexp.MustCompile(`(?i)<\?php\b|<\?=\s*[$A-Za-z_][\x20-\x7e\t\r\n]{0,200}?\?>|<\?[ \t\r\n]+[$@A-Za-z_][\x20-\x7e\t\r\n]{0,200}?(?:\?>|;)`)

// webCarrier is textCarrier for scripts, markup and styles, which quote
// PHP in syntax highlighters and documentation: only a PHP opening at the
// start of a line counts there.
var webCarrier = regexp.MustCompile(`(?im)^[ \t]*<\?(?:php\b|=\s*[$A-Za-z_]|[ \t\r\n]+[$@A-Za-z_])`)

// ScanFiles walks a Magento 1 tree and returns findings sorted by path, then
// line. Symbolic links are followed (modman installs are built from them)
// but every directory is entered once, so link loops end the walk instead of
// hanging it. Files are read and matched by ScanOptions.Workers goroutines;
// the output does not depend on their number. Unreadable files and
// directories do not stop the walk: the findings are returned together with
// an error listing them, because a scan that silently missed files must not
// read as clean.
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
	s := &scanner{ctx: ctx, sigs: sigs, opts: opts, visited: map[fileKey]bool{}, jobs: make(chan fileJob, 256)}
	for _, sk := range opts.Skip {
		s.skip = append(s.skip, strings.Trim(filepath.ToSlash(sk), "/"))
	}
	results := make([]workerResult, opts.Workers)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(r *workerResult) {
			defer wg.Done()
			for j := range s.jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				fs, bad := s.scanFile(j.abs, j.rel)
				r.findings = append(r.findings, fs...)
				if bad != "" {
					r.unreadable = append(r.unreadable, bad)
				}
			}
		}(&results[i])
	}
	walkErr := s.walkDir(root, "")
	close(s.jobs)
	wg.Wait()
	if walkErr == nil {
		walkErr = ctx.Err()
	}
	if walkErr != nil {
		return nil, walkErr
	}
	findings, unreadable := s.findings, s.unreadable
	for _, r := range results {
		findings = append(findings, r.findings...)
		unreadable = append(unreadable, r.unreadable...)
	}
	sortFindings(findings)
	sort.Strings(unreadable)
	if len(unreadable) > 0 {
		return findings, fmt.Errorf("scan incomplete, %d path(s) unreadable (run the audit as a user that can read the web root): %s",
			len(unreadable), strings.Join(firstN(unreadable, 5), "; "))
	}
	return findings, nil
}

func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.CheckID != b.CheckID {
			return a.CheckID < b.CheckID
		}
		if a.SignatureID != b.SignatureID {
			return a.SignatureID < b.SignatureID
		}
		return a.Evidence < b.Evidence
	})
}

type fileKey struct{ dev, ino uint64 }

type fileJob struct{ abs, rel string }

type workerResult struct {
	findings   []Finding
	unreadable []string
}

// scanner holds the walk's state. The walk itself runs in one goroutine
// (visited, findings and unreadable belong to it); files go to workers
// through jobs.
type scanner struct {
	ctx        context.Context
	sigs       *Signatures
	opts       ScanOptions
	skip       []string
	visited    map[fileKey]bool
	findings   []Finding
	unreadable []string
	jobs       chan fileJob
}

func (s *scanner) skipped(rel string) bool {
	return slices.Contains(s.skip, rel)
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
			select {
			case s.jobs <- fileJob{child, childRel}:
			case <-s.ctx.Done():
				return s.ctx.Err()
			}
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

// inDataDir: a static directory or var/, where the store keeps data and no
// code belongs.
func inDataDir(rel string) bool {
	return inStaticDir(rel) || strings.HasPrefix(rel, "var/")
}

func inGeneratedDir(rel string) bool {
	for _, d := range generatedDirs {
		if strings.HasPrefix(rel, d+"/") {
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

// scanFile checks one file; bad is set when it could not be read.
func (s *scanner) scanFile(abs, rel string) (out []Finding, bad string) {
	ext := fileExt(rel)
	if phpExts[ext] && inDataDir(rel) {
		out = append(out, phpInStatic(rel))
	}
	scopes, isCode := scopesByExt[ext]
	if opaqueExts[ext] {
		head, err := readAtMost(abs, 512)
		if err != nil {
			return out, fmt.Sprintf("%s: %v", rel, err)
		}
		// Only a file that is PHP text from its first byte: real fonts and
		// archives may hold anything in their compressed data.
		if t := bytes.TrimLeft(head, " \t\r\n"); bytes.HasPrefix(t, []byte("<?")) && textCarrier.Match(t) {
			loc := []int{len(head) - len(t), len(head) - len(t) + min(len(t), 5)}
			out = append(out, Finding{CheckID: CheckPHPInImage, Severity: SeverityCritical, Path: rel,
				Line: lineAt(head, loc[0]), Evidence: excerpt(head, loc[0], loc[1], s.opts.MaxEvidence)})
		}
		return out, ""
	}
	data, size, err := readSmall(abs, s.opts.MaxFileSize)
	if err != nil {
		return out, fmt.Sprintf("%s: %v", rel, err)
	}
	if data == nil && size > s.opts.MaxFileSize {
		if isCode || imageExts[ext] {
			out = append(out, Finding{CheckID: CheckUnscanned, Severity: SeverityLow, Path: rel, NeedsPerson: true,
				Evidence: fmt.Sprintf("%d bytes, over the %d byte scan limit; inspect it or raise MaxFileSize", size, s.opts.MaxFileSize)})
		}
		return out, ""
	}
	out = append(out, s.carriers(data, rel, ext)...)
	if !isCode && len(out) > 0 {
		scopes, isCode = []Scope{ScopePHP}, true // PHP hidden in a non-PHP file: judge its code too
	}
	if !isCode || (inGeneratedDir(rel) && !phpExts[ext]) {
		return out, ""
	}
	for _, f := range s.sigs.matchFile(data, scopes, rel, s.opts.MaxEvidence) {
		f.Path = rel
		out = append(out, f)
	}
	return out, ""
}

func phpInStatic(rel string) Finding {
	f := Finding{CheckID: CheckPHPInStatic, Severity: SeverityCritical, Path: rel,
		Evidence: "PHP file in a directory served as static files or holding data"}
	if rel == "js/index.php" {
		// Stock Magento 1.9.4.5 ships it (OpenMage removed it in
		// 20.0.15); only a person can tell whether the store still uses
		// it, so it is not called malware.
		f.Severity = SeverityMedium
		f.Evidence = "stock Magento 1 js/index.php; remove it if nothing loads /js/index.php (OpenMage removed it)"
		f.NeedsPerson = true
	}
	return f
}

// carriers finds PHP where it does not belong: in image data anywhere in
// the docroot (recognised by magic bytes as well as extension), and in
// text files PHP-FPM would not run.
func (s *scanner) carriers(data []byte, rel, ext string) []Finding {
	if imageExts[ext] && ext != ".svg" || looksLikeImage(data) {
		if loc := imageCarrier.FindIndex(data); loc != nil {
			return []Finding{{CheckID: CheckPHPInImage, Severity: SeverityCritical, Path: rel,
				Line: lineAt(data, loc[0]), Evidence: excerpt(data, loc[0], loc[1], s.opts.MaxEvidence)}}
		}
		return nil
	}
	base := strings.ToLower(rel[strings.LastIndex(rel, "/")+1:])
	if phpExts[ext] || backupExts[ext] || strings.HasSuffix(base, "~") || bytes.IndexByte(data, '?') < 0 {
		return nil
	}
	re := textCarrier
	if _, web := scopesByExt[ext]; web || ext == ".css" || ext == ".json" {
		re = webCarrier
	}
	loc := re.FindIndex(data)
	if loc == nil {
		return nil
	}
	// Outside data directories a PHP-bearing file with another name is most
	// often a copy someone kept (Data.php-2.4, index.php.old): a person
	// decides. In data directories and the docroot itself it is a planted
	// loader target.
	sev, person := SeverityMedium, true
	if inDataDir(rel) || !strings.Contains(rel, "/") && !strings.Contains(base, ".php") {
		sev, person = SeverityCritical, false
	}
	if inGeneratedDir(rel) && !strings.HasPrefix(rel, "var/session/") {
		sev, person = SeverityMedium, true // cached pages may quote code
	}
	return []Finding{{CheckID: CheckSignature, SignatureID: "file.php_in_non_php", Severity: sev, Path: rel, NeedsPerson: person,
		Line: lineAt(data, loc[0]), Evidence: excerpt(data, loc[0], loc[1], s.opts.MaxEvidence) + " → PHP code in a file PHP-FPM does not run: only an include() or a handler trick reaches it"}}
}

// readSmall reads a file of at most limit bytes with one open and fstat;
// a larger file returns nil data and its size.
func readSmall(path string, limit int64) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if fi.Size() > limit {
		return nil, fi.Size(), nil
	}
	// One byte more than the size, so a file that grew since fstat is
	// noticed and read on (up to limit) instead of cut.
	buf := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(f, buf)
	data := buf[:n]
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		err = nil
	case err == nil:
		more, rerr := io.ReadAll(io.LimitReader(f, limit+1-int64(n)))
		data, err = append(data, more...), rerr
	}
	if int64(len(data)) > limit {
		return nil, int64(len(data)), err
	}
	return data, int64(len(data)), err
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
