package m1audit

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Plain rule lists are the community's format (for example the backend.txt
// and frontend.txt lists of the Magento malware scanner projects): one
// indicator per line, a line enclosed in slashes is a regular expression,
// any other line a literal matched byte for byte (no escaping), "#" starts
// a comment. LoadSignatures reads them from *.txt files next to the *.sig
// files. Defaults, since the format has no fields:
//
//   - id: <file name without .txt>.L<line>, e.g. backend.L17, so an
//     operator can switch one off with "backend.L17<TAB>off" in a *.sig file
//     of a later directory;
//   - scope: from the file name: names containing "frontend", "js" or
//     "skimmer" are js (which also applies to .html, .phtml and layout XML);
//     "backend" or "php" are php; anything else (burner-domains.txt) is any;
//   - severity: high (the lists hold confirmed indicators);
//   - description: the nearest "# name" comment above the line.
//
// Regexes must be Go RE2 syntax: PCRE-only constructs are rejected with
// file:line (see pcreOnly) rather than loaded as something else.
const plainDefaultSeverity = SeverityHigh

// minPlainLiteral is the shortest literal a plain list may hold.
const minPlainLiteral = 4

// pcreChecks are PCRE constructs RE2 either rejects with an unhelpful error
// or, worse, accepts with another meaning: "{,n}" is a literal in RE2 but a
// 0..n repeat in PCRE2 10.43+ and YARA, so a rule written for those would
// silently never match.
var pcreChecks = []struct {
	re  *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`(^|[^\\])\{,\d+\}`), "\"{,n}\" is a literal in Go RE2, not a 0..n repeat; write {0,n}"},
	{regexp.MustCompile(`\(\?<?[=!]`), "lookahead/lookbehind ((?=, (?!, (?<=, (?<!) is not supported by Go RE2"},
	{regexp.MustCompile(`\(\?>`), "atomic groups ((?>...)) are not supported by Go RE2"},
	{regexp.MustCompile(`(^|[^\\])\\[1-9]`), "backreferences (\\1..\\9) are not supported by Go RE2"},
	{regexp.MustCompile(`(^|[^\\])\\[gk][{<'0-9-]`), "backreferences (\\g, \\k) are not supported by Go RE2"},
	{regexp.MustCompile(`[*+?}]\+`), "possessive quantifiers (*+, ++, ?+, {n}+) are not supported by Go RE2"},
	{regexp.MustCompile(`\(\?[a-zA-Z]*x`), "the (?x) extended flag is not supported by Go RE2"},
	{regexp.MustCompile(`(^|[^\\])\\[KRhHvVZXCG]`), "PCRE-only escape (\\K, \\R, \\h, \\v, \\Z, \\X, \\C, \\G) is not supported by Go RE2"},
	{regexp.MustCompile(`\(\?(R|\d|&|P>|\()`), "recursion and conditionals are not supported by Go RE2"},
}

// pcreOnly returns why pattern uses syntax Go RE2 does not share, or "".
// It looks outside character classes only roughly (a "\1" inside [...] is
// still rejected), which errs on the side of telling the operator.
func pcreOnly(pattern string) string {
	for _, c := range pcreChecks {
		if c.re.MatchString(pattern) {
			return c.why
		}
	}
	return ""
}

// compileRE2 compiles a signature regex, rejecting PCRE-only syntax and
// patterns that match the empty string.
func compileRE2(pattern string) (*regexp.Regexp, error) {
	if why := pcreOnly(pattern); why != "" {
		return nil, fmt.Errorf("PCRE-only syntax: %s (Go RE2 syntax: no backreferences or lookaround, repeat counts up to 1000)", why)
	}
	re, err := compileSig(pattern)
	if err != nil {
		return nil, fmt.Errorf("%w (Go RE2 syntax: no backreferences or lookaround, repeat counts up to 1000)", err)
	}
	if re.Match(nil) {
		return nil, fmt.Errorf("regex matches the empty string, so it would flag every file")
	}
	return re, nil
}

// plainScope derives a plain list's scope from its file name.
func plainScope(file string) Scope {
	n := strings.ToLower(strings.TrimSuffix(path.Base(file), path.Ext(file)))
	switch {
	case strings.Contains(n, "frontend"), strings.Contains(n, "skimmer"), n == "js" || strings.HasPrefix(n, "js-") || strings.HasSuffix(n, "-js"):
		return ScopeJS
	case strings.Contains(n, "backend"), strings.Contains(n, "php"):
		return ScopePHP
	}
	return ScopeAny
}

var plainIDClean = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// parsePlainFile adds the rules of one plain list to byID.
func parsePlainFile(name string, data []byte, byID map[string]*Signature, seen map[string]string) error {
	base := plainIDClean.ReplaceAllString(strings.TrimSuffix(path.Base(name), path.Ext(name)), "_")
	scope := plainScope(name)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo := 0
	label := ""
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			label = strings.TrimSpace(strings.TrimPrefix(trimmed, "#"))
			continue
		}
		where := fmt.Sprintf("%s:%d", name, lineNo)
		id := fmt.Sprintf("%s.L%d", base, lineNo)
		if prev, dup := seen[id]; dup {
			return fmt.Errorf("%s: signature id %q already defined at %s in the same directory; rename one file", where, id, prev)
		}
		seen[id] = where
		desc := "community rule " + path.Base(name) + ":" + fmt.Sprint(lineNo)
		if label != "" {
			desc += " (" + label + ")"
		}
		sig := &Signature{ID: id, Kind: KindLiteral, Scope: scope, Severity: plainDefaultSeverity,
			Pattern: trimmed, Description: desc, Source: where}
		if len(trimmed) >= 3 && strings.HasPrefix(trimmed, "/") && strings.HasSuffix(trimmed, "/") {
			sig.Kind = KindRegex
			sig.Pattern = trimmed[1 : len(trimmed)-1]
		}
		if sig.Kind == KindLiteral && len(sig.Pattern) < minPlainLiteral {
			return fmt.Errorf("%s: %s: literal %q is shorter than %d bytes and would flag nearly every file", where, id, sig.Pattern, minPlainLiteral)
		}
		if err := sig.compile(); err != nil {
			return fmt.Errorf("%s: %s: %w", where, id, err)
		}
		byID[id] = sig
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: line %d: %w", name, lineNo+1, err)
	}
	return nil
}
