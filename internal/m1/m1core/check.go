package m1core

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Status is the outcome of Check.
type Status string

// Check outcomes.
const (
	// StatusClean: every core file equals the identified release or
	// another known release of the same path.
	StatusClean Status = "clean"
	// StatusModified: some core file is modified or added, or missing.
	StatusModified Status = "modified"
	// StatusUnknownVersion: no shipped release matches the tree well
	// enough; nothing is listed and the caller falls back to signatures.
	StatusUnknownVersion Status = "unknown_version"
)

// minMatch is the share of a release's files a tree must equal for the
// release to count as identified.
const minMatch = 0.5

// Options tune Check. The zero value is usable.
type Options struct {
	Index *Index // nil: Shipped()
	// Claimed is the release the caller read from app/Mage.php; "" makes
	// Check read it.
	Claimed string
	// Workers hash in parallel; 0 means GOMAXPROCS.
	Workers int
	// MaxLines caps the foreign lines shown per file (default 10);
	// MaxLineLen caps each (default 160 bytes).
	MaxLines, MaxLineLen int
	// MaxDiffSize is the largest file read for its lines (default 4 MiB).
	MaxDiffSize int64
}

func (o *Options) defaults() {
	if o.MaxLines <= 0 {
		o.MaxLines = 10
	}
	if o.MaxLineLen <= 0 {
		o.MaxLineLen = 160
	}
	if o.MaxDiffSize <= 0 {
		o.MaxDiffSize = 4 << 20
	}
}

// Line is one line of the store's copy that no release has.
type Line struct {
	N    int    `json:"n"` // 1-based
	Text string `json:"text"`
}

// Change is one modified or added core file.
type Change struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Code    bool   `json:"code"`              // IsCode
	Symlink bool   `json:"symlink,omitempty"` // a link no release has there; not followed
	// Foreign are the first lines (up to Options.MaxLines) of the store's
	// copy whose hash no release has; ForeignLines counts them all. Both
	// are empty for files the index keeps no line hashes for (Lines false).
	Lines        bool   `json:"lines"`
	Foreign      []Line `json:"foreign,omitempty"`
	ForeignLines int    `json:"foreign_lines,omitempty"`
	Err          string `json:"error,omitempty"`
}

// Result is what Check found.
type Result struct {
	Status    Status `json:"status"`
	Claimed   string `json:"claimed,omitempty"`    // app/Mage.php (or Options.Claimed)
	Version   string `json:"version,omitempty"`    // release compared against
	BestMatch string `json:"best_match,omitempty"` // release the files match best
	Confirmed bool   `json:"confirmed"`            // Claimed == BestMatch
	// Matched is how many files of Version the tree holds unchanged, of
	// VersionFiles.
	Matched      int `json:"matched"`
	VersionFiles int `json:"version_files"`
	Files        int `json:"files"` // in-scope files seen
	// Modified are files of a release whose content no release has.
	Modified []Change `json:"modified,omitempty"`
	// Known are files that differ from Version but equal the same path of
	// another release (a SUPEE patch, an OpenMage upgrade): not flagged.
	Known []string `json:"known,omitempty"`
	// Unverified are files the release has but whose content the index
	// does not know (a blob absent from every mirror the manifests were
	// built from): present, not compared.
	Unverified []string `json:"unverified,omitempty"`
	// Added are files in Strict areas that no release has; AddedOther
	// counts those elsewhere in scope (extensions' js/ and skin/ files).
	Added      []Change      `json:"added,omitempty"`
	AddedOther int           `json:"added_other"`
	Missing    []string      `json:"missing,omitempty"`
	Elapsed    time.Duration `json:"elapsed_ns"`
}

