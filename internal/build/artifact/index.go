package artifact

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// IndexName is the name of the per-file index: the LAST tar member of
// every artifact, alone in the final zstd data frames, so `tar --zstd -xf`
// and Extract leave it in the release directory, where ApplyDelta finds
// the index of a base release. Its sha256 is Result.IndexSHA256 (recorded
// in the release meta), and it is covered by the artifact's own sha256.
const IndexName = ".mageflow-index.json"

// IndexVersion is the Index.Version this package writes and reads.
const IndexVersion = 1

// maxIndexSize bounds the index a host decompresses and parses: ~200
// bytes an entry, a million entries.
const maxIndexSize = 256 << 20

// Entry types in the index.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Index lists every entry of an artifact and where its bytes are. It is
// stored as JSON (see indexWire and Marshal; readable with jq).
type Index struct {
	Version int `json:"version"`
	// MTime is the mtime (Unix seconds) of every entry.
	MTime int64 `json:"mtime"`
	// Frames are the zstd frames holding the tar stream up to (not
	// including) the index member, in order.
	Frames []Frame `json:"frames"`
	// Entries are in tar order; release.json is one of them, the index
	// itself is not.
	Entries []IndexEntry `json:"entries"`
}

// Frame locates one independent zstd frame of the artifact.
type Frame struct {
	// Off and Len are the frame's compressed offset and length in the
	// artifact file: what a range read fetches.
	Off int64 `json:"off"`
	Len int64 `json:"len"`
	// RawOff and RawLen are the offset and length of its decompressed
	// bytes in the tar stream.
	RawOff int64 `json:"raw_off"`
	RawLen int64 `json:"raw_len"`
}

// IndexEntry is one file, directory or symlink of the release.
type IndexEntry struct {
	Path string `json:"path"`
	Type string `json:"type"`
	// Mode holds the permission bits (setuid, setgid and sticky are
	// never installed).
	Mode uint32 `json:"mode"`
	Size int64  `json:"size,omitempty"`
	// SHA256 is the lowercase hex sha256 of a file's content.
	SHA256 string `json:"sha256,omitempty"`
	Link   string `json:"link,omitempty"`
	// A file's content starts FrameOff bytes into the decompressed frame
	// Frame and runs through frame FrameEnd (equal to Frame unless the
	// content spans frames; every frame in between holds it too).
	Frame    int   `json:"frame,omitempty"`
	FrameEnd int   `json:"frame_end,omitempty"`
	FrameOff int64 `json:"frame_off,omitempty"`
}

// Trailer: a zstd skippable frame (ignored by every zstd decoder, `zstd
// -dc` included) ending the artifact and locating the index frames, so a
// host reads the last trailerSize bytes and then only the index.
const (
	trailerMagic   = 0x184D2A5E // skippable frame, user nibble 0xE
	trailerPayload = 24
	trailerSize    = 8 + trailerPayload
	trailerTag     = "MFINDEX1"
)

func appendTrailer(b []byte, off, n int64) []byte {
	b = binary.LittleEndian.AppendUint32(b, trailerMagic)
	b = binary.LittleEndian.AppendUint32(b, trailerPayload)
	b = append(b, trailerTag...)
	b = binary.LittleEndian.AppendUint64(b, uint64(off))
	return binary.LittleEndian.AppendUint64(b, uint64(n))
}

// errNoTrailer: the artifact predates the index (or is not ours).
var errNoTrailer = errors.New("the artifact has no index trailer (built before delta deploys?)")

// parseTrailer returns the compressed offset and length of the index
// frames, which must lie inside an artifact of size bytes.
func parseTrailer(b []byte, size int64) (off, n int64, err error) {
	if len(b) != trailerSize || binary.LittleEndian.Uint32(b) != trailerMagic ||
		binary.LittleEndian.Uint32(b[4:]) != trailerPayload || string(b[8:16]) != trailerTag {
		return 0, 0, errNoTrailer
	}
	uo, un := binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])
	end := uint64(size - trailerSize)
	if uo > end || un > end-uo || un == 0 || un > maxIndexSize {
		return 0, 0, fmt.Errorf("index trailer points at %d+%d, outside the %d-byte artifact", uo, un, size)
	}
	return int64(uo), int64(un), nil
}

