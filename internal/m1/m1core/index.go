package m1core

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/gob"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"sync"
)

// Hash is the SHA-256 of a file's content.
type Hash [sha256.Size]byte

// formatVersion is bumped when the serialized layout changes.
const formatVersion = 1

// wireIndex is the serialized form (gob, gzipped). Sorted lists are stored
// as deltas so that gob's varints and gzip keep them small.
type wireIndex struct {
	Format   int
	Paths    []string
	Hashes   []byte // len(Hashes)/32 content hashes
	Versions []wireVersion
	// Lines is the Rice-coded (parameter LineK) sorted set of LineCount
	// line hashes of every HasLines file of every release.
	LineK     uint8
	LineCount int
	Lines     []byte
}

type wireVersion struct {
	Name string
	Base int // index of the version this one is a diff from; -1 for none
	// Del are path indexes (delta-encoded) the base has and this one lacks.
	Del []uint32
	// SetPath (delta-encoded) and SetHash are paths added or changed.
	SetPath []uint32
	SetHash []uint32
}

// Index is a set of release manifests. The zero value is empty; Builder
// fills one and Load reads the shipped one. An Index is read-only once
// built and safe for concurrent use.
type Index struct {
	names  []string
	paths  []string
	pathID map[string]uint32
	hashes []Hash
	hashID map[Hash]uint32
	// states[v][p] is the hash index of path p in version v, or -1.
	states [][]int32
	lines  []uint32        // sorted line hashes of every release
	known  map[uint64]bool // pathID<<32|hashID in any release
}

//go:embed data/manifests.gz
var shipped []byte

var (
	loadOnce  sync.Once
	loadIndex *Index
	loadErr   error
)

// Shipped returns the embedded index, decoded once.
func Shipped() (*Index, error) {
	loadOnce.Do(func() { loadIndex, loadErr = Decode(bytes.NewReader(shipped)) })
	return loadIndex, loadErr
}

// ShippedSize is the size of the embedded, compressed index in bytes.
func ShippedSize() int { return len(shipped) }

// ErrFormat is returned for an index of another format version.
var ErrFormat = errors.New("m1core: manifest index of an unknown format; rebuild it with test/m1manifest")

// Decode reads a gzipped index written by Encode.
func Decode(r io.Reader) (*Index, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("m1core: manifest index: %w", err)
	}
	var w wireIndex
	if err := gob.NewDecoder(zr).Decode(&w); err != nil {
		return nil, fmt.Errorf("m1core: manifest index: %w", err)
	}
	if w.Format != formatVersion {
		return nil, ErrFormat
	}
	return fromWire(&w)
}

func fromWire(w *wireIndex) (*Index, error) {
	if len(w.Hashes)%sha256.Size != 0 {
		return nil, fmt.Errorf("m1core: manifest index is truncated")
	}
	ix := &Index{paths: w.Paths, pathID: make(map[string]uint32, len(w.Paths)), hashID: map[Hash]uint32{},
		known: map[uint64]bool{}}
	for i, p := range w.Paths {
		ix.pathID[p] = uint32(i)
	}
	for i := 0; i < len(w.Hashes); i += sha256.Size {
		var h Hash
		copy(h[:], w.Hashes[i:])
		ix.hashID[h] = uint32(len(ix.hashes))
		ix.hashes = append(ix.hashes, h)
	}
	for i, wv := range w.Versions {
		st, err := ix.applyVersion(i, wv)
		if err != nil {
			return nil, err
		}
		ix.names = append(ix.names, wv.Name)
		ix.states = append(ix.states, st)
	}
	lines, err := riceDecode(w.LineK, w.LineCount, w.Lines)
	if err != nil {
		return nil, err
	}
	ix.lines = lines
	return ix, nil
}

func (ix *Index) applyVersion(i int, wv wireVersion) ([]int32, error) {
	var st []int32
	switch {
	case wv.Base < 0:
		st = make([]int32, len(ix.paths))
		for j := range st {
			st[j] = -1
		}
	case wv.Base < i:
		st = slices.Clone(ix.states[wv.Base])
	default:
		return nil, fmt.Errorf("m1core: version %s has a base that follows it", wv.Name)
	}
	for _, p := range undelta(wv.Del) {
		if int(p) >= len(st) {
			return nil, fmt.Errorf("m1core: version %s: path out of range", wv.Name)
		}
		st[p] = -1
	}
	sp := undelta(wv.SetPath)
	if len(sp) != len(wv.SetHash) {
		return nil, fmt.Errorf("m1core: version %s is truncated", wv.Name)
	}
	for j, p := range sp {
		if int(p) >= len(st) || int(wv.SetHash[j]) >= len(ix.hashes) {
			return nil, fmt.Errorf("m1core: version %s: entry out of range", wv.Name)
		}
		st[p] = int32(wv.SetHash[j])
		ix.known[uint64(p)<<32|uint64(wv.SetHash[j])] = true
	}
	return st, nil
}

func delta(s []uint32) []uint32 {
	out := make([]uint32, len(s))
	var prev uint32
	for i, v := range s {
		out[i], prev = v-prev, v
	}
	return out
}

func undelta(s []uint32) []uint32 {
	out := make([]uint32, len(s))
	var acc uint32
	for i, v := range s {
		acc += v
		out[i] = acc
	}
	return out
}

// Versions lists the releases in the index, in the order they were added.
func (ix *Index) Versions() []string { return slices.Clone(ix.names) }

// Has reports whether the index holds a manifest for version v.
func (ix *Index) Has(v string) bool { return slices.Contains(ix.names, v) }

// Files returns the manifest of version v: path -> SHA-256, or nil when the
// index has no such version.
func (ix *Index) Files(v string) map[string]Hash {
	i := slices.Index(ix.names, v)
	if i < 0 {
		return nil
	}
	m := map[string]Hash{}
	for p, h := range ix.states[i] {
		if h >= 0 {
			m[ix.paths[p]] = ix.hashes[h]
		}
	}
	return m
}

// Stats are sizes of an index.
type Stats struct {
	Versions, Paths, Hashes, LineHashes int
}

// Stats counts what the index holds.
func (ix *Index) Stats() Stats {
	return Stats{Versions: len(ix.names), Paths: len(ix.paths), Hashes: len(ix.hashes), LineHashes: len(ix.lines)}
}

// lineHash is the 32-bit FNV-1a of a line without surrounding blanks; empty
// lines have no hash (ok false).
func lineHash(line []byte) (uint32, bool) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return 0, false
	}
	h := fnv.New32a()
	h.Write(line)
	return h.Sum32(), true
}

// LineHashes returns the sorted, distinct line hashes of content.
func LineHashes(content []byte) []uint32 {
	var out []uint32
	for line := range bytes.Lines(content) {
		if h, ok := lineHash(line); ok {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
