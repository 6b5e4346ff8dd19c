// Package gitmeta keeps bare mirrors of application repositories and derives
// the release meta of a commit from them: branch, tag, message, author and
// the build number (`git rev-list --count`), plus a clean export of the
// commit's tree for the build.
//
// It uses go-git rather than the git CLI so that workers need no git binary,
// and maintains git's commit-graph file in each mirror so that build numbers
// of 100k-commit histories are computed as fast as git itself does.
package gitmeta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// AuthOptions carries the optional credentials for fetching a repository.
// Leave it nil for local paths and public repositories.
type AuthOptions struct {
	// SSHKeyPath is a private key file used for ssh:// and scp-like URLs.
	// Host keys are checked against the user's known_hosts as go-git does
	// by default.
	SSHKeyPath       string
	SSHKeyPassphrase string
	// SSHUser defaults to "git".
	SSHUser string
	// HTTPToken is sent as the password of HTTP basic auth, which is how
	// GitHub, GitLab and Bitbucket accept access tokens.
	HTTPToken string
	// HTTPUsername defaults to "git" (any non-empty name works for tokens).
	HTTPUsername string
}

func (a *AuthOptions) method() (transport.AuthMethod, error) {
	if a == nil {
		return nil, nil
	}
	switch {
	case a.SSHKeyPath != "":
		user := a.SSHUser
		if user == "" {
			user = "git"
		}
		m, err := gitssh.NewPublicKeysFromFile(user, a.SSHKeyPath, a.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("load SSH key %s: %w (check the path and passphrase)", a.SSHKeyPath, err)
		}
		return m, nil
	case a.HTTPToken != "":
		user := a.HTTPUsername
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: a.HTTPToken}, nil
	}
	return nil, nil
}

// Cache holds one bare mirror per repository URL under Root. Mirrors are
// kept between builds so that each build fetches only what was pushed since
// the last one.
type Cache struct {
	Root string

	mu     sync.Mutex
	states map[string]*repoState // by mirror directory
}

// NewCache returns a cache rooted at root; the directory is created on the
// first Sync.
func NewCache(root string) *Cache {
	return &Cache{Root: root, states: map[string]*repoState{}}
}

// repoState is what one process shares about one mirror: the lock that
// serialises Syncs, and the loaded commit-graph with its build-number cache.
type repoState struct {
	syncMu sync.Mutex
	counts countState
}

func (c *Cache) state(dir string) *repoState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.states == nil {
		c.states = map[string]*repoState{}
	}
	s, ok := c.states[dir]
	if !ok {
		s = &repoState{}
		c.states[dir] = s
	}
	return s
}

// normalizeURL maps the spellings of one repository to one key, so that
// "/srv/shop/", "/srv/shop.git" and "file:///srv/shop" share a mirror.
func normalizeURL(raw string) (string, error) {
	u := strings.TrimSpace(raw)
	if u == "" {
		return "", errors.New("empty repository URL")
	}
	isLocal := !strings.Contains(u, "://") && !scpLike.MatchString(u)
	if strings.HasPrefix(u, "file://") {
		u, isLocal = strings.TrimPrefix(u, "file://"), true
	}
	if isLocal {
		abs, err := filepath.Abs(u)
		if err != nil {
			return "", err
		}
		u = "file://" + filepath.Clean(abs)
	} else if p, err := url.Parse(u); err == nil && p.Scheme != "" {
		p.Host = strings.ToLower(p.Host)
		p.User = nil // credentials must not split (or leak into) the key
		u = p.String()
	}
	u = strings.TrimRight(u, "/")
	return strings.TrimSuffix(u, ".git"), nil
}

// scpLike matches git's "user@host:path" SSH shorthand.
var scpLike = regexp.MustCompile(`^[^/]+@[^/:]+:`)

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// mirrorDir derives the directory of a URL: a hash keeps distinct URLs
// apart, the suffix lets an operator see which repository it is.
func (c *Cache) mirrorDir(rawURL string) (string, error) {
	key, err := normalizeURL(rawURL)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(key))
	base := key[strings.LastIndexAny(key, "/:")+1:]
	base = strings.Trim(unsafeName.ReplaceAllString(base, "-"), ".-")
	if len(base) > 40 {
		base = base[:40]
	}
	if base == "" {
		base = "repo"
	}
	return filepath.Join(c.Root, hex.EncodeToString(sum[:8])+"-"+base+".git"), nil
}