// Check compares the core files under root with the shipped releases.
func Check(ctx context.Context, root string, o Options) (*Result, error) {
	start := time.Now()
	o.defaults()
	ix := o.Index
	if ix == nil {
		var err error
		if ix, err = Shipped(); err != nil {
			return nil, err
		}
	}
	res := &Result{Claimed: o.Claimed}
	if res.Claimed == "" {
		if src, err := readNoFollow(filepath.Join(root, "app", "Mage.php"), 1<<20); err == nil {
			res.Claimed = MageVersion(src)
		}
	}
	es, err := collect(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("m1core: walking %s: %w", root, err)
	}
	hashAll(ctx, root, es, o.Workers)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Files = len(es)
	v := ix.identify(es, res)
	if v < 0 {
		res.Status = StatusUnknownVersion
	} else {
		ix.classify(root, v, es, res, o)
		res.Status = StatusClean
		if len(res.Modified)+len(res.Added)+len(res.Missing) > 0 {
			res.Status = StatusModified
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// identify scores every release by the files the tree holds unchanged and
// returns the best (the claimed one on a tie), or -1 below minMatch.
func (ix *Index) identify(es []*entry, res *Result) int {
	score := make([]int, len(ix.names))
	for _, e := range es {
		p, okp := ix.pathID[e.path]
		h, okh := ix.hashID[e.hash]
		if !okp || !okh || e.err != nil {
			continue
		}
		for v, st := range ix.states {
			if st[p] == int32(h) {
				score[v]++
			}
		}
	}
	best, bestMetric := -1, 0
	for v := range ix.names {
		// Matches minus what the release has that the tree lacks or changed.
		m := 2*score[v] - ix.size(v)
		if best < 0 || m > bestMetric || (m == bestMetric && ix.names[v] == res.Claimed) {
			best, bestMetric = v, m
		}
	}
	if best < 0 {
		return -1
	}
	res.BestMatch, res.Matched, res.VersionFiles = ix.names[best], score[best], ix.size(best)
	res.Confirmed = res.BestMatch == res.Claimed
	if float64(score[best]) < minMatch*float64(ix.size(best)) {
		return -1
	}
	res.Version = res.BestMatch
	return best
}

func (ix *Index) size(v int) int {
	n := 0
	for _, h := range ix.states[v] {
		if h >= 0 && ix.hashes[h] != unknownContent {
			n++
		}
	}
	return n
}

// classify sorts the tree's files against release v.
func (ix *Index) classify(root string, v int, es []*entry, res *Result, o Options) {
	st := ix.states[v]
	seen := make([]bool, len(st))
	for _, e := range es {
		p, inIndex := ix.pathID[e.path]
		if inIndex {
			seen[p] = true
		}
		h, okh := ix.hashID[e.hash]
		switch {
		case inIndex && st[p] >= 0 && ix.hashes[st[p]] == unknownContent:
			res.Unverified = append(res.Unverified, e.path)
		case e.err == nil && inIndex && okh && st[p] == int32(h):
			// pristine (a link only when the release has the same link)
		case e.err == nil && inIndex && okh && ix.known[uint64(p)<<32|uint64(h)]:
			res.Known = append(res.Known, e.path)
		case inIndex:
			res.Modified = append(res.Modified, ix.change(root, e, o, false))
		case localConfig[e.path]:
			// errors/local.xml and the like: the store's own configuration
		case Strict(e.path):
			res.Added = append(res.Added, ix.change(root, e, o, true))
		default:
			res.AddedOther++
		}
	}
	for p, h := range st {
		if h >= 0 && !seen[p] {
			res.Missing = append(res.Missing, ix.paths[p])
		}
	}
	slices.Sort(res.Missing)
	slices.Sort(res.Known)
	byPath := func(a, b Change) int { return strings.Compare(a.Path, b.Path) }
	slices.SortFunc(res.Modified, byPath)
	slices.SortFunc(res.Added, byPath)
}

// change describes a modified or added file, with its foreign lines. An
// added file has no release to differ from, so any text file gets its
// lines shown (a .user.ini's auto_prepend_file), not only HasLines ones.
func (ix *Index) change(root string, e *entry, o Options, added bool) Change {
	c := Change{Path: e.path, Size: e.size, Code: IsCode(e.path), Symlink: e.symlink, Lines: added || HasLines(e.path)}
	if e.err != nil {
		c.Err = e.err.Error()
	}
	if e.symlink || e.err != nil || !c.Lines || e.size > o.MaxDiffSize {
		c.Lines = false
		return c
	}
	src, err := readNoFollow(filepath.Join(root, filepath.FromSlash(e.path)), o.MaxDiffSize)
	if err != nil {
		c.Lines, c.Err = false, err.Error()
		return c
	}
	if added && strings.IndexByte(string(src), 0) >= 0 {
		c.Lines = false // binary: no lines to show
		return c
	}
	n := 0
	for line := range strings.Lines(string(src)) {
		n++
		h, ok := lineHash([]byte(line))
		if !ok {
			continue
		}
		if _, found := slices.BinarySearch(ix.lines, h); found {
			continue
		}
		c.ForeignLines++
		if len(c.Foreign) < o.MaxLines {
			c.Foreign = append(c.Foreign, Line{N: n, Text: printable(line, o.MaxLineLen)})
		}
	}
	return c
}

// printable trims a line, caps it at max bytes and escapes what is not
// printable ASCII, so it is safe in a terminal, JSON or Markdown.
func printable(s string, max int) string {
	s = strings.TrimSpace(s)
	cut := len(s) > max
	if cut {
		s = s[:max]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\t':
			b.WriteByte(' ')
		case c < 0x20 || c >= 0x7f || c == '`':
			b.WriteString(`\x` + strconv.FormatUint(uint64(c)|0x100, 16)[1:])
		default:
			b.WriteByte(c)
		}
	}
	if cut {
		b.WriteString("…")
	}
	return b.String()
}

// Summary is a one-line account of r for a report.
func (r *Result) Summary() string {
	if r.Status == StatusUnknownVersion {
		return fmt.Sprintf("release not identified (app/Mage.php says %q; best match %q holds %d of %d files unchanged): core integrity not checked, rely on the signature scan",
			r.Claimed, r.BestMatch, r.Matched, r.VersionFiles)
	}
	conf := "confirmed by its files"
	if !r.Confirmed {
		conf = fmt.Sprintf("app/Mage.php says %q", r.Claimed)
	}
	return fmt.Sprintf("release %s (%s; %d of %d files unchanged); %d core files: %d modified, %d added in core areas (%d elsewhere, extensions), %d missing, %d from another known release (patches), %d not verifiable (content unknown to the manifests) — %s",
		r.Version, conf, r.Matched, r.VersionFiles, r.Files, len(r.Modified), len(r.Added), r.AddedOther, len(r.Missing), len(r.Known), len(r.Unverified), r.Elapsed.Round(time.Millisecond))
}
