package m1audit

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
)

// shippedFS holds the starter signature set that comes with mageflow,
// embedded so the host agent needs no extra files.
//
//go:embed signatures/*.sig
var shippedFS embed.FS

// Shipped returns the embedded starter set as a file system rooted at the
// directory holding the *.sig files. Operators extend it by passing their
// own directories after it: LoadSignaturesFS(Shipped(), os.DirFS(dir)).
func Shipped() fs.FS {
	sub, err := fs.Sub(shippedFS, "signatures")
	if err != nil {
		// fs.Sub only fails on an invalid path, and "signatures" is a
		// constant; reaching this is a build defect, not a runtime state.
		panic(err)
	}
	return sub
}

// Kind says how a signature's pattern is matched.
type Kind string

// Signature kinds. "off" exists so an operator can silence a shipped
// signature that misfires on their store without editing shipped files.
const (
	KindLiteral Kind = "literal"
	KindRegex   Kind = "regex"
	KindOff     Kind = "off"
)

// Scope says which files a signature applies to. PHP signatures on JS files
// (and the reverse) only produce false positives, so every signature names
// the languages it is written for.
type Scope string

// Signature scopes.
const (
	ScopePHP  Scope = "php"
	ScopeJS   Scope = "js"
	ScopeHTML Scope = "html"
	ScopeAny  Scope = "any"
)

// Severity ranks a finding for the report.
type Severity string

// Severities, most to least urgent.
const (
	SeverityCritical Severity = "critical"
	SeverityHigh     Severity = "high"
	SeverityMedium   Severity = "medium"
	SeverityLow      Severity = "low"
	SeverityInfo     Severity = "info"
)

// Signature is one malware indicator.
type Signature struct {
	ID          string
	Kind        Kind
	Scope       Scope
	Severity    Severity
	Pattern     string
	Description string
	// Source is "file:line" of the definition that won, so a report can say
	// which operator file a finding came from.
	Source string

	literal []byte
	re      *regexp.Regexp
	pre     prefilter
	litID   int     // automaton id of literal, -1 when not indexed
	hintIDs [][]int // automaton ids of pre.groups, same shape
	// maxLen is the longest match of re in bytes, -1 when unbounded or
	// over maxWindowLen; bounded regexes run on windows (see windowed).
	maxLen int
}

// match returns the byte range of the first match in data, or ok=false.
// hit holds the Aho–Corasick result for data (see Signatures.index): a
// literal or a regex whose required literals did not occur is skipped
// without touching data again.
func (s *Signature) match(data []byte, hit []bool, lower func() []byte) (start, end int, ok bool) {
	switch s.Kind {
	case KindLiteral:
		if s.litID >= 0 && !hit[s.litID] {
			return 0, 0, false
		}
		i := bytes.Index(data, s.literal)
		if i < 0 {
			return 0, 0, false
		}
		return i, i + len(s.literal), true
	case KindRegex:
		if len(s.hintIDs) > 0 && !s.hintsPass(data, hit) {
			return 0, 0, false
		}
		if s.maxLen >= 0 && len(s.pre.groups) > 0 && len(data) > 4*s.maxLen+1024 {
			return s.windowed(data, lower)
		}
		loc := s.re.FindIndex(data)
		if loc == nil {
			return 0, 0, false
		}
		return loc[0], loc[1], true
	}
	return 0, 0, false
}

