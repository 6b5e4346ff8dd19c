package gitmeta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/testkit/fakerepo"
)

// gitEnv pins identity and dates so that test repositories do not depend on
// the machine's git configuration.
var gitEnv = []string{
	"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
	"GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.com",
	"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.com",
}

// gitRun runs git in dir and returns trimmed stdout; the test fails with
// git's stderr on error (and says how to get git if it is missing).
func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	if err := fakerepo.CheckGit(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), gitEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// commitAt makes a commit with a fixed date so hashes are reproducible.
func commitAt(t *testing.T, dir string, n int, msg string, extra ...string) string {
	t.Helper()
	date := fmt.Sprintf("%d +0000", 1_700_000_000+n*60)
	t.Setenv("GIT_AUTHOR_DATE", date)
	t.Setenv("GIT_COMMITTER_DATE", date)
	args := append([]string{"commit", "-q", "--allow-empty", "-m", msg}, extra...)
	gitRun(t, dir, args...)
	return gitRun(t, dir, "rev-parse", "HEAD")
}

// smallRepo builds, with the git CLI, a history with a feature branch, a
// criss-cross merge, an octopus merge, annotated and lightweight tags.
func smallRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "work")
	gitRun(t, "", "init", "-q", "-b", "main", dir)
	n := 0
	c := func(msg string) string { n++; return commitAt(t, dir, n, msg) }
	merge := func(msg string, branches ...string) {
		n++
		date := fmt.Sprintf("%d +0000", 1_700_000_000+n*60)
		t.Setenv("GIT_AUTHOR_DATE", date)
		t.Setenv("GIT_COMMITTER_DATE", date)
		gitRun(t, dir, append([]string{"merge", "-q", "--no-ff", "-m", msg}, branches...)...)
	}
	c("root")
	c("second")
	gitRun(t, dir, "checkout", "-q", "-b", "feature")
	c("feature 1")
	c("feature 2")
	gitRun(t, dir, "checkout", "-q", "main")
	c("main 3")
	gitRun(t, dir, "tag", "light")
	// criss-cross: main and develop merge each other's previous tips.
	gitRun(t, dir, "branch", "develop")
	c("main 4")
	gitRun(t, dir, "checkout", "-q", "develop")
	c("develop 1")
	mainTip := gitRun(t, dir, "rev-parse", "main")
	devTip := gitRun(t, dir, "rev-parse", "develop")
	merge("develop <- main", mainTip)
	gitRun(t, dir, "checkout", "-q", "main")
	merge("main <- develop", devTip)
	merge("Merge feature", "feature")
	gitRun(t, dir, "checkout", "-q", "-b", "o1", "HEAD~1")
	c("o1")
	gitRun(t, dir, "checkout", "-q", "-b", "o2", "main~2")
	c("o2")
	gitRun(t, dir, "checkout", "-q", "main")
	merge("octopus", "o1", "o2")
	t.Setenv("GIT_COMMITTER_DATE", fmt.Sprintf("%d +0000", 1_700_000_000+n*60))
	gitRun(t, dir, "tag", "-a", "-m", "release 1.0", "v1.0")
	c("after tag")
	return dir
}

