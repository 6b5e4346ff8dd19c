package gitmeta

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
)

// This file reads and writes git's commit-graph file (version 1, SHA-1),
// as documented in git's Documentation/gitformat-commit-graph.txt. We use the
// standard format and location (objects/info/commit-graph) rather than a
// private one so that `git commit-graph verify` can check what we write and
// the git CLI run on a mirror benefits from it too.
//
// The graph gives every commit a dense uint32 position; parents are stored
// as positions. Counting ancestors then becomes a walk over integers in a
// memory-mapped file with a bitset, with no object decoding at all — this is
// what makes BuildNumber as fast as `git rev-list --count`.

const (
	graphSignature   = "CGPH"
	graphHeaderSize  = 8
	chunkEntrySize   = 12
	oidSize          = 20
	cdatEntrySize    = oidSize + 16
	parentNone       = 0x70000000
	parentOctopus    = 0x80000000
	edgeLast         = 0x80000000
	generationV1Max  = 0x3FFFFFFF
	commitTimeMaxV1  = 1<<34 - 1
	chunkIDFanout    = 0x4f494446 // "OIDF"
	chunkIDOIDLookup = 0x4f49444c // "OIDL"
	chunkIDData      = 0x43444154 // "CDAT"
	chunkIDEdges     = 0x45444745 // "EDGE"
)

// graphRelPath is where git looks for a single-file commit-graph.
var graphRelPath = filepath.Join("objects", "info", "commit-graph")

// errCorruptGraph is wrapped by every structural problem found in a graph
// file; the caller reacts by rebuilding the graph from objects.
var errCorruptGraph = errors.New("corrupt commit-graph")

// graph is a parsed, read-only commit-graph. Accessors return values, never
// sub-slices of data, because data may be an mmap that is unmapped once the
// graph is garbage collected.
type graph struct {
	data     []byte
	n        uint32
	fanout   int // offsets into data
	oidl     int
	cdat     int
	edge     int // -1 when absent
	edgeLen  uint32
	checksum [oidSize]byte
}

// loadGraph maps the repository's commit-graph. It returns (nil, nil) when
// the repository has none yet.
func loadGraph(gitDir string) (*graph, error) {
	f, err := os.Open(filepath.Join(gitDir, graphRelPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < graphHeaderSize+chunkEntrySize+oidSize || size > 1<<40 {
		return nil, fmt.Errorf("%w: %s has implausible size %d", errCorruptGraph, f.Name(), size)
	}
	// mmap rather than read: a cold BuildNumber then only touches the pages
	// of the fan-out, one lookup and the commits it walks, which keeps the
	// descendant case cheap however long the history is.
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap commit-graph: %w", err)
	}
	g, err := parseGraph(data)
	if err != nil {
		_ = syscall.Munmap(data)
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	runtime.AddCleanup(g, func(b []byte) { _ = syscall.Munmap(b) }, data)
	return g, nil
}

// parseGraph validates the header and chunk table so that later accessors
// can index without checks beyond the position bound.
func parseGraph(data []byte) (*graph, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errCorruptGraph, fmt.Sprintf(format, args...))
	}
	if string(data[:4]) != graphSignature {
		return nil, bad("bad signature")
	}
	if data[4] != 1 || data[5] != 1 {
		return nil, bad("unsupported version %d / hash version %d", data[4], data[5])
	}
	if data[7] != 0 {
		return nil, bad("split commit-graph chains are not supported")
	}
	nChunks := int(data[6])
	tableEnd := graphHeaderSize + (nChunks+1)*chunkEntrySize
	end := len(data) - oidSize
	if tableEnd > end {
		return nil, bad("chunk table truncated")
	}
	g := &graph{data: data, fanout: -1, oidl: -1, cdat: -1, edge: -1}
	copy(g.checksum[:], data[end:])
	sizes := map[uint32]int{}
	for i := 0; i < nChunks; i++ {
		e := graphHeaderSize + i*chunkEntrySize
		id := binary.BigEndian.Uint32(data[e:])
		off := binary.BigEndian.Uint64(data[e+4:])
		next := binary.BigEndian.Uint64(data[e+chunkEntrySize+4:])
		if off < uint64(tableEnd) || next < off || next > uint64(end) {
			return nil, bad("chunk %08x out of bounds", id)
		}
		sizes[id] = int(next - off)
		switch id {
		case chunkIDFanout:
			g.fanout = int(off)
		case chunkIDOIDLookup:
			g.oidl = int(off)
		case chunkIDData:
			g.cdat = int(off)
		case chunkIDEdges:
			g.edge = int(off)
			g.edgeLen = uint32((next - off) / 4)
		}
	}
	if g.fanout < 0 || g.oidl < 0 || g.cdat < 0 {
		return nil, bad("missing a required chunk")
	}
	if sizes[chunkIDFanout] != 256*4 {
		return nil, bad("fan-out chunk has size %d", sizes[chunkIDFanout])
	}
	g.n = binary.BigEndian.Uint32(data[g.fanout+255*4:])
	if sizes[chunkIDOIDLookup] != int(g.n)*oidSize || sizes[chunkIDData] != int(g.n)*cdatEntrySize {
		return nil, bad("chunk sizes do not match %d commits", g.n)
	}
	return g, nil
}

