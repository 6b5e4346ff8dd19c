package m1audit

import (
	"bytes"
	"regexp/syntax"
)

// Windowed matching: when a regex can only match a bounded number of bytes
// and every match contains one literal of a known group, a match lies
// within maxLen bytes of an occurrence of that literal. Running the regex
// only on those windows (widened to whole lines, so ^, $ and \b see the
// same neighbours) finds the same first match as running it on the whole
// file, at a fraction of the cost on large files: Go's regexp engine costs
// far more per byte than the literal search.

// maxWindowLen is the longest match length worth windowing for.
const maxWindowLen = 4096

// maxMatchLen returns the most bytes re can match, or -1 if unbounded.
func maxMatchLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0
	case syntax.OpBeginText, syntax.OpEndText:
		return -1 // whole-text anchors would see a window edge as the text edge
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += utf8Len(r, re.Flags&syntax.FoldCase != 0)
		}
		return n
	case syntax.OpCharClass, syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		return 4
	case syntax.OpCapture:
		return maxMatchLen(re.Sub[0])
	case syntax.OpQuest:
		return maxMatchLen(re.Sub[0])
	case syntax.OpRepeat:
		if re.Max < 0 {
			return -1
		}
		n := maxMatchLen(re.Sub[0])
		if n < 0 {
			return -1
		}
		return capLen(n * re.Max)
	case syntax.OpConcat:
		sum := 0
		for _, s := range re.Sub {
			n := maxMatchLen(s)
			if n < 0 {
				return -1
			}
			sum = capLen(sum + n)
		}
		return sum
	case syntax.OpAlternate:
		m := 0
		for _, s := range re.Sub {
			n := maxMatchLen(s)
			if n < 0 {
				return -1
			}
			m = max(m, n)
		}
		return m
	}
	return -1 // star, plus and anything unknown
}

func capLen(n int) int {
	if n > maxWindowLen {
		return maxWindowLen + 1
	}
	return n
}

// utf8Len bounds the bytes one literal rune matches; a case-folded rune
// may match a longer variant (k and the Kelvin sign).
func utf8Len(r rune, fold bool) int {
	if fold {
		return 4
	}
	switch {
	case r < 0x80:
		return 1
	case r < 0x800:
		return 2
	case r < 0x10000:
		return 3
	}
	return 4
}

// windowed runs the signature's regex on the windows around the
// occurrences of its first literal group; ok=false means no match.
func (s *Signature) windowed(data []byte, lower func() []byte) (start, end int, ok bool) {
	g := s.pre.groups[0]
	var hay []byte
	var spans [][2]int
	for _, h := range g {
		hay = data
		if h.fold {
			hay = lower()
		}
		for off := 0; ; {
			k := bytes.Index(hay[off:], h.lit)
			if k < 0 {
				break
			}
			p := off + k
			off = p + 1
			a, b := max(0, p-s.maxLen), min(len(data), p+len(h.lit)+s.maxLen)
			spans = append(spans, [2]int{lineStart(data, a), lineEnd(data, b)})
		}
	}
	sortSpans(spans)
	for i := 0; i < len(spans); {
		a, b := spans[i][0], spans[i][1]
		j := i + 1
		for j < len(spans) && spans[j][0] <= b {
			b = max(b, spans[j][1])
			j++
		}
		if loc := s.re.FindIndex(data[a:b]); loc != nil {
			return a + loc[0], a + loc[1], true
		}
		i = j
	}
	return 0, 0, false
}

func lineStart(d []byte, i int) int {
	if k := bytes.LastIndexByte(d[:i], '\n'); k >= 0 {
		return k + 1
	}
	return 0
}

func lineEnd(d []byte, i int) int {
	if k := bytes.IndexByte(d[i:], '\n'); k >= 0 {
		return i + k
	}
	return len(d)
}

func sortSpans(s [][2]int) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j][0] < s[j-1][0]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
