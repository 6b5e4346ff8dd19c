package m1core

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"io"
	"slices"
)

// File is one file of a release as the Builder records it.
type File struct {
	Path  string // slash-separated, relative to the Magento root
	Hash  Hash
	Lines []uint32 // LineHashes of the content, for HasLines paths
}

// NewFile hashes content for path p.
func NewFile(p string, content []byte) File {
	f := File{Path: p, Hash: sha256.Sum256(content)}
	if HasLines(p) {
		f.Lines = LineHashes(content)
	}
	return f
}

// unknownContent is the hash recorded for a file a release has whose
// content the generator could not read (a blob absent from the mirror):
// no file hashes to all zeros, so it never matches, and Check reports the
// file as unverified instead of added.
var unknownContent Hash

// NewUnknown records that a release has a file at p whose content is not
// known.
func NewUnknown(p string) File { return File{Path: p} }

// symlinkTag prefixes a link target before hashing, so a link never
// equals a file whose content is the same text.
const symlinkTag = "\x00symlink\x00"

// NewSymlink records a symbolic link at p pointing to target (OpenMage
// ships pub/ as links back to the code tree).
func NewSymlink(p, target string) File {
	return File{Path: p, Hash: symlinkHash(target)}
}

func symlinkHash(target string) Hash { return sha256.Sum256([]byte(symlinkTag + target)) }

// Builder accumulates release manifests into an Index.
type Builder struct {
	names  []string
	paths  []string
	pathID map[string]uint32
	hashes []Hash
	hashID map[Hash]uint32
	states []map[uint32]uint32
	lines  map[uint32]bool
}

// NewBuilder starts from ix (nil for an empty index), so versions can be
// added one run at a time.
func NewBuilder(ix *Index) *Builder {
	b := &Builder{pathID: map[string]uint32{}, hashID: map[Hash]uint32{}, lines: map[uint32]bool{}}
	if ix == nil {
		return b
	}
	b.paths, b.hashes, b.names = slices.Clone(ix.paths), slices.Clone(ix.hashes), slices.Clone(ix.names)
	for i, p := range b.paths {
		b.pathID[p] = uint32(i)
	}
	for i, h := range b.hashes {
		b.hashID[h] = uint32(i)
	}
	for _, st := range ix.states {
		m := map[uint32]uint32{}
		for p, h := range st {
			if h >= 0 {
				m[uint32(p)] = uint32(h)
			}
		}
		b.states = append(b.states, m)
	}
	for _, l := range ix.lines {
		b.lines[l] = true
	}
	return b
}

// AddVersion records release name with its files (only InScope paths are
// kept). Adding a name again replaces that release.
func (b *Builder) AddVersion(name string, files []File) error {
	if name == "" {
		return fmt.Errorf("m1core: a release needs a name")
	}
	st := map[uint32]uint32{}
	for _, f := range files {
		if !InScope(f.Path) {
			continue
		}
		p, ok := b.pathID[f.Path]
		if !ok {
			p = uint32(len(b.paths))
			b.paths = append(b.paths, f.Path)
			b.pathID[f.Path] = p
		}
		h, ok := b.hashID[f.Hash]
		if !ok {
			h = uint32(len(b.hashes))
			b.hashes = append(b.hashes, f.Hash)
			b.hashID[f.Hash] = h
		}
		st[p] = h
		for _, l := range f.Lines {
			b.lines[l] = true
		}
	}
	if i := slices.Index(b.names, name); i >= 0 {
		b.states[i] = st
		return nil
	}
	b.names = append(b.names, name)
	b.states = append(b.states, st)
	return nil
}

// Index returns the index built so far.
func (b *Builder) Index() (*Index, error) { return fromWire(b.wire()) }

// Encode writes the index, gzipped, in the format Decode reads.
func (b *Builder) Encode(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(zw).Encode(b.wire()); err != nil {
		return err
	}
	return zw.Close()
}

func (b *Builder) wire() *wireIndex {
	w := &wireIndex{Format: formatVersion, Paths: b.paths}
	for _, h := range b.hashes {
		w.Hashes = append(w.Hashes, h[:]...)
	}
	for i, st := range b.states {
		base, best := -1, len(st)
		for j := range i {
			if d := diffSize(b.states[j], st); d < best {
				base, best = j, d
			}
		}
		w.Versions = append(w.Versions, diffVersion(b.names[i], base, b.states, st))
	}
	lines := make([]uint32, 0, len(b.lines))
	for l := range b.lines {
		lines = append(lines, l)
	}
	slices.Sort(lines)
	w.LineCount = len(lines)
	w.LineK, w.Lines = riceEncode(lines)
	return w
}

func diffSize(base, st map[uint32]uint32) int {
	n := 0
	for p, h := range st {
		if bh, ok := base[p]; !ok || bh != h {
			n++
		}
	}
	for p := range base {
		if _, ok := st[p]; !ok {
			n++
		}
	}
	return n
}

func diffVersion(name string, base int, states []map[uint32]uint32, st map[uint32]uint32) wireVersion {
	wv := wireVersion{Name: name, Base: base}
	var bm map[uint32]uint32
	if base >= 0 {
		bm = states[base]
	}
	var del, set []uint32
	for p := range bm {
		if _, ok := st[p]; !ok {
			del = append(del, p)
		}
	}
	for p, h := range st {
		if bh, ok := bm[p]; !ok || bh != h {
			set = append(set, p)
		}
	}
	slices.Sort(del)
	slices.Sort(set)
	wv.Del, wv.SetPath = delta(del), delta(set)
	for _, p := range set {
		wv.SetHash = append(wv.SetHash, st[p])
	}
	return wv
}