// fetchURL turns a local path into something go-git's transport accepts.
func fetchURL(raw string) (string, error) {
	u := strings.TrimSpace(raw)
	if strings.Contains(u, "://") || scpLike.MatchString(u) {
		return u, nil
	}
	abs, err := filepath.Abs(u)
	if err != nil {
		return "", err
	}
	return abs, nil
}

// fetchSpecs mirror branches and tags only: other refs (pull requests,
// notes) are not releasable and would only slow fetches down.
var fetchSpecs = []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}

// Sync makes the mirror of url current: it clones on first use and fetches
// incrementally (all branches and tags, pruning deleted ones) afterwards,
// then brings the commit-graph up to date so BuildNumber stays fast. It is
// safe to call concurrently from goroutines and processes.
func (c *Cache) Sync(ctx context.Context, rawURL string, auth *AuthOptions) (*Repo, error) {
	dir, err := c.mirrorDir(rawURL)
	if err != nil {
		return nil, err
	}
	src, err := fetchURL(rawURL)
	if err != nil {
		return nil, err
	}
	am, err := auth.method()
	if err != nil {
		return nil, err
	}
	st := c.state(dir)
	st.syncMu.Lock()
	defer st.syncMu.Unlock()
	if err := os.MkdirAll(c.Root, 0o755); err != nil {
		return nil, fmt.Errorf("create mirror cache root: %w", err)
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	cloned := false
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := cloneMirror(ctx, dir, src, am); err != nil {
			return nil, fmt.Errorf("clone %s: %w", rawURL, err)
		}
		cloned = true
	} else if err != nil {
		return nil, err
	}
	r, err := openRepo(dir, rawURL, st)
	if err != nil {
		return nil, err
	}
	if !cloned {
		if err := r.fetch(ctx, src, am); err != nil {
			return nil, fmt.Errorf("fetch %s into %s: %w", rawURL, dir, err)
		}
	}
	if _, err := r.UpdateGraph(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// fetch updates every branch and tag, pruning those deleted upstream; the
// URL is passed each time so a moved repository needs no config edit.
func (r *Repo) fetch(ctx context.Context, src string, am transport.AuthMethod) error {
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	err := r.git.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RemoteURL:  src,
		RefSpecs:   fetchSpecs,
		Auth:       am,
		Tags:       git.NoTags, // the tag refspec already brings every tag
		Force:      true,
		Prune:      true,
	})
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

// cloneMirror initialises the mirror in a temporary directory and renames
// it into place only once the first fetch succeeded, so an interrupted
// clone never looks like a usable mirror.
func cloneMirror(ctx context.Context, dir, src string, am transport.AuthMethod) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	repo, err := git.PlainInit(tmp, true)
	if err != nil {
		return err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{src}, Fetch: fetchSpecs}); err != nil {
		return err
	}
	err = repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: fetchSpecs, Auth: am, Tags: git.NoTags, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return fmt.Errorf("%w: push at least one commit first", err)
		}
		return err
	}
	return os.Rename(tmp, dir)
}

// Open returns the existing mirror of url without fetching; it fails when
// Sync has never been run for that URL.
func (c *Cache) Open(rawURL string) (*Repo, error) {
	dir, err := c.mirrorDir(rawURL)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("no mirror of %s in %s: run Sync first: %w", rawURL, c.Root, err)
	}
	return openRepo(dir, rawURL, c.state(dir))
}

// lockFile takes an exclusive flock on path (a Sync rewriting refs).
// flock is released by the kernel when the holder exits, so a crashed
// process can never leave a stale lock behind. Waiting polls so that ctx
// can cancel it.
func lockFile(ctx context.Context, path string) (func(), error) {
	return flockFile(ctx, path, syscall.LOCK_EX)
}

// lockFileShared takes a shared flock on path: readers of refs (Resolve)
// hold it so they never see a ref file that a concurrent fetch in another
// process is rewriting (go-git does not replace ref files atomically).
func lockFileShared(ctx context.Context, path string) (func(), error) {
	return flockFile(ctx, path, syscall.LOCK_SH)
}

func flockFile(ctx context.Context, path string, how int) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another sync holding %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
