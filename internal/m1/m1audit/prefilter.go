package m1audit

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"unicode"
)

// A prefilter is a conjunction of literal sets: every match of a regex
// contains at least one literal of each group. The signature automaton
// reports which literals occur in a file, so most regexes are skipped on
// most files without running: Go's regexp engine is an NFA that costs far
// more per byte than the automaton, and the bounded gaps of the skimmer
// signatures (".{0,500}") make it slower still. The extraction is
// conservative: when in doubt a group is dropped, and with no group left
// the regex always runs.
type prefilter struct {
	groups [][]hint
	// alts is the flattened groups, in order; Signature.hintIDs follows it.
	alts []hint
}

type hint struct {
	lit  []byte
	fold bool // compare in ASCII lower case
}

// minHint is the shortest literal worth checking; shorter ones pass on
// nearly every file and only add work.
const minHint = 3

// maxGroups bounds how many groups a regex keeps: the rarest few decide.
const maxGroups = 4

func newPrefilter(pattern string) prefilter {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return prefilter{}
	}
	groups := required(re)
	var p prefilter
	for _, g := range groups {
		if len(p.groups) == maxGroups {
			break
		}
		p.groups = append(p.groups, g)
		p.alts = append(p.alts, g...)
	}
	return p
}

// pass reports whether data may match. lower is data with A-Z lowered.
func (p prefilter) pass(data, lower []byte) bool {
	for _, g := range p.groups {
		ok := false
		for _, h := range g {
			hay := data
			if h.fold {
				hay = lower
			}
			if bytes.Contains(hay, h.lit) {
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

// required returns groups of literals: every match of re contains one
// literal of each group. Groups whose literals are shorter than minHint
// are left out.
func required(re *syntax.Regexp) [][]hint {
	switch re.Op {
	case syntax.OpLiteral:
		return literalHints(re)
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0])
		}
	case syntax.OpConcat:
		return concatGroups(re.Sub)
	case syntax.OpAlternate:
		return alternateGroups(re.Sub)
	}
	return nil
}

// concatGroups collects the groups of every part, and joins runs of
// parts with few exact spellings ("\$_" then "(GET|POST)") into one
// group of whole strings ("$_get", "$_post"), much rarer than either part.
func concatGroups(subs []*syntax.Regexp) [][]hint {
	var all [][]hint
	var run []string
	runFold, inRun := false, false
	flush := func() {
		if inRun {
			if g := stringsGroup(run, runFold); g != nil {
				all = append(all, g)
			}
		}
		run, runFold, inRun = nil, false, false
	}
	for _, sub := range subs {
		set, fold, ok := exactSet(sub)
		if ok && (!inRun || len(run)*len(set) <= maxExact) {
			if !inRun {
				run, inRun = []string{""}, true
			}
			run, runFold = cross(run, set), runFold || fold
			continue
		}
		flush()
		if ok {
			run, runFold, inRun = set, fold, true
			continue
		}
		all = append(all, required(sub)...)
	}
	flush()
	sortGroups(all)
	return all
}

// alternateGroups: a match of an alternation matches one branch, so a
// group made of one required group of every branch is required. Group j
// takes each branch's j-th best group (its last when it has fewer).
func alternateGroups(subs []*syntax.Regexp) [][]hint {
	var branches [][][]hint
	most := 0
	for _, sub := range subs {
		g := required(sub)
		if len(g) == 0 {
			return nil // one branch without a literal can match anything
		}
		branches = append(branches, g)
		most = max(most, len(g))
	}
	var out [][]hint
	for j := 0; j < min(most, maxGroups); j++ {
		var g []hint
		for _, b := range branches {
			g = append(g, b[min(j, len(b)-1)]...)
		}
		out = append(out, dedupHints(g))
	}
	return out
}

func dedupHints(g []hint) []hint {
	seen := map[string]bool{}
	var out []hint
	for _, h := range g {
		k := string(h.lit) + fmt.Sprint(h.fold)
		if !seen[k] {
			seen[k] = true
			out = append(out, h)
		}
	}
	return out
}

// maxExact bounds the spellings an exact set may have.
const maxExact = 32

// exactSet returns every string re can match when they are few: literals,
// small classes (["']), alternations and optional parts of those.
func exactSet(re *syntax.Regexp) (set []string, fold, ok bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return []string{string(asciiLower([]byte(string(re.Rune))))}, true, asciiOnly(re.Rune)
		}
		return []string{string(re.Rune)}, false, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) >= 4 || r >= 0x80 {
					return nil, false, false
				}
				out = append(out, string(r))
			}
		}
		return out, false, len(out) > 0
	case syntax.OpCapture:
		return exactSet(re.Sub[0])
	case syntax.OpQuest:
		set, fold, ok := exactSet(re.Sub[0])
		return append(set, ""), fold, ok && len(set) < maxExact
	case syntax.OpAlternate, syntax.OpConcat:
		out := []string{""}
		if re.Op == syntax.OpAlternate {
			out = nil
		}
		anyFold := false
		for _, sub := range re.Sub {
			set, fold, ok := exactSet(sub)
			if !ok {
				return nil, false, false
			}
			anyFold = anyFold || fold
			if re.Op == syntax.OpAlternate {
				out = append(out, set...)
			} else {
				out = cross(out, set)
			}
			if len(out) > maxExact {
				return nil, false, false
			}
		}
		return out, anyFold, true
	}
	return nil, false, false
}