// hintsPass reports whether each group of the regex's required literals
// has one that occurs: the automaton compares in lower case, so a
// case-sensitive hint is confirmed on the original bytes.
func (s *Signature) hintsPass(data []byte, hit []bool) bool {
	for g, ids := range s.hintIDs {
		ok := false
		for i, id := range ids {
			if !hit[id] {
				continue
			}
			h := s.pre.groups[g][i]
			if h.fold || bytes.Contains(data, h.lit) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// compile validates the pattern and prepares the matcher.
func (s *Signature) compile() error {
	s.litID = -1
	switch s.Kind {
	case KindLiteral:
		s.literal = []byte(s.Pattern)
	case KindRegex:
		re, err := compileRE2(s.Pattern)
		if err != nil {
			return err
		}
		s.re = re
		s.pre = newPrefilter(s.Pattern)
		s.maxLen = -1
		if tree, err := syntax.Parse(s.Pattern, syntax.Perl); err == nil {
			if n := maxMatchLen(tree); n >= 0 && n <= maxWindowLen {
				s.maxLen = n
			}
		}
	default:
		return fmt.Errorf("kind %q must be literal, regex or off", s.Kind)
	}
	return nil
}

// appliesTo reports whether the signature should run on a file of the given
// language scope.
func (s *Signature) appliesTo(fileScopes []Scope) bool {
	for _, fs := range fileScopes {
		if s.Scope == ScopeAny || s.Scope == fs {
			return true
		}
	}
	return false
}

// Signatures is a loaded, validated set, ordered by ID so findings come out
// in a stable order.
type Signatures struct {
	list []*Signature
	ac   *acMatcher
	// heur maps an internal heuristic trigger (see heurTriggers) to its
	// automaton id.
	heur map[string]int
}

// index builds one automaton over every literal signature, every regex
// prefilter literal and the heuristics' trigger words, so a file is read
// once whatever the number of rules.
func (s *Signatures) index() {
	var pats [][]byte
	ids := map[string]int{}
	add := func(p []byte) int {
		k := string(asciiLower(p))
		if id, ok := ids[k]; ok {
			return id
		}
		ids[k] = len(pats)
		pats = append(pats, p)
		return len(pats) - 1
	}
	for _, sig := range s.list {
		sig.litID, sig.hintIDs = -1, nil
		switch sig.Kind {
		case KindLiteral:
			sig.litID = add(sig.literal)
		case KindRegex:
			for _, g := range sig.pre.groups {
				ids := make([]int, len(g))
				for i, h := range g {
					ids[i] = add(h.lit)
				}
				sig.hintIDs = append(sig.hintIDs, ids)
			}
		}
	}
	s.heur = map[string]int{}
	for _, t := range heurTriggers {
		s.heur[t] = add([]byte(t))
	}
	s.ac = newACMatcher(pats)
}

// hits runs the automaton over data.
func (s *Signatures) hits(data []byte) []bool {
	hit := make([]bool, s.ac.npattern)
	s.ac.scan(data, hit)
	return hit
}

// Len returns the number of active signatures.
func (s *Signatures) Len() int { return len(s.list) }

// All returns a copy of the active signatures, ordered by ID.
func (s *Signatures) All() []Signature {
	out := make([]Signature, len(s.list))
	for i, sig := range s.list {
		out[i] = *sig
	}
	return out
}

// LoadSignatures reads every *.sig file and every plain rule list (*.txt,
// the community's one-indicator-per-line format, see parsePlainFile) of each
// directory, sorted by name, directory by directory; a later definition
// with the same ID replaces an earlier one, and kind "off" removes it (a
// plain list's rule backend.L17 is switched off with "backend.L17<TAB>off"). Typical use:
//
//	LoadSignatures("/usr/share/mageflow/signatures", "/etc/mageflow/signatures.d")
//
// Use LoadSignaturesFS(Shipped(), os.DirFS(dir)) to start from the embedded
// starter set.
//
// File format: UTF-8 text, one signature per line, fields separated by a
// single TAB:
//
//	id  kind  scope  severity  pattern  description
//
// id is [A-Za-z0-9_.-]+; kind is literal, regex or off; scope is php, js,
// html or any; severity is critical, high, medium, low or info. A literal is
// matched byte for byte (case-sensitive); a regex uses Go RE2 syntax (no
// backreferences or lookaround; use (?i) for case-insensitive, (?s) to let .
// cross lines) and runs over the whole file, so it also catches minified
// one-line JavaScript. (?i) folds ASCII letters only. PCRE-only syntax
// (lookaround, backreferences, possessive or atomic groups, "{,n}", which
// RE2 would read as a literal) is rejected with file:line. The literals
// every match must contain are matched for all rules at once by one
// automaton; a regex runs only on files that contain them, and a regex
// whose match length is bounded runs only on the lines around them. Patterns cannot contain a TAB; write \t in a regex.
// An "off" line is just "id<TAB>off". Blank lines and lines starting with #
// are ignored. Any bad line fails the whole load with file:line, because a
// silently dropped signature is a hole nobody sees.
func LoadSignatures(dirs ...string) (*Signatures, error) {
	layers := make([]fs.FS, 0, len(dirs))
	names := make([]string, 0, len(dirs))
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("signature directory %s: %w (create it or remove it from the configuration)", d, err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("signature directory %s is not a directory", d)
		}
		layers = append(layers, os.DirFS(d))
		names = append(names, d)
	}
	return loadLayers(layers, names)
}

// LoadSignaturesFS is LoadSignatures over file systems (for example Shipped()
// followed by os.DirFS of an operator directory).
func LoadSignaturesFS(layers ...fs.FS) (*Signatures, error) {
	names := make([]string, len(layers))
	for i := range layers {
		names[i] = fmt.Sprintf("layer%d", i)
	}
	return loadLayers(layers, names)
}

func loadLayers(layers []fs.FS, names []string) (*Signatures, error) {
	byID := map[string]*Signature{}
	for i, fsys := range layers {
		if fsys == nil {
			return nil, fmt.Errorf("signature layer %s is nil", names[i])
		}
		files, err := fs.Glob(fsys, "*.sig")
		if err != nil {
			return nil, fmt.Errorf("list signatures in %s: %w", names[i], err)
		}
		plain, err := fs.Glob(fsys, "*.txt")
		if err != nil {
			return nil, fmt.Errorf("list plain rule lists in %s: %w", names[i], err)
		}
		files = append(files, plain...)
		sort.Strings(files)
		// IDs defined in this layer: a duplicate inside one layer is a
		// mistake (which one wins would depend on file names), across layers
		// it is the documented override.
		seen := map[string]string{}
		for _, f := range files {
			data, err := fs.ReadFile(fsys, f)
			if err != nil {
				return nil, fmt.Errorf("read signatures %s: %w", path.Join(names[i], f), err)
			}
			parse := parseSigFile
			if strings.HasSuffix(f, ".txt") {
				parse = parsePlainFile
			}
			if err := parse(path.Join(names[i], f), data, byID, seen); err != nil {
				return nil, err
			}
		}
	}
	out := &Signatures{}
	for _, s := range byID {
		out.list = append(out.list, s)
	}
	sort.Slice(out.list, func(a, b int) bool { return out.list[a].ID < out.list[b].ID })
	out.index()
	return out, nil
}

var sigIDRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func parseSigFile(name string, data []byte, byID map[string]*Signature, seen map[string]string) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, lineNo)
		fields := strings.Split(line, "\t")
		id := fields[0]
		if !sigIDRe.MatchString(id) {
			return fmt.Errorf("%s: signature id %q must match [A-Za-z0-9_.-]+ (fields are separated by a single TAB)", where, id)
		}
		if prev, dup := seen[id]; dup {
			return fmt.Errorf("%s: signature id %q already defined at %s in the same directory; rename one", where, id, prev)
		}
		seen[id] = where
		if len(fields) >= 2 && Kind(fields[1]) == KindOff {
			if len(fields) != 2 {
				return fmt.Errorf("%s: an \"off\" line is just id<TAB>off, got %d fields", where, len(fields))
			}
			delete(byID, id)
			continue
		}
		if len(fields) != 6 {
			return fmt.Errorf("%s: want 6 TAB-separated fields (id kind scope severity pattern description), got %d; a TAB inside the pattern must be written \\t", where, len(fields))
		}
		sig := &Signature{
			ID:          id,
			Kind:        Kind(fields[1]),
			Scope:       Scope(fields[2]),
			Severity:    Severity(fields[3]),
			Pattern:     fields[4],
			Description: strings.TrimSpace(fields[5]),
			Source:      where,
		}
		switch sig.Scope {
		case ScopePHP, ScopeJS, ScopeHTML, ScopeAny:
		default:
			return fmt.Errorf("%s: scope %q must be php, js, html or any", where, fields[2])
		}
		switch sig.Severity {
		case SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow, SeverityInfo:
		default:
			return fmt.Errorf("%s: severity %q must be critical, high, medium, low or info", where, fields[3])
		}
		if sig.Pattern == "" {
			return fmt.Errorf("%s: empty pattern would match every file", where)
		}
		if sig.Description == "" {
			return fmt.Errorf("%s: description is empty; say what the signature detects so a report reader can act on it", where)
		}
		switch sig.Kind {
		case KindLiteral, KindRegex:
		default:
			return fmt.Errorf("%s: kind %q must be literal, regex or off", where, fields[1])
		}
		if err := sig.compile(); err != nil {
			return fmt.Errorf("%s: bad %s for %s: %w", where, sig.Kind, id, err)
		}
		byID[id] = sig
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: line %d: %w", name, lineNo+1, err)
	}
	return nil
}