// indexWire is the index as stored: one JSON array per field ("columns")
// rather than one object per entry. Values of one kind side by side
// compress far better (the sha256 column is incompressible, the paths
// share long prefixes), and the index is fetched by every host on every
// delta deploy: on a 60,000-file release this halves it.
type indexWire struct {
	Version int      `json:"version"`
	MTime   int64    `json:"mtime"`
	Frames  []Frame  `json:"frames"`
	Paths   []string `json:"paths"`
	// Types has one letter per entry: f(ile), d(irectory), l(ink).
	Types    string   `json:"types"`
	Modes    []uint32 `json:"modes"`
	Sizes    []int64  `json:"sizes"`
	SHA256   []string `json:"sha256"`
	Links    []string `json:"links"`
	Frame    []int    `json:"frame"`
	FrameEnd []int    `json:"frame_end"`
	FrameOff []int64  `json:"frame_off"`
}

var typeLetters = map[string]byte{TypeFile: 'f', TypeDir: 'd', TypeSymlink: 'l'}

// Marshal encodes the index as stored in artifacts.
func (ix *Index) Marshal() ([]byte, error) {
	n := len(ix.Entries)
	w := indexWire{Version: ix.Version, MTime: ix.MTime, Frames: ix.Frames,
		Paths: make([]string, n), Modes: make([]uint32, n), Sizes: make([]int64, n), SHA256: make([]string, n),
		Links: make([]string, n), Frame: make([]int, n), FrameEnd: make([]int, n), FrameOff: make([]int64, n)}
	types := make([]byte, n)
	for i, e := range ix.Entries {
		t, ok := typeLetters[e.Type]
		if !ok {
			return nil, fmt.Errorf("artifact: index entry %s has unknown type %q", e.Path, e.Type)
		}
		types[i] = t
		w.Paths[i], w.Modes[i], w.Sizes[i], w.SHA256[i], w.Links[i] = e.Path, e.Mode, e.Size, e.SHA256, e.Link
		w.Frame[i], w.FrameEnd[i], w.FrameOff[i] = e.Frame, e.FrameEnd, e.FrameOff
	}
	w.Types = string(types)
	return json.Marshal(&w)
}

func decodeIndex(b []byte) (*Index, error) {
	var w indexWire
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil {
		return nil, fmt.Errorf("artifact: parse index: %w", err)
	}
	n := len(w.Paths)
	for _, l := range []int{len(w.Types), len(w.Modes), len(w.Sizes), len(w.SHA256), len(w.Links), len(w.Frame), len(w.FrameEnd), len(w.FrameOff)} {
		if l != n {
			return nil, fmt.Errorf("artifact: parse index: columns of different lengths (%d paths, %d values)", n, l)
		}
	}
	ix := &Index{Version: w.Version, MTime: w.MTime, Frames: w.Frames, Entries: make([]IndexEntry, n)}
	for i := range n {
		t := "?"
		for name, l := range typeLetters {
			if w.Types[i] == l {
				t = name
			}
		}
		ix.Entries[i] = IndexEntry{Path: w.Paths[i], Type: t, Mode: w.Modes[i], Size: w.Sizes[i], SHA256: w.SHA256[i], Link: w.Links[i],
			Frame: w.Frame[i], FrameEnd: w.FrameEnd[i], FrameOff: w.FrameOff[i]}
	}
	return ix, nil
}

// ParseIndex decodes and validates an index: every path canonical and
// local, no duplicates, nothing below a symlink, files with a sha256 and a
// location inside the frame table, frames contiguous. It does not judge
// where symlinks lead; ApplyDelta does, through the links resolver.
func ParseIndex(b []byte) (*Index, error) {
	ix, err := decodeIndex(b)
	if err != nil {
		return nil, err
	}
	if ix.Version != IndexVersion {
		return nil, fmt.Errorf("artifact: index version %d, this mageflow reads %d", ix.Version, IndexVersion)
	}
	var raw int64
	for i, f := range ix.Frames {
		if f.Off < 0 || f.Len <= 0 || f.RawOff != raw || f.RawLen <= 0 || f.RawLen > decoderMaxWindow ||
			(i > 0 && f.Off != ix.Frames[i-1].Off+ix.Frames[i-1].Len) {
			return nil, fmt.Errorf("artifact: index frame %d (%+v) is not contiguous with the previous one", i, f)
		}
		raw += f.RawLen
	}
	seen := make(map[string]string, len(ix.Entries))
	for i := range ix.Entries {
		if err := ix.checkEntry(&ix.Entries[i], seen); err != nil {
			return nil, err
		}
	}
	// Again once all are known: an entry listed later can be the
	// symlink or file an earlier path goes through. The nearest listed
	// ancestor is enough: it must be a directory, and the ones above it
	// are checked as its own ancestors.
	for _, e := range ix.Entries {
		for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
			if t, ok := seen[d]; ok {
				if t != TypeDir {
					return nil, unsafeEntry(e.Path, "index: path goes through the "+t+" "+d)
				}
				break
			}
		}
	}
	return ix, nil
}

