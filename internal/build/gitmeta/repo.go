package gitmeta

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

var (
	// ErrUnknownRef means no branch, tag or commit matches the ref.
	ErrUnknownRef = errors.New("unknown ref")
	// ErrAmbiguousRef means a short commit id matches several commits.
	ErrAmbiguousRef = errors.New("ambiguous ref")
)

// Commit is the release meta of one commit.
type Commit struct {
	Hash  string
	Short string
	// Branch is the branch asked for, or for a tag or commit id a branch
	// whose head is that commit ("" when none is).
	Branch string
	// Tag is the tag asked for, or a tag pointing at the commit ("" when
	// none does).
	Tag         string
	Message     string
	AuthorName  string
	AuthorEmail string
	// When is the committer time: the moment the commit entered history,
	// which is what "committed at" means to an operator.
	When        time.Time
	BuildNumber int
}

// Repo is one bare mirror. Its methods are safe for concurrent use.
type Repo struct {
	dir string
	url string
	st  *repoState

	gitMu sync.Mutex // go-git's object storage is not safe for concurrent use
	git   *git.Repository
}

func openRepo(dir, url string, st *repoState) (*Repo, error) {
	g, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{})
	if err != nil {
		return nil, fmt.Errorf("open mirror %s: %w (delete the directory to re-clone)", dir, err)
	}
	return &Repo{dir: dir, url: url, st: st, git: g}, nil
}

// OpenDir opens a bare repository by path, outside any Cache (tools and
// benchmarks use it on an existing mirror).
func OpenDir(dir string) (*Repo, error) { return openRepo(dir, dir, &repoState{}) }

// URL is the repository URL the mirror was opened for.
func (r *Repo) URL() string { return r.url }

// Dir is the mirror's git directory.
func (r *Repo) Dir() string { return r.dir }

// tips returns the commit every branch and tag points at, peeling
// annotated tags and ignoring tags of trees or blobs.
func (r *Repo) tips() ([]plumbing.Hash, error) {
	refs, err := r.git.References()
	if err != nil {
		return nil, err
	}
	var out []plumbing.Hash
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference || !(ref.Name().IsBranch() || ref.Name().IsTag()) {
			return nil
		}
		h, ok, err := r.peel(ref.Hash())
		if err != nil {
			return err
		}
		if ok {
			out = append(out, h)
		}
		return nil
	})
	return out, err
}

// peel follows annotated tags to the commit they name.
func (r *Repo) peel(h plumbing.Hash) (plumbing.Hash, bool, error) {
	for range 16 {
		obj, err := r.git.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return h, false, fmt.Errorf("read object %s: %w", h, err)
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			return h, true, nil
		case plumbing.TagObject:
			t, err := object.DecodeTag(r.git.Storer, obj)
			if err != nil {
				return h, false, err
			}
			h = t.Target
		default:
			return h, false, nil
		}
	}
	return h, false, fmt.Errorf("tag chain at %s is too deep", h)
}

// UpdateGraph adds the commits reachable from branches and tags that the
// commit-graph lacks, decoding only those, and rewrites the graph file. It
// returns how many commits were added. Sync calls it; call it yourself only
// after changing the mirror by other means.
func (r *Repo) UpdateGraph(ctx context.Context) (int, error) {
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	cs := &r.st.counts
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if err := cs.refresh(r.dir); err != nil {
		if !errors.Is(err, errCorruptGraph) {
			return 0, err
		}
		cs.g = nil // rebuild from objects below
	}
	old := cs.g
	tips, err := r.tips()
	if err != nil {
		return 0, fmt.Errorf("list refs of %s: %w", r.dir, err)
	}
	added, err := r.newCommits(ctx, old, tips)
	if err != nil {
		return 0, err
	}
	if len(added) == 0 {
		return 0, nil
	}
	data, oldToNew, err := buildGraph(old, added)
	if err != nil {
		return 0, err
	}
	if err := writeGraphFile(r.dir, data); err != nil {
		return 0, fmt.Errorf("write commit-graph of %s: %w", r.dir, err)
	}
	updated, err := parseGraph(data)
	if err != nil {
		return 0, err
	}
	if old != nil {
		// Best effort: without it the next count is a full (fast) walk.
		_ = remapCounts(r.dir, old, updated, oldToNew)
	}
	cs.g = nil // force a reload (and mmap) of the new file
	if err := cs.refresh(r.dir); err != nil {
		return 0, err
	}
	return len(added), nil
}