func asciiOnly(rs []rune) bool {
	for _, r := range rs {
		if r >= 0x80 {
			return false
		}
	}
	return true
}

func cross(a, b []string) []string {
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return out
}

// stringsGroup makes a group of whole strings, nil when one is too short
// to be worth checking (it would pass nearly every file).
func stringsGroup(set []string, fold bool) []hint {
	var g []hint
	for _, s := range set {
		if len(s) < minHint {
			return nil
		}
		if fold {
			s = string(asciiLower([]byte(s)))
		}
		g = append(g, hint{lit: []byte(s), fold: fold})
	}
	return dedupHints(g)
}

func sortGroups(gs [][]hint) {
	for i := 1; i < len(gs); i++ {
		for j := i; j > 0 && better(gs[j], gs[j-1]); j-- {
			gs[j], gs[j-1] = gs[j-1], gs[j]
		}
	}
}

// better orders groups: longer shortest literal first, then by text, so
// the branches of an alternation rank the same literals alike.
func better(a, b []hint) bool {
	if sa, sb := score(a), score(b); sa != sb {
		return sa > sb
	}
	return string(a[0].lit) < string(b[0].lit)
}

// score is the length of a group's shortest literal.
func score(hs []hint) int {
	if len(hs) == 0 {
		return 0
	}
	m := len(hs[0].lit)
	for _, h := range hs[1:] {
		m = min(m, len(h.lit))
	}
	return m
}

// literalHints turns a literal node into a one-literal group, using the
// longest run of ASCII (case-insensitive literals are compared in ASCII
// lower case; compileSig makes the regex fold only ASCII, so the Kelvin
// sign and the long s no longer stand for k and s).
func literalHints(re *syntax.Regexp) [][]hint {
	fold := re.Flags&syntax.FoldCase != 0
	var best, cur []byte
	flush := func() {
		if len(cur) > len(best) {
			best = append([]byte(nil), cur...)
		}
		cur = cur[:0]
	}
	for _, r := range re.Rune {
		if r >= 0x80 {
			flush()
			continue
		}
		c := byte(r)
		if fold && c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		cur = append(cur, c)
	}
	flush()
	if len(best) < minHint {
		return nil
	}
	return [][]hint{{{lit: best, fold: fold}}}
}

// compileSig compiles a signature regex with ASCII-only case folding: a
// (?i) letter matches its ASCII upper and lower case and nothing else.
// Go's (?i) would also match "k" against the Kelvin sign and "s" against
// the long s, which no PHP or JavaScript name contains, and which would
// make a sound literal prefilter impossible for every pattern with an s.
func compileSig(pattern string) (*regexp.Regexp, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return regexp.Compile(pattern) // for its error message
	}
	asciiFold(re)
	return regexp.Compile(re.String())
}

func asciiFold(re *syntax.Regexp) {
	for _, s := range re.Sub {
		asciiFold(s)
	}
	if re.Op != syntax.OpLiteral || re.Flags&syntax.FoldCase == 0 {
		return
	}
	var subs []*syntax.Regexp
	for _, r := range re.Rune {
		n := &syntax.Regexp{Op: syntax.OpLiteral, Rune: []rune{r}, Flags: re.Flags &^ syntax.FoldCase}
		if r < 0x80 && unicode.IsLetter(r) {
			lo, up := unicode.ToLower(r), unicode.ToUpper(r)
			n = &syntax.Regexp{Op: syntax.OpCharClass, Rune: []rune{up, up, lo, lo}}
		} else if r >= 0x80 {
			n.Flags |= syntax.FoldCase
		}
		subs = append(subs, n)
	}
	*re = syntax.Regexp{Op: syntax.OpConcat, Sub: subs, Flags: re.Flags &^ syntax.FoldCase}
}

// asciiLower lowers A-Z only, keeping every other byte and the length, so
// offsets stay comparable and invalid UTF-8 is left alone.
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