// indexCache keeps the last indexes parsed by ApplyDelta, by the sha256
// of their bytes: the index a delta fetches is, on that host's next
// deploy, the base's index, which is then not parsed again (~0.25 s of
// CPU for 60,000 entries). Two of them, ~15 MB each at that size. Callers
// never modify a parsed Index.
var indexCache struct {
	mu   sync.Mutex
	keys [2][32]byte
	ixs  [2]*Index
	next int
}

// parseIndexCached is ParseIndex through indexCache; sum is the sha256
// of b.
func parseIndexCached(b []byte, sum [32]byte) (*Index, error) {
	indexCache.mu.Lock()
	for i, k := range indexCache.keys {
		if k == sum && indexCache.ixs[i] != nil {
			ix := indexCache.ixs[i]
			indexCache.mu.Unlock()
			return ix, nil
		}
	}
	indexCache.mu.Unlock()
	ix, err := ParseIndex(b)
	if err != nil {
		return nil, err
	}
	indexCache.mu.Lock()
	indexCache.keys[indexCache.next], indexCache.ixs[indexCache.next] = sum, ix
	indexCache.next = (indexCache.next + 1) % len(indexCache.keys)
	indexCache.mu.Unlock()
	return ix, nil
}

func (ix *Index) checkEntry(e *IndexEntry, seen map[string]string) error {
	bad := func(why string) error { return unsafeEntry(e.Path, "index: "+why) }
	p := e.Path
	if p == "" || p == IndexName || strings.HasPrefix(p, "/") || !filepath.IsLocal(p) || strings.Contains(p, "\\") ||
		p != path.Clean(p) || strings.ContainsRune(p, 0) {
		return bad("path is absolute, empty, reserved or not canonical")
	}
	if _, dup := seen[p]; dup {
		return bad("duplicate entry")
	}
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if t, ok := seen[d]; ok && t != TypeDir {
			return bad("path goes through the " + t + " " + d)
		}
	}
	seen[p] = e.Type
	if e.Mode&^uint32(fs.ModePerm) != 0 {
		return bad("mode has bits other than permissions")
	}
	switch e.Type {
	case TypeDir:
		return nil
	case TypeSymlink:
		if e.Link == "" || len(e.Link) > maxLinkTarget || strings.ContainsRune(e.Link, 0) {
			return bad("symlink target is empty, too long or not a path")
		}
		return nil
	case TypeFile:
	default:
		return bad("unknown type " + e.Type)
	}
	if h, err := hex.DecodeString(e.SHA256); err != nil || len(h) != 32 || e.SHA256 != strings.ToLower(e.SHA256) {
		return bad("file has no valid sha256")
	}
	if e.Size < 0 {
		return bad("negative size")
	}
	if e.Size == 0 {
		return nil
	}
	if e.Frame < 0 || e.FrameEnd < e.Frame || e.FrameEnd >= len(ix.Frames) || e.FrameOff < 0 || e.FrameOff >= ix.Frames[e.Frame].RawLen {
		return bad("file location is outside the frame table")
	}
	start := ix.Frames[e.Frame].RawOff + e.FrameOff
	last := ix.Frames[e.FrameEnd]
	if end := start + e.Size; end <= last.RawOff || end > last.RawOff+last.RawLen {
		return bad("file content does not end in its last frame")
	}
	return nil
}

// locate fills an entry's frame fields from its tar-stream offset.
func locate(e *IndexEntry, frames []Frame, off int64) {
	e.Frame = frameAt(frames, off)
	e.FrameOff = off - frames[e.Frame].RawOff
	e.FrameEnd = frameAt(frames, off+e.Size-1)
}

func frameAt(frames []Frame, raw int64) int {
	lo, hi := 0, len(frames)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if frames[mid].RawOff <= raw {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}
