package gitmeta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// countsFile persists recent build numbers with their reachability sets, so
// that a new process counting a descendant of an already-built commit only
// walks the commits pushed since. It lives inside the bare mirror, where git
// ignores unknown files.
const countsFile = "mageflow-buildnumbers"

// maxCountEntries bounds memory and the file size: each entry is one bit per
// commit in the graph. Builds mostly count a descendant of the previous
// build on the same branch, so a few entries cover several branches.
const maxCountEntries = 4

// countEntry is "commit at pos has count ancestors, which are exactly the set
// bits of reach". reach is indexed by graph position of the graph whose
// checksum the owning countState holds.
type countEntry struct {
	oid   [oidSize]byte
	count int
	reach []uint64
}

// countState is the per-mirror, per-process view of the commit-graph and of
// recent counts. mu serialises counting: counts are quick and sharing the
// entries is what makes them quick.
type countState struct {
	mu       sync.Mutex
	g        *graph
	ident    fileIdent
	entries  []countEntry // most recent first
	loadedOK bool         // entries were loaded (or found absent) for g
}

// fileIdent detects that another process replaced the graph file.
type fileIdent struct {
	ino, size, mtime int64
}

func identOf(path string) (fileIdent, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileIdent{}, false
	}
	return fileIdent{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano()}, true
}

// refresh (re)loads the graph when the file changed since last time. Caller
// holds cs.mu.
func (cs *countState) refresh(gitDir string) error {
	id, ok := identOf(filepath.Join(gitDir, graphRelPath))
	if !ok {
		cs.g, cs.ident, cs.entries, cs.loadedOK = nil, fileIdent{}, nil, false
		return nil
	}
	if cs.g != nil && id == cs.ident {
		return nil
	}
	g, err := loadGraph(gitDir)
	if err != nil {
		return err
	}
	cs.g, cs.ident, cs.entries, cs.loadedOK = g, id, nil, false
	if g != nil {
		cs.entries = readCounts(gitDir, g)
		cs.loadedOK = true
	}
	return nil
}

// BuildNumber returns the number of commits reachable from hash, merges
// included: exactly `git rev-list --count <hash>`. It needs the full 40-hex
// commit id (use Resolve for anything else).
func (r *Repo) BuildNumber(ctx context.Context, hash string) (int, error) {
	if !plumbing.IsHash(hash) {
		return 0, fmt.Errorf("build number needs a full 40-hex commit id, got %q (use Resolve first)", hash)
	}
	oid := [oidSize]byte(plumbing.NewHash(hash))
	// Lock order everywhere: gitMu, then counts.mu.
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	cs := &r.st.counts
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if err := cs.refresh(r.dir); err != nil {
		return 0, fmt.Errorf("%w; run Sync to rebuild it", err)
	}
	if pos, ok := cs.g.lookup(oid); ok {
		n, err := cs.countInGraph(ctx, r.dir, oid, pos)
		if err != nil {
			return 0, fmt.Errorf("count commits of %s: %w", hash, err)
		}
		return n, nil
	}
	n, err := r.countOutsideGraph(ctx, cs.g, plumbing.Hash(oid))
	if err != nil {
		return 0, fmt.Errorf("count commits of %s: %w", hash, err)
	}
	return n, nil
}

// countInGraph counts the ancestors of pos. When a recent entry A has a lower
// generation than pos it may be an ancestor: the walk from pos then stops at
// A's reachability set, and if it meets A itself, count = A.count + commits
// found outside the set. If it does not meet A, the same walk simply carries
// on through the set, so the guess never costs more than a full walk.
func (cs *countState) countInGraph(ctx context.Context, gitDir string, oid [oidSize]byte, pos uint32) (int, error) {
	g := cs.g
	for i, e := range cs.entries {
		if e.oid == oid {
			cs.promote(i)
			return e.count, nil
		}
	}
	words := (int(g.n) + 63) / 64
	visited := make([]uint64, words)
	gen := g.commitAt(pos).generation
	var base *countEntry
	var basePos uint32
	for i := range cs.entries {
		if p, ok := g.lookup(cs.entries[i].oid); ok && g.commitAt(p).generation < gen {
			base, basePos = &cs.entries[i], p
			break
		}
	}
	w := walker{g: g, visited: visited, ctx: ctx}
	var count int
	if base != nil {
		w.stop = base.reach
		w.target, w.hasTarget = basePos, true
	}
	n, err := w.walk([]uint32{pos})
	if err != nil {
		return 0, err
	}
	if base != nil && w.reached {
		count = base.count + n
		for i := range visited {
			visited[i] |= base.reach[i]
		}
	} else {
		// No usable ancestor: continue from the commits where the walk
		// was stopped, now without a stop set.
		w.stop, w.hasTarget = nil, false
		m, err := w.walk(w.boundary)
		if err != nil {
			return 0, err
		}
		count = n + m
	}
	cs.entries = append([]countEntry{{oid: oid, count: count, reach: visited}}, cs.entries...)
	if len(cs.entries) > maxCountEntries {
		cs.entries = cs.entries[:maxCountEntries]
	}
	// Persisting is an optimisation for the next process; failing to (a
	// read-only cache, a full disk) must not fail the build.
	_ = writeCounts(gitDir, g, cs.entries)
	return count, nil
}

func (cs *countState) promote(i int) {
	e := cs.entries[i]
	copy(cs.entries[1:i+1], cs.entries[:i])
	cs.entries[0] = e
}