// newCommits decodes the commits reachable from tips that g lacks.
func (r *Repo) newCommits(ctx context.Context, g *graph, tips []plumbing.Hash) ([]newCommit, error) {
	if g == nil {
		return r.allCommits(ctx)
	}
	seen := map[plumbing.Hash]bool{}
	var stack []plumbing.Hash
	for _, t := range tips {
		if _, ok := g.lookup([oidSize]byte(t)); !ok && !seen[t] {
			seen[t] = true
			stack = append(stack, t)
		}
	}
	var out []newCommit
	for len(stack) > 0 {
		if len(out)&0x3ff == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		c, err := r.git.CommitObject(h)
		if err != nil {
			return nil, fmt.Errorf("read commit %s for the commit-graph: %w", h, err)
		}
		out = append(out, decodeForGraph(c))
		for _, p := range c.ParentHashes {
			if _, ok := g.lookup([oidSize]byte(p)); !ok && !seen[p] {
				seen[p] = true
				stack = append(stack, p)
			}
		}
	}
	return out, nil
}

// allCommits decodes every commit object of the repository. For a first
// graph this beats walking from the tips: reading packfiles in order avoids
// one index lookup and seek per commit. Unreachable commits it may include
// are harmless in a commit-graph.
func (r *Repo) allCommits(ctx context.Context) ([]newCommit, error) {
	iter, err := r.git.CommitObjects()
	if err != nil {
		return nil, err
	}
	defer iter.Close()
	var out []newCommit
	err = iter.ForEach(func(c *object.Commit) error {
		if len(out)&0x3ff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		out = append(out, decodeForGraph(c))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read commits for the commit-graph: %w", err)
	}
	return out, nil
}

// Resolve turns a branch name, tag name, full ref ("refs/...") or full or
// abbreviated (at least 7 hex digits) commit id into release meta. Branches
// win over tags of the same name because builds are triggered by pushes to
// branches.
func (r *Repo) Resolve(ctx context.Context, ref string) (Commit, error) {
	unlock, err := lockFileShared(ctx, r.dir+".lock")
	if err != nil {
		return Commit{}, err
	}
	defer unlock()
	hash, branch, tag, err := r.resolveRef(strings.TrimSpace(ref))
	if err != nil {
		return Commit{}, err
	}
	r.gitMu.Lock()
	c, err := r.git.CommitObject(hash)
	if err == nil {
		if branch == "" {
			branch, err = r.nameAt(hash, plumbing.ReferenceName.IsBranch, plumbing.ReferenceName.Short)
		}
		if err == nil && tag == "" {
			tag, err = r.nameAt(hash, plumbing.ReferenceName.IsTag, plumbing.ReferenceName.Short)
		}
	}
	r.gitMu.Unlock()
	if err != nil {
		return Commit{}, fmt.Errorf("read commit %s: %w", hash, err)
	}
	n, err := r.BuildNumber(ctx, hash.String())
	if err != nil {
		return Commit{}, err
	}
	return Commit{
		Hash:        hash.String(),
		Short:       r.short(hash),
		Branch:      branch,
		Tag:         tag,
		Message:     c.Message,
		AuthorName:  c.Author.Name,
		AuthorEmail: c.Author.Email,
		When:        c.Committer.When,
		BuildNumber: n,
	}, nil
}

func (r *Repo) resolveRef(ref string) (hash plumbing.Hash, branch, tag string, err error) {
	if ref == "" {
		return hash, "", "", fmt.Errorf("%w: empty ref", ErrUnknownRef)
	}
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	var names []plumbing.ReferenceName
	if strings.HasPrefix(ref, "refs/") {
		names = []plumbing.ReferenceName{plumbing.ReferenceName(ref)}
	} else {
		names = []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref)}
	}
	for _, name := range names {
		rf, err := r.git.Reference(name, true)
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			continue
		}
		if err != nil {
			return hash, "", "", fmt.Errorf("read %s: %w", name, err)
		}
		h, ok, err := r.peel(rf.Hash())
		if err != nil {
			return hash, "", "", err
		}
		if !ok {
			return hash, "", "", fmt.Errorf("%w: %s does not point at a commit", ErrUnknownRef, name)
		}
		if name.IsBranch() {
			branch = name.Short()
		} else if name.IsTag() {
			tag = name.Short()
		}
		return h, branch, tag, nil
	}
	h, err := r.resolvePrefix(ref)
	return h, "", "", err
}

