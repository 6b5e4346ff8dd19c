package m1audit

// acMatcher is a small Aho–Corasick automaton over ASCII-lowered bytes: one
// pass over a file tells which of many literals occur in it, so the cost of
// literal signatures and regex prefilters no longer grows with their
// number. Patterns are lowered when added; callers that need a
// case-sensitive match confirm a hit with bytes.Index on the original data,
// which only happens for the few literals that occur.
//
// The automaton is a full DFA (every state has a transition for every byte
// class), so scanning is two table loads per input byte. Bytes that occur
// in no pattern share one class, which keeps the table small.
type acMatcher struct {
	class    [256]uint8
	nclass   int
	delta    []int32   // state*nclass + class -> next state
	out      [][]int32 // pattern ids ending at a state (including via suffix links)
	npattern int
}

// newACMatcher builds the automaton; pattern i is reported as id i. Empty
// patterns are never reported.
func newACMatcher(patterns [][]byte) *acMatcher {
	m := &acMatcher{npattern: len(patterns)}
	m.buildClasses(patterns)
	type node struct {
		next map[uint8]int32
		fail int32
		out  []int32
	}
	nodes := []node{{next: map[uint8]int32{}}}
	for id, p := range patterns {
		if len(p) == 0 {
			continue
		}
		s := int32(0)
		for _, c := range asciiLower(p) {
			k := m.class[c]
			nx, ok := nodes[s].next[k]
			if !ok {
				nodes = append(nodes, node{next: map[uint8]int32{}})
				nx = int32(len(nodes) - 1)
				nodes[s].next[k] = nx
			}
			s = nx
		}
		nodes[s].out = append(nodes[s].out, int32(id))
	}
	nc := m.nclass
	m.delta = make([]int32, len(nodes)*nc)
	m.out = make([][]int32, len(nodes))
	// Breadth-first: a state's fail link is complete before its children.
	queue := []int32{0}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := nodes[s].fail
		if s != 0 {
			nodes[s].out = append(nodes[s].out, m.out[f]...)
		}
		m.out[s] = nodes[s].out
		for k := 0; k < nc; k++ {
			nx, ok := nodes[s].next[uint8(k)]
			switch {
			case ok:
				if s == 0 {
					nodes[nx].fail = 0
				} else {
					nodes[nx].fail = m.delta[int(f)*nc+k]
				}
				m.delta[int(s)*nc+k] = nx
				queue = append(queue, nx)
			case s == 0:
				m.delta[k] = 0
			default:
				m.delta[int(s)*nc+k] = m.delta[int(f)*nc+k]
			}
		}
	}
	return m
}

// buildClasses gives every byte that occurs in a (lowered) pattern its own
// class and maps every other byte, and upper-case letters to their lower
// case, accordingly.
func (m *acMatcher) buildClasses(patterns [][]byte) {
	used := [256]bool{}
	for _, p := range patterns {
		for _, c := range asciiLower(p) {
			used[c] = true
		}
	}
	n := 1 // class 0: bytes in no pattern
	for c := 0; c < 256; c++ {
		if used[c] && n < 255 {
			m.class[c] = uint8(n)
			n++
		}
	}
	for c := 'A'; c <= 'Z'; c++ {
		m.class[c] = m.class[c+'a'-'A']
	}
	m.nclass = n
}

// scan marks hit[id] for every pattern that occurs in data (compared in
// ASCII lower case). hit must have npattern entries.
func (m *acMatcher) scan(data []byte, hit []bool) {
	if m.npattern == 0 {
		return
	}
	s := int32(0)
	nc := int32(m.nclass)
	for _, c := range data {
		s = m.delta[s*nc+int32(m.class[c])]
		if o := m.out[s]; o != nil {
			for _, id := range o {
				hit[id] = true
			}
		}
	}
}
