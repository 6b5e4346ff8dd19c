package m1audit

import (
	"bytes"
	"regexp/syntax"
)

// A prefilter is a set of literals at least one of which every match of a
// regex must contain. Checking them with bytes.Index first lets ScanFiles
// skip most regexes on most files: the bounded gaps the skimmer signatures
// need (".{0,500}") compile to large automata that cost far more than a
// substring search, and on a clean tree nearly every file fails the
// prefilter. The extraction is conservative: when in doubt it returns no
// prefilter and the regex always runs.
type prefilter struct {
	alts []hint
}

type hint struct {
	lit  []byte
	fold bool // compare against the ASCII-lowercased data
}

// minHint is the shortest literal worth checking; shorter ones pass on
// nearly every file and only add work.
const minHint = 3

func newPrefilter(pattern string) prefilter {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return prefilter{}
	}
	alts, ok := required(re)
	if !ok {
		return prefilter{}
	}
	for _, h := range alts {
		if len(h.lit) < minHint {
			return prefilter{}
		}
	}
	return prefilter{alts: alts}
}

func (p prefilter) needsLower() bool {
	for _, h := range p.alts {
		if h.fold {
			return true
		}
	}
	return false
}

// pass reports whether data may match. lower is data with A-Z lowered.
func (p prefilter) pass(data, lower []byte) bool {
	if len(p.alts) == 0 {
		return true
	}
	for _, h := range p.alts {
		hay := data
		if h.fold {
			hay = lower
		}
		if bytes.Contains(hay, h.lit) {
			return true
		}
	}
	return false
}

// required returns literals one of which every match of re contains.
func required(re *syntax.Regexp) ([]hint, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		return literalHint(re)
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0])
		}
		return nil, false
	case syntax.OpConcat:
		var best []hint
		for _, sub := range re.Sub {
			h, ok := required(sub)
			if ok && score(h) > score(best) {
				best = h
			}
		}
		return best, best != nil
	case syntax.OpAlternate:
		var all []hint
		for _, sub := range re.Sub {
			h, ok := required(sub)
			if !ok {
				return nil, false // one branch without a literal can match anything
			}
			all = append(all, h...)
		}
		return all, len(all) > 0
	}
	return nil, false
}

// score prefers sets whose shortest literal is longest: the shortest one
// decides how often the prefilter lets a file through.
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

// literalHint turns a literal node into a hint. Case-folded literals are
// compared in ASCII lower case, which is only sound for runes whose case
// variants are all ASCII: Go's (?i) also matches "k" against the Kelvin sign
// and "s" against the long s, so those runes (and anything non-ASCII) split
// the literal and the longest clean run is used.
func literalHint(re *syntax.Regexp) ([]hint, bool) {
	fold := re.Flags&syntax.FoldCase != 0
	var best, cur []byte
	flush := func() {
		if len(cur) > len(best) {
			best = append([]byte(nil), cur...)
		}
		cur = cur[:0]
	}
	for _, r := range re.Rune {
		if r >= 0x80 || (fold && (r == 'k' || r == 'K' || r == 's' || r == 'S')) {
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
	if len(best) == 0 {
		return nil, false
	}
	return []hint{{lit: best, fold: fold}}, true
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