func (g *graph) oidAt(pos uint32) (h [oidSize]byte) {
	copy(h[:], g.data[g.oidl+int(pos)*oidSize:])
	return h
}

// lookup finds the position of oid using the fan-out table and a binary
// search within its first-byte bucket.
func (g *graph) lookup(oid [oidSize]byte) (uint32, bool) {
	if g == nil {
		return 0, false
	}
	lo := uint32(0)
	if oid[0] > 0 {
		lo = binary.BigEndian.Uint32(g.data[g.fanout+(int(oid[0])-1)*4:])
	}
	hi := binary.BigEndian.Uint32(g.data[g.fanout+int(oid[0])*4:])
	for lo < hi {
		mid := lo + (hi-lo)/2
		off := g.oidl + int(mid)*oidSize
		switch bytes.Compare(g.data[off:off+oidSize], oid[:]) {
		case 0:
			return mid, true
		case -1:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return 0, false
}

// prefixRange returns the positions [lo, hi) whose OID starts with the
// given binary prefix. Callers with an odd number of hex digits pass the
// whole bytes and filter on the last nibble themselves.
func (g *graph) prefixRange(prefix []byte) (lo, hi uint32) {
	if g == nil || len(prefix) == 0 {
		return 0, 0
	}
	cmp := func(pos uint32) int {
		off := g.oidl + int(pos)*oidSize
		return bytes.Compare(g.data[off:off+len(prefix)], prefix)
	}
	lo = (searchFirst(g.n, func(p uint32) bool { return cmp(p) >= 0 }))
	hi = (searchFirst(g.n, func(p uint32) bool { return cmp(p) > 0 }))
	return lo, hi
}

// searchFirst returns the first p in [0,n) with f(p) true, or n.
func searchFirst(n uint32, f func(uint32) bool) uint32 {
	lo, hi := uint32(0), n
	for lo < hi {
		mid := lo + (hi-lo)/2
		if f(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

type graphCommit struct {
	tree       [oidSize]byte
	p1, p2     uint32 // raw parent words
	generation uint32
	time       uint64
}

func (g *graph) commitAt(pos uint32) graphCommit {
	d := g.data[g.cdat+int(pos)*cdatEntrySize:]
	var c graphCommit
	copy(c.tree[:], d)
	c.p1 = binary.BigEndian.Uint32(d[20:])
	c.p2 = binary.BigEndian.Uint32(d[24:])
	hiWord := binary.BigEndian.Uint32(d[28:])
	c.generation = hiWord >> 2
	c.time = uint64(hiWord&3)<<32 | uint64(binary.BigEndian.Uint32(d[32:]))
	return c
}

// parents appends the parent positions of pos to buf. It reports an error
// rather than panicking when the file references positions it does not
// have, so a damaged graph degrades into a rebuild instead of a crash.
func (g *graph) parents(pos uint32, buf []uint32) ([]uint32, error) {
	d := g.data[g.cdat+int(pos)*cdatEntrySize+20:]
	p1 := binary.BigEndian.Uint32(d)
	if p1 == parentNone {
		return buf, nil
	}
	if p1 >= g.n {
		return buf, fmt.Errorf("%w: commit %d has parent %d of %d", errCorruptGraph, pos, p1, g.n)
	}
	buf = append(buf, p1)
	p2 := binary.BigEndian.Uint32(d[4:])
	switch {
	case p2 == parentNone:
		return buf, nil
	case p2&parentOctopus == 0:
		if p2 >= g.n {
			return buf, fmt.Errorf("%w: commit %d has parent %d of %d", errCorruptGraph, pos, p2, g.n)
		}
		return append(buf, p2), nil
	}
	if g.edge < 0 {
		return buf, fmt.Errorf("%w: octopus commit without EDGE chunk", errCorruptGraph)
	}
	for i := p2 &^ parentOctopus; ; i++ {
		if i >= g.edgeLen {
			return buf, fmt.Errorf("%w: EDGE list overrun", errCorruptGraph)
		}
		e := binary.BigEndian.Uint32(g.data[g.edge+int(i)*4:])
		p := e &^ edgeLast
		if p >= g.n {
			return buf, fmt.Errorf("%w: commit %d has parent %d of %d", errCorruptGraph, pos, p, g.n)
		}
		buf = append(buf, p)
		if e&edgeLast != 0 {
			return buf, nil
		}
	}
}

// newCommit is a commit decoded from objects that the graph does not hold
// yet.
type newCommit struct {
	oid     [oidSize]byte
	tree    [oidSize]byte
	parents [][oidSize]byte
	time    int64
}

// buildGraph produces the bytes of a commit-graph holding every commit of
// old plus added (which must not overlap old). oldToNew maps each old
// position to its position in the new file so that position-keyed caches
// can be carried over instead of recomputed.
func buildGraph(old *graph, added []newCommit) (data []byte, oldToNew []uint32, err error) {
	slices.SortFunc(added, func(a, b newCommit) int { return bytes.Compare(a.oid[:], b.oid[:]) })
	var oldN uint32
	if old != nil {
		oldN = old.n
	}
	total := uint64(oldN) + uint64(len(added))
	if total >= parentNone {
		return nil, nil, fmt.Errorf("commit-graph: %d commits exceed the format's limit", total)
	}
	b := &graphBuilder{old: old, added: added, oldN: oldN, n: uint32(total)}
	if err := b.mergeOrder(); err != nil {
		return nil, nil, err
	}
	if err := b.resolveParents(); err != nil {
		return nil, nil, err
	}
	b.computeGenerations()
	l, err := b.layout()
	if err != nil {
		return nil, nil, err
	}
	return l.encode(), b.oldToNew, nil
}

// graphBuilder holds the state of one buildGraph: the merged order of old
// and added commits and what is computed over it.
type graphBuilder struct {
	old   *graph
	added []newCommit // sorted by OID
	oldN  uint32      // commits in old
	n     uint32      // commits in the new graph

	order        []uint32   // order[k] is an old position, or ^j for added[j]
	oldToNew     []uint32   // new position of each old position
	addedPos     []uint32   // new position of each added commit
	addedParents [][]uint32 // new parent positions of each added commit
	gen          []uint32   // topological level of each new position
}

// mergeOrder merges the two sorted OID lists into b.order, refusing a
// commit that is both old and added.
func (b *graphBuilder) mergeOrder() error {
	b.order = make([]uint32, 0, b.n)
	b.oldToNew = make([]uint32, b.oldN)
	b.addedPos = make([]uint32, len(b.added))
	var i uint32
	j := 0
	for i < b.oldN || j < len(b.added) {
		takeOld := j == len(b.added)
		if !takeOld && i < b.oldN {
			o := b.old.oidAt(i)
			c := bytes.Compare(o[:], b.added[j].oid[:])
			if c == 0 {
				return fmt.Errorf("commit-graph: commit %x added twice", o)
			}
			takeOld = c < 0
		}
		if takeOld {
			b.oldToNew[i] = uint32(len(b.order))
			b.order = append(b.order, i)
			i++
		} else {
			b.addedPos[j] = uint32(len(b.order))
			b.order = append(b.order, ^uint32(j))
			j++
		}
	}
	return nil
}

// posOf is the new position of a commit, old or added.
func (b *graphBuilder) posOf(oid [oidSize]byte) (uint32, bool) {
	if p, ok := b.old.lookup(oid); ok {
		return b.oldToNew[p], true
	}
	k, ok := slices.BinarySearchFunc(b.added, oid, func(a newCommit, t [oidSize]byte) int { return bytes.Compare(a.oid[:], t[:]) })
	if ok {
		return b.addedPos[k], true
	}
	return 0, false
}

// errMissingParent is the format of a parent the repository lacks.
const errMissingParent = "commit-graph: parent %x of %x is missing from the repository (shallow or damaged mirror?)"

// resolveParents finds the new positions of the added commits' parents.
func (b *graphBuilder) resolveParents() error {
	b.addedParents = make([][]uint32, len(b.added))
	for k := range b.added {
		ps := make([]uint32, len(b.added[k].parents))
		for x, p := range b.added[k].parents {
			pp, ok := b.posOf(p)
			if !ok {
				return fmt.Errorf(errMissingParent, p, b.added[k].oid)
			}
			ps[x] = pp
		}
		b.addedParents[k] = ps
	}
	return nil
}

// computeGenerations fills the topological levels (generation v1): 1 +
// max over parents, computed iteratively because histories are far deeper
// than a safe recursion. Old commits keep theirs.
func (b *graphBuilder) computeGenerations() {
	b.gen = make([]uint32, b.n)
	for k, p := range b.order {
		if !isAdded(p) {
			// A graph written by git always has levels >= 1; clamp so a
			// zero can never be mistaken for "not computed yet" below.
			b.gen[k] = max(b.old.commitAt(p).generation, 1)
		}
	}
	var stack []uint32
	for k := range b.added {
		if b.gen[b.addedPos[k]] != 0 {
			continue
		}
		stack = append(stack[:0], b.addedPos[k])
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if b.gen[top] != 0 {
				stack = stack[:len(stack)-1]
				continue
			}
			ready := true
			var highest uint32
			for _, p := range b.addedParents[^b.order[top]] {
				if b.gen[p] == 0 {
					ready = false
					stack = append(stack, p)
				} else if b.gen[p] > highest {
					highest = b.gen[p]
				}
			}
			if ready {
				b.gen[top] = min(highest+1, generationV1Max)
				stack = stack[:len(stack)-1]
			}
		}
	}
}

// graphLayout is the content of the chunks of a commit-graph file.
type graphLayout struct {
	fanout [256]uint32
	oidl   []byte   // OID lookup
	cdat   []byte   // commit data
	edges  []uint32 // extra edge list of octopus merges
}

// layout lays out the file's chunks in the merged order.
func (b *graphBuilder) layout() (*graphLayout, error) {
	l := &graphLayout{oidl: make([]byte, int(b.n)*oidSize), cdat: make([]byte, int(b.n)*cdatEntrySize)}
	var pbuf []uint32
	for k, o := range b.order {
		var oid, tree [oidSize]byte
		var t uint64
		var ps []uint32
		if isAdded(o) {
			a := &b.added[^o]
			oid, tree, ps = a.oid, a.tree, b.addedParents[^o]
			if a.time > 0 {
				t = uint64(a.time)
			}
		} else {
			oid = b.old.oidAt(o)
			c := b.old.commitAt(o)
			tree, t = c.tree, c.time
			var err error
			pbuf, err = b.old.parents(o, pbuf[:0])
			if err != nil {
				return nil, err
			}
			for x := range pbuf {
				pbuf[x] = b.oldToNew[pbuf[x]]
			}
			ps = pbuf
		}
		l.put(k, oid, tree, ps, b.gen[k], min(t, commitTimeMaxV1))
	}
	return l, nil
}

// put writes commit k's OID and commit data entry; parents beyond the
// first go to the edge list when there are more than two.
func (l *graphLayout) put(k int, oid, tree [oidSize]byte, ps []uint32, gen uint32, t uint64) {
	copy(l.oidl[k*oidSize:], oid[:])
	l.fanout[oid[0]]++
	d := l.cdat[k*cdatEntrySize:]
	copy(d, tree[:])
	p1, p2 := uint32(parentNone), uint32(parentNone)
	switch len(ps) {
	case 0:
	case 1:
		p1 = ps[0]
	case 2:
		p1, p2 = ps[0], ps[1]
	default:
		p1 = ps[0]
		p2 = parentOctopus | uint32(len(l.edges))
		for x, p := range ps[1:] {
			if x == len(ps)-2 {
				p |= edgeLast
			}
			l.edges = append(l.edges, p)
		}
	}
	binary.BigEndian.PutUint32(d[20:], p1)
	binary.BigEndian.PutUint32(d[24:], p2)
	binary.BigEndian.PutUint32(d[28:], gen<<2|uint32(t>>32))
	binary.BigEndian.PutUint32(d[32:], uint32(t))
}

// graphChunk is one chunk of a commit-graph file.
type graphChunk struct {
	id   uint32
	body []byte
}

// encode writes the file: header, chunk table, chunks and the trailing
// SHA-1 checksum.
func (l *graphLayout) encode() []byte {
	fan := make([]byte, 256*4)
	var cum uint32
	for b := range 256 {
		cum += l.fanout[b]
		binary.BigEndian.PutUint32(fan[b*4:], cum)
	}
	chunks := []graphChunk{{chunkIDFanout, fan}, {chunkIDOIDLookup, l.oidl}, {chunkIDData, l.cdat}}
	if len(l.edges) > 0 {
		e := make([]byte, len(l.edges)*4)
		for x, v := range l.edges {
			binary.BigEndian.PutUint32(e[x*4:], v)
		}
		chunks = append(chunks, graphChunk{chunkIDEdges, e})
	}
	size := graphHeaderSize + (len(chunks)+1)*chunkEntrySize
	for _, c := range chunks {
		size += len(c.body)
	}
	out := make([]byte, 0, size+oidSize)
	out = append(out, graphSignature...)
	out = append(out, 1, 1, byte(len(chunks)), 0)
	off := uint64(graphHeaderSize + (len(chunks)+1)*chunkEntrySize)
	for _, c := range chunks {
		out = binary.BigEndian.AppendUint32(out, c.id)
		out = binary.BigEndian.AppendUint64(out, off)
		off += uint64(len(c.body))
	}
	out = binary.BigEndian.AppendUint32(out, 0)
	out = binary.BigEndian.AppendUint64(out, off)
	for _, c := range chunks {
		out = append(out, c.body...)
	}
	sum := sha1.Sum(out)
	return append(out, sum[:]...)
}

// isAdded tells whether an order entry refers to an added commit (encoded
// as the bitwise complement of its index, so the top bit is set).
func isAdded(o uint32) bool { return o&(1<<31) != 0 }

// writeGraphFile replaces the commit-graph atomically: readers either map
// the old inode or the new one, never a half-written file.
func writeGraphFile(gitDir string, data []byte) error {
	path := filepath.Join(gitDir, graphRelPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "commit-graph.tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
