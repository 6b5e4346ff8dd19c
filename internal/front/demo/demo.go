// Package demo is what `make run` shows: a Magento-2-shaped app repository
// under ./var/demo, a new commit pushed to it on every run, delivered to the
// running server through the signed GitHub webhook path exactly as GitHub
// would, and the resulting release printed with its Web UI link.
package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/uuid"
)

// Repo is the demo's origin (bare) and working copy.
type Repo struct {
	Dir    string // ./var/demo
	Source string // fixture tree copied on first use
	Branch string
}

// Bare is the path the app's config points at.
func (r Repo) Bare() string { return filepath.Join(r.Dir, "shop.git") }

func (r Repo) work() string { return filepath.Join(r.Dir, "work") }

// Push makes one new commit (creating the repository on first use) and
// pushes it to the bare origin. It returns the new head sha.
func (r Repo) Push(ctx context.Context, message string) (string, error) {
	if _, err := os.Stat(r.Bare()); errors.Is(err, fs.ErrNotExist) {
		if _, err := git.PlainInit(r.Bare(), true); err != nil {
			return "", fmt.Errorf("create demo origin: %w", err)
		}
	}
	wt, err := git.PlainOpen(r.work())
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if _, serr := os.Stat(filepath.Join(r.Source, "composer.json")); serr != nil {
			return "", fmt.Errorf("demo app source %s not found (run `mageflow dev` from the repository root or pass --demo-source): %w", r.Source, serr)
		}
		if err := copyTree(r.Source, r.work()); err != nil {
			return "", err
		}
		if wt, err = git.PlainInitWithOptions(r.work(), &git.PlainInitOptions{
			InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(r.Branch)},
		}); err != nil {
			return "", err
		}
		if _, err := wt.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{r.Bare()}}); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	tree, err := wt.Worktree()
	if err != nil {
		return "", err
	}
	// The change each run makes: a visible line in the storefront page.
	stamp := filepath.Join(r.work(), "pub", "demo-release.txt")
	if err := os.MkdirAll(filepath.Dir(stamp), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(stamp, []byte(message+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := tree.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return "", err
	}
	sig := &object.Signature{Name: "mageflow demo", Email: "demo@mageflow.invalid", When: time.Now()}
	h, err := tree.Commit(message, &git.CommitOptions{Author: sig, Committer: sig, AllowEmptyCommits: true})
	if err != nil {
		return "", err
	}
	head, err := wt.Head()
	if err != nil {
		return "", err
	}
	// Push whatever local branch the work tree is on to the demo's branch.
	err = wt.PushContext(ctx, &git.PushOptions{RemoteName: "origin", Force: true, RefSpecs: []gitconfig.RefSpec{
		gitconfig.RefSpec(fmt.Sprintf("%s:refs/heads/%s", head.Name(), r.Branch)),
	}})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return "", fmt.Errorf("push demo commit: %w", err)
	}
	return h.String(), nil
}

// Delivery is one signed GitHub push delivery.
type Delivery struct {
	URL, Secret, RepoURL, FullName, Branch, Before, After, Message string
}

// Send posts the delivery like GitHub does and returns the workflow id the
// server answered with.
func (d Delivery) Send(ctx context.Context) (string, error) {
	payload := map[string]any{
		"ref": "refs/heads/" + d.Branch, "before": d.Before, "after": d.After, "deleted": false, "created": false,
		"repository":  map[string]any{"full_name": d.FullName, "clone_url": d.RepoURL, "html_url": d.RepoURL},
		"head_commit": map[string]any{"id": d.After, "message": d.Message},
		"pusher":      map[string]any{"name": "mageflow-demo"},
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, []byte(d.Secret))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", uuid.NewString())
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("deliver webhook to %s: %w", d.URL, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("webhook answered %s: %s", resp.Status, bytes.TrimSpace(rb))
	}
	var out struct {
		Status     string `json:"status"`
		WorkflowID string `json:"workflow_id"`
		Reason     string `json:"reason"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return "", fmt.Errorf("webhook answer is not JSON: %s", rb)
	}
	if out.WorkflowID == "" {
		return "", fmt.Errorf("webhook started nothing: %s %s", out.Status, out.Reason)
	}
	return out.WorkflowID, nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if d.Name() == ".git" || d.Name() == "vendor" || d.Name() == "generated" {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
	})
}