// gitCount is the reference: `git rev-list --count`.
func gitCount(t *testing.T, gitDir, rev string) int {
	t.Helper()
	n, err := strconv.Atoi(gitRun(t, "", "--git-dir", gitDir, "rev-list", "--count", rev))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func allCommits(t *testing.T, gitDir string) []string {
	return strings.Fields(gitRun(t, "", "--git-dir", gitDir, "rev-list", "--all"))
}

func TestBuildNumberMatchesGitForEveryCommit(t *testing.T) {
	ctx := context.Background()
	src := smallRepo(t)
	r, err := NewCache(t.TempDir()).Sync(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	commits := allCommits(t, src+"/.git")
	if len(commits) < 14 {
		t.Fatalf("fixture has only %d commits", len(commits))
	}
	// Walk twice: oldest first (every count can reuse an ancestor's set)
	// and newest first (no reusable ancestor), with fresh state each time.
	for _, order := range []string{"oldest-first", "newest-first"} {
		r, err := OpenDir(r.Dir())
		if err != nil {
			t.Fatal(err)
		}
		list := append([]string(nil), commits...)
		if order == "oldest-first" {
			for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
				list[i], list[j] = list[j], list[i]
			}
		}
		for _, h := range list {
			got, err := r.BuildNumber(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if want := gitCount(t, src+"/.git", h); got != want {
				t.Errorf("%s: BuildNumber(%s) = %d, git rev-list --count = %d", order, h, got, want)
			}
		}
	}
	out, err := exec.Command("git", "--git-dir", r.Dir(), "commit-graph", "verify").CombinedOutput()
	if err != nil {
		t.Fatalf("git rejects the commit-graph we wrote: %v: %s", err, out)
	}
}

// generated is a fast-import history large enough to hold two commits with
// the same 7-digit prefix (seed 6 at 8000 commits does; the test that needs
// it says so if the generator ever changes).
func generated(t *testing.T) (origin, tip string) {
	t.Helper()
	origin = filepath.Join(t.TempDir(), "origin.git")
	if err := fakerepo.Init(origin); err != nil {
		t.Fatal(err)
	}
	tip, err := fakerepo.Generate(origin, fakerepo.Options{Commits: 8000, Seed: 6})
	if err != nil {
		t.Fatal(err)
	}
	return origin, tip
}

func TestGeneratedHistory(t *testing.T) {
	ctx := context.Background()
	origin, tip := generated(t)
	cache := NewCache(t.TempDir())
	r, err := cache.Sync(ctx, origin, nil)
	if err != nil {
		t.Fatal(err)
	}
	commits := allCommits(t, origin)

	t.Run("sampled counts match git", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		sample := []string{tip}
		for range 60 {
			sample = append(sample, commits[rng.IntN(len(commits))])
		}
		for _, h := range sample {
			got, err := r.BuildNumber(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if want := gitCount(t, origin, h); got != want {
				t.Errorf("BuildNumber(%s) = %d, git says %d", h, got, want)
			}
		}
	})

	t.Run("descendant counts reuse persisted sets across processes", func(t *testing.T) {
		anc := gitRun(t, "", "--git-dir", origin, "rev-parse", tip+"~40")
		first, err := OpenDir(r.Dir())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := first.BuildNumber(ctx, anc); err != nil {
			t.Fatal(err)
		}
		// A fresh Repo has no in-memory state: it must load the file.
		second, err := OpenDir(r.Dir())
		if err != nil {
			t.Fatal(err)
		}
		cs := &second.st.counts
		cs.mu.Lock()
		if err := cs.refresh(second.dir); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range cs.entries {
			found = found || fmt.Sprintf("%x", e.oid) == anc
		}
		cs.mu.Unlock()
		if !found {
			t.Fatalf("count of %s was not persisted in %s", anc, countsFile)
		}
		got, err := second.BuildNumber(ctx, tip)
		if err != nil {
			t.Fatal(err)
		}
		if want := gitCount(t, origin, tip); got != want {
			t.Errorf("descendant count %d, git says %d", got, want)
		}
	})

	t.Run("ambiguous and lengthened short ids", func(t *testing.T) {
		seen := map[string]string{}
		var a, b string
		for _, h := range commits {
			if o, ok := seen[h[:7]]; ok {
				a, b = o, h
				break
			}
			seen[h[:7]] = h
		}
		if a == "" {
			t.Fatal("the generated history no longer has two commits sharing 7 hex digits; pick another seed in generated()")
		}
		_, err := r.Resolve(ctx, a[:7])
		if !errors.Is(err, ErrAmbiguousRef) {
			t.Fatalf("Resolve(%s) error = %v, want ErrAmbiguousRef", a[:7], err)
		}
		c, err := r.Resolve(ctx, a[:12])
		if err != nil || c.Hash != a {
			t.Fatalf("Resolve(%s) = %v, %v; want %s", a[:12], c.Hash, err, a)
		}
		common := 0
		for a[common] == b[common] {
			common++
		}
		if c.Short != a[:common+1] {
			t.Errorf("Short = %q, want the unambiguous %q", c.Short, a[:common+1])
		}
	})

	t.Run("incremental sync decodes only new commits", func(t *testing.T) {
		oldTips := strings.Fields(gitRun(t, "", "--git-dir", origin, "for-each-ref", "--format=%(objectname)"))
		newTip, err := fakerepo.Generate(origin, fakerepo.Options{Commits: 100, Seed: 99, From: "refs/heads/main^0", StartTime: 1_800_000_000})
		if err != nil {
			t.Fatal(err)
		}
		before := graphSize(t, r)
		r2, err := cache.Sync(ctx, origin, nil)
		if err != nil {
			t.Fatal(err)
		}
		added := graphSize(t, r2) - before
		// New commits: reachable now, not from any ref before the push.
		want, err := strconv.Atoi(gitRun(t, "", append([]string{"--git-dir", origin, "rev-list", "--count", "--all", "--not"}, oldTips...)...))
		if err != nil {
			t.Fatal(err)
		}
		if added != want {
			t.Errorf("graph grew by %d commits, want %d", added, want)
		}
		got, err := r2.BuildNumber(ctx, newTip)
		if err != nil {
			t.Fatal(err)
		}
		if want := gitCount(t, origin, newTip); got != want {
			t.Errorf("after incremental sync: %d, git says %d", got, want)
		}
		if out, err := exec.Command("git", "--git-dir", r2.Dir(), "commit-graph", "verify").CombinedOutput(); err != nil {
			t.Fatalf("git rejects the updated commit-graph: %v: %s", err, out)
		}
	})
}

func graphSize(t *testing.T, r *Repo) int {
	t.Helper()
	g, err := loadGraph(r.Dir())
	if err != nil || g == nil {
		t.Fatalf("load graph: %v (nil graph: %v)", err, g == nil)
	}
	return int(g.n)
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	src := smallRepo(t)
	r, err := NewCache(t.TempDir()).Sync(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	gd := src + "/.git"
	head := gitRun(t, "", "--git-dir", gd, "rev-parse", "main")
	tagged := gitRun(t, "", "--git-dir", gd, "rev-parse", "v1.0^{commit}")
	light := gitRun(t, "", "--git-dir", gd, "rev-parse", "light")

	cases := []struct {
		ref, hash, branch, tag string
	}{
		{"main", head, "main", ""},
		{"refs/heads/main", head, "main", ""},
		{"feature", gitRun(t, "", "--git-dir", gd, "rev-parse", "feature"), "feature", ""},
		{"v1.0", tagged, "", "v1.0"},
		{"refs/tags/v1.0", tagged, "", "v1.0"},
		{"light", light, "", "light"},
		{head[:7], head, "main", ""},
		{strings.ToUpper(head[:10]), head, "main", ""},
		{head, head, "main", ""},
		{tagged, tagged, "", "v1.0"},
	}
	for _, tc := range cases {
		c, err := r.Resolve(ctx, tc.ref)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.ref, err)
			continue
		}
		if c.Hash != tc.hash || c.Branch != tc.branch || c.Tag != tc.tag {
			t.Errorf("Resolve(%q) = hash %s branch %q tag %q; want %s %q %q", tc.ref, c.Hash, c.Branch, c.Tag, tc.hash, tc.branch, tc.tag)
		}
		if c.Short != tc.hash[:7] {
			t.Errorf("Resolve(%q).Short = %q", tc.ref, c.Short)
		}
		if want := gitCount(t, gd, tc.hash); c.BuildNumber != want {
			t.Errorf("Resolve(%q).BuildNumber = %d, want %d", tc.ref, c.BuildNumber, want)
		}
	}

	c, err := r.Resolve(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	if c.Message != "after tag\n" || c.AuthorName != "Ada" || c.AuthorEmail != "ada@example.com" {
		t.Errorf("meta = %q %q %q", c.Message, c.AuthorName, c.AuthorEmail)
	}
	if wantWhen := gitRun(t, "", "--git-dir", gd, "log", "-1", "--format=%ct", head); strconv.FormatInt(c.When.Unix(), 10) != wantWhen {
		t.Errorf("When = %v, git says %s", c.When.Unix(), wantWhen)
	}

	for _, bad := range []string{"nope", "", "abc12", "0000000", "refs/heads/nope", strings.Repeat("0", 40)} {
		_, err := r.Resolve(ctx, bad)
		if !errors.Is(err, ErrUnknownRef) {
			t.Errorf("Resolve(%q) error = %v, want ErrUnknownRef", bad, err)
		}
	}
}

func TestExportMatchesGitArchive(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "work")
	gitRun(t, "", "init", "-q", "-b", "main", dir)
	files := map[string]string{"README.md": "hello\n", "bin/run.sh": "#!/bin/sh\necho hi\n", "app/etc/env.php": "<?php return [];\n", "composer.lock": "{\"packages\":[]}\n"}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "bin/run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../README.md", filepath.Join(dir, "app/readme-link")); err != nil {
		t.Fatal(err)
	}
	gitRun(t, dir, "add", "-A")
	// A submodule entry (gitlink): exported as an empty directory.
	gitRun(t, dir, "update-index", "--add", "--cacheinfo", "160000,"+strings.Repeat("1", 40)+",vendor/mod")
	head := commitAt(t, dir, 1, "tree")

	r, err := NewCache(t.TempDir()).Sync(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "export")
	if err := os.WriteFile(filepath.Join(filepath.Dir(out), "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(out, 0o755); err != nil { // an older export is replaced
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "stale"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Export(ctx, head, out); err != nil {
		t.Fatal(err)
	}

	ref := filepath.Join(t.TempDir(), "archive")
	if err := os.Mkdir(ref, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "git -c tar.umask=022 archive --format=tar "+head+" | tar -x -p -C "+ref)
	cmd.Dir = dir
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git archive | tar: %v: %s", err, o)
	}
	want, got := describeTree(t, ref), describeTree(t, out)
	if want != got {
		t.Errorf("export differs from git archive\n--- git archive\n%s\n--- Export\n%s", want, got)
	}
	entries, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("export left temporary directories behind: %v", entries)
	}

	sum, err := r.FileHash(head, "composer.lock")
	if err != nil {
		t.Fatal(err)
	}
	if want := gitRun(t, dir, "show", head+":composer.lock"); sum != sha256Hex(want+"\n") {
		t.Errorf("FileHash(composer.lock) = %s", sum)
	}
	if sum, err := r.FileHash(head, "package-lock.json"); err != nil || sum != "" {
		t.Errorf("FileHash of a missing file = %q, %v; want \"\", nil", sum, err)
	}
	if sum, err := r.FileHash(head, "nodir/package-lock.json"); err != nil || sum != "" {
		t.Errorf("FileHash in a missing dir = %q, %v; want \"\", nil", sum, err)
	}
}