// resolvePrefix finds the commit whose id starts with ref. The commit-graph
// holds every commit reachable from a branch or tag, so its sorted id list
// answers prefix queries with two binary searches.
func (r *Repo) resolvePrefix(ref string) (plumbing.Hash, error) {
	lower := strings.ToLower(ref)
	if len(lower) < 7 || len(lower) > 40 || strings.Trim(lower, "0123456789abcdef") != "" {
		return plumbing.ZeroHash, fmt.Errorf("%w: %q is not a branch, tag or commit id (ids need at least 7 hex digits)", ErrUnknownRef, ref)
	}
	if len(lower) == 40 {
		h := plumbing.NewHash(lower)
		if _, err := r.git.CommitObject(h); err != nil {
			return h, fmt.Errorf("%w: commit %s is not in the mirror (Sync first, or was it never pushed?)", ErrUnknownRef, lower)
		}
		return h, nil
	}
	cs := &r.st.counts
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if err := cs.refresh(r.dir); err != nil {
		return plumbing.ZeroHash, err
	}
	var matches []plumbing.Hash
	even := lower[:len(lower)&^1]
	prefix, _ := hex.DecodeString(even)
	lo, hi := cs.g.prefixRange(prefix)
	for p := lo; p < hi && len(matches) < 2; p++ {
		oid := cs.g.oidAt(p)
		if strings.HasPrefix(hex.EncodeToString(oid[:]), lower) {
			matches = append(matches, plumbing.Hash(oid))
		}
	}
	if cs.g == nil {
		// No graph yet (Open on a mirror Sync never finished): fall back to
		// scanning every commit object.
		iter, err := r.git.CommitObjects()
		if err != nil {
			return plumbing.ZeroHash, err
		}
		_ = iter.ForEach(func(c *object.Commit) error {
			if strings.HasPrefix(c.Hash.String(), lower) {
				matches = append(matches, c.Hash)
			}
			return nil
		})
	}
	switch len(matches) {
	case 0:
		return plumbing.ZeroHash, fmt.Errorf("%w: no branch, tag or commit matches %q", ErrUnknownRef, ref)
	case 1:
		return matches[0], nil
	}
	return plumbing.ZeroHash, fmt.Errorf("%w: %q matches several commits; give more digits", ErrAmbiguousRef, ref)
}

// short abbreviates to 7 digits like git, lengthening while the graph holds
// another commit with the same prefix.
func (r *Repo) short(h plumbing.Hash) string {
	cs := &r.st.counts
	cs.mu.Lock()
	defer cs.mu.Unlock()
	full := h.String()
	g := cs.g
	pos, ok := g.lookup([oidSize]byte(h))
	if !ok {
		return full[:7]
	}
	common := 0
	for _, nb := range []int64{int64(pos) - 1, int64(pos) + 1} {
		if nb < 0 || nb >= int64(g.n) {
			continue
		}
		o := g.oidAt(uint32(nb))
		s := hex.EncodeToString(o[:])
		i := 0
		for i < 40 && s[i] == full[i] {
			i++
		}
		common = max(common, i)
	}
	return full[:max(7, common+1)]
}

// nameAt returns the preferred reference name (main/master first, then
// alphabetical) among those of the given kind that point at h.
func (r *Repo) nameAt(h plumbing.Hash, kind func(plumbing.ReferenceName) bool, short func(plumbing.ReferenceName) string) (string, error) {
	refs, err := r.git.References()
	if err != nil {
		return "", err
	}
	var names []string
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference || !kind(ref.Name()) {
			return nil
		}
		t, ok, err := r.peel(ref.Hash())
		if err == nil && ok && t == h {
			names = append(names, short(ref.Name()))
		}
		return err
	})
	if err != nil || len(names) == 0 {
		return "", err
	}
	rank := func(s string) int {
		switch s {
		case "main":
			return 0
		case "master":
			return 1
		}
		return 2
	}
	sort.Slice(names, func(i, j int) bool {
		if a, b := rank(names[i]), rank(names[j]); a != b {
			return a < b
		}
		return names[i] < names[j]
	})
	return names[0], nil
}