// walker is a depth-first traversal over graph positions with a bitset.
// Commits in stop are not entered but remembered in boundary.
type walker struct {
	ctx       context.Context
	g         *graph
	visited   []uint64
	stop      []uint64
	target    uint32
	hasTarget bool
	reached   bool
	boundary  []uint32
}

func (w *walker) walk(starts []uint32) (int, error) {
	stack := make([]uint32, 0, 1024)
	var count, steps int
	var pbuf []uint32
	push := func(p uint32) {
		word, bit := p/64, uint64(1)<<(p%64)
		if w.visited[word]&bit != 0 {
			return
		}
		if w.stop != nil && w.stop[word]&bit != 0 {
			if w.hasTarget && p == w.target {
				w.reached = true
			}
			w.boundary = append(w.boundary, p)
			return
		}
		w.visited[word] |= bit
		count++
		stack = append(stack, p)
	}
	for _, s := range starts {
		push(s)
	}
	var err error
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		pbuf, err = w.g.parents(p, pbuf[:0])
		if err != nil {
			return 0, err
		}
		for _, q := range pbuf {
			push(q)
		}
		if steps++; steps&0xffff == 0 && w.ctx.Err() != nil {
			return 0, w.ctx.Err()
		}
	}
	return count, nil
}

// countOutsideGraph handles commits the graph does not know yet (fetched by
// someone else since the last graph update): it decodes objects until it
// reaches graph commits, then continues over the graph.
func (r *Repo) countOutsideGraph(ctx context.Context, g *graph, start plumbing.Hash) (int, error) {
	seen := map[plumbing.Hash]bool{start: true}
	stack := []plumbing.Hash{start}
	var starts []uint32
	count := 0
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if pos, ok := g.lookup([oidSize]byte(h)); ok {
			starts = append(starts, pos)
			continue
		}
		c, err := r.git.CommitObject(h)
		if err != nil {
			if errors.Is(err, plumbing.ErrObjectNotFound) && h == start {
				return 0, fmt.Errorf("%w: commit %s is not in the mirror; Sync it first", ErrUnknownRef, h)
			}
			return 0, fmt.Errorf("read commit %s: %w", h, err)
		}
		count++
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				stack = append(stack, p)
			}
		}
	}
	if len(starts) == 0 {
		return count, nil
	}
	w := walker{g: g, visited: make([]uint64, (int(g.n)+63)/64), ctx: ctx}
	n, err := w.walk(starts)
	return count + n, err
}

// Counts file layout (little endian): magic, graph checksum, commit count,
// entry count, then per entry: oid, count (uint32), ceil(n/64) uint64 words.
const countsMagic = "MFBN\x00\x00\x00\x01"

func countsWords(g *graph) int { return (int(g.n) + 63) / 64 }

func readCounts(gitDir string, g *graph) []countEntry {
	data, err := os.ReadFile(filepath.Join(gitDir, countsFile))
	if err != nil || len(data) < len(countsMagic)+oidSize+8 || string(data[:8]) != countsMagic {
		return nil
	}
	if !bytes.Equal(data[8:8+oidSize], g.checksum[:]) || binary.LittleEndian.Uint32(data[28:]) != g.n {
		return nil // written for another graph: stale
	}
	k := int(binary.LittleEndian.Uint32(data[32:]))
	words := countsWords(g)
	rec := oidSize + 4 + words*8
	body := data[36:]
	if k > maxCountEntries || len(body) != k*rec {
		return nil
	}
	entries := make([]countEntry, k)
	for i := range entries {
		b := body[i*rec:]
		e := &entries[i]
		copy(e.oid[:], b)
		e.count = int(binary.LittleEndian.Uint32(b[oidSize:]))
		e.reach = make([]uint64, words)
		for w := range e.reach {
			e.reach[w] = binary.LittleEndian.Uint64(b[oidSize+4+w*8:])
		}
	}
	return entries
}

func writeCounts(gitDir string, g *graph, entries []countEntry) error {
	words := countsWords(g)
	out := make([]byte, 0, 36+len(entries)*(oidSize+4+words*8))
	out = append(out, countsMagic...)
	out = append(out, g.checksum[:]...)
	out = binary.LittleEndian.AppendUint32(out, g.n)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(entries)))
	for _, e := range entries {
		out = append(out, e.oid[:]...)
		out = binary.LittleEndian.AppendUint32(out, uint32(e.count))
		for _, w := range e.reach {
			out = binary.LittleEndian.AppendUint64(out, w)
		}
	}
	return writeFileAtomic(filepath.Join(gitDir, countsFile), out)
}

// remapCounts carries persisted counts over to a rebuilt graph: positions
// change when commits are inserted, but the sets themselves do not.
func remapCounts(gitDir string, old, updated *graph, oldToNew []uint32) error {
	entries := readCounts(gitDir, old)
	if len(entries) == 0 {
		return nil
	}
	words := countsWords(updated)
	for i := range entries {
		reach := make([]uint64, words)
		for w, v := range entries[i].reach {
			for v != 0 {
				b := bits.TrailingZeros64(v)
				v &= v - 1
				np := oldToNew[w*64+b]
				reach[np/64] |= 1 << (np % 64)
			}
		}
		entries[i].reach = reach
	}
	return writeCounts(gitDir, updated, entries)
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// commitObject decodes a commit for graph building.
func decodeForGraph(c *object.Commit) newCommit {
	nc := newCommit{oid: [oidSize]byte(c.Hash), tree: [oidSize]byte(c.TreeHash), time: c.Committer.When.Unix()}
	for _, p := range c.ParentHashes {
		nc.parents = append(nc.parents, [oidSize]byte(p))
	}
	return nc
}