// describeTree lists path, type, permission, mtime and content (or link
// target) of every entry, for comparing two extracted trees.
func describeTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s", rel, info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", target)
		case info.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q mtime=%d", data, info.ModTime().Unix())
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestConcurrentSync(t *testing.T) {
	ctx := context.Background()
	src := smallRepo(t)
	root := t.TempDir()
	// Two Caches on one root behave like two processes: only the lock file
	// stands between them.
	caches := []*Cache{NewCache(root), NewCache(root)}
	want := gitCount(t, src+"/.git", "main")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := caches[i%2].Sync(ctx, src, nil)
			if err != nil {
				errs <- err
				return
			}
			c, err := r.Resolve(ctx, "main")
			if err != nil {
				errs <- err
				return
			}
			if c.BuildNumber != want {
				errs <- fmt.Errorf("build number %d, want %d", c.BuildNumber, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	dirs, _ := filepath.Glob(filepath.Join(root, "*.git"))
	if len(dirs) != 1 {
		t.Errorf("want one mirror, got %v", dirs)
	}
}

func TestSyncPrunesAndOpen(t *testing.T) {
	ctx := context.Background()
	src := smallRepo(t)
	cache := NewCache(t.TempDir())
	if _, err := cache.Open(src); err == nil {
		t.Fatal("Open before Sync must fail")
	}
	if _, err := cache.Sync(ctx, src, nil); err != nil {
		t.Fatal(err)
	}
	gitRun(t, src, "branch", "-D", "o1")
	commitAt(t, src, 100, "pushed later")
	// Same repository, other spelling: must reuse the mirror.
	r, err := cache.Sync(ctx, "file://"+src+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, "o1"); !errors.Is(err, ErrUnknownRef) {
		t.Errorf("deleted branch still resolves: %v", err)
	}
	c, err := r.Resolve(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	if c.Message != "pushed later\n" || c.BuildNumber != gitCount(t, src+"/.git", "main") {
		t.Errorf("after fetch: %q #%d", c.Message, c.BuildNumber)
	}
	o, err := cache.Open(src)
	if err != nil || o.Dir() != r.Dir() {
		t.Fatalf("Open = %v, %v; want the synced mirror %s", o, err, r.Dir())
	}
	if dirs, _ := filepath.Glob(filepath.Join(cache.Root, "*.git")); len(dirs) != 1 {
		t.Errorf("URL spellings made several mirrors: %v", dirs)
	}
}

func TestCorruptGraphIsRebuilt(t *testing.T) {
	ctx := context.Background()
	src := smallRepo(t)
	cache := NewCache(t.TempDir())
	r, err := cache.Sync(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.Dir(), graphRelPath)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 200), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh, err := OpenDir(r.Dir())
	if err != nil {
		t.Fatal(err)
	}
	head := gitRun(t, "", "--git-dir", src+"/.git", "rev-parse", "main")
	if _, err := fresh.BuildNumber(ctx, head); err == nil || !strings.Contains(err.Error(), "Sync") {
		t.Fatalf("corrupt graph: error %v should tell to run Sync", err)
	}
	r, err = NewCache(cache.Root).Sync(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.BuildNumber(ctx, head)
	if err != nil || got != gitCount(t, src+"/.git", head) {
		t.Fatalf("after rebuild: %d, %v", got, err)
	}
}

func TestLockWaitsAndHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v, want deadline exceeded", err)
	}
	unlock()
	unlock2, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}

func TestBuildNumberOutsideGraph(t *testing.T) {
	// Commits fetched by someone else after the graph was written are
	// counted by decoding objects down to the graph.
	ctx := context.Background()
	src := smallRepo(t)
	r, err := NewCache(t.TempDir()).Sync(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	commitAt(t, src, 200, "x1")
	head := commitAt(t, src, 201, "x2")
	gitRun(t, "", "--git-dir", r.Dir(), "fetch", "-q", src, "+refs/heads/*:refs/heads/*")
	got, err := r.BuildNumber(ctx, head)
	if err != nil {
		t.Fatal(err)
	}
	if want := gitCount(t, src+"/.git", head); got != want {
		t.Errorf("outside graph: %d, want %d", got, want)
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
