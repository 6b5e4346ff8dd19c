package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// maxLinkHops is how many symbolic links one path resolution may follow,
// the same limit as Linux's (MAXSYMLINKS): a longer chain or a loop is
// refused.
const maxLinkHops = 40

// maxLinkTarget is the longest symlink target Linux accepts (PATH_MAX
// without the terminating NUL). It also bounds the work of one resolution.
const maxLinkTarget = 4095

// errLeavesRoot and errLinkLoop are the two ways linkSet.resolve fails.
var (
	errLeavesRoot = errors.New("leaves the root")
	errLinkLoop   = errors.New("follows more than 40 symbolic links (a loop?)")
)

// linkSet holds the symbolic links of one tree: slash-separated path
// relative to the tree's root -> link target. It resolves paths in that
// tree the way the kernel would, without touching the file system, so a
// link is judged by where it leads, not by the text of its target.
//
// Components are walked one at a time, ".." as one level up, and every
// link met is expanded (at most maxLinkHops in one resolution). A
// component that is not a link is taken as a directory whether or not it
// exists: that is stricter than the kernel, which fails on a missing or
// non-directory component, and stays right if someone creates it later.
// The link paths themselves must not go through links: Extract refuses
// such entries and Write's walk never follows links, so this holds.
type linkSet map[string]string

// resolve returns the root-relative path name leads to, following links
// in every component, the last one included. When the resolution leaves
// the root it returns errLeavesRoot and, for the error message, where it
// goes: "../../etc" relative to the root, or an absolute path.
func (ls linkSet) resolve(name string) (string, error) {
	var cur []string
	todo := pushComponents(nil, name)
	hops := 0
	for len(todo) > 0 {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return path.Join("..", remaining(todo)), errLeavesRoot
			}
			cur = cur[:len(cur)-1]
			continue
		}
		p := c
		if len(cur) > 0 {
			p = strings.Join(cur, "/") + "/" + c
		}
		target, isLink := ls[p]
		if !isLink {
			cur = append(cur, c)
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", errLinkLoop
		}
		if path.IsAbs(target) {
			return path.Join(target, remaining(todo)), errLeavesRoot
		}
		todo = pushComponents(todo, target)
	}
	if len(cur) == 0 {
		return ".", nil
	}
	return strings.Join(cur, "/"), nil
}

// pushComponents pushes the components of p onto the stack todo (whose
// last element is walked next), so that the first component of p is on
// top.
func pushComponents(todo []string, p string) []string {
	parts := strings.Split(p, "/")
	slices.Reverse(parts)
	return append(todo, parts...)
}

// remaining joins what is left on the stack in walking order.
func remaining(todo []string) string {
	parts := slices.Clone(todo)
	slices.Reverse(parts)
	return strings.Join(parts, "/")
}

// escapes checks every link of the set once all of them are known (a link
// added later can change where an earlier one leads) and returns the first,
// in lexical order, that does not resolve inside the root, with where it
// leads and why. err is nil when every link stays inside.
func (ls linkSet) escapes() (name, resolved string, err error) {
	names := make([]string, 0, len(ls))
	for n := range ls {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if resolved, err := ls.resolve(n); err != nil {
			return n, resolved, err
		}
	}
	return "", "", nil
}

// CheckLinks walks srcDir as Write would package it (skipping .git
// directories and the exclude patterns of Options.Exclude) and returns an
// ErrEscapingLink error for the first symbolic link that does not resolve
// inside it. The build runs it right after the checkout, so no build step
// ever runs next to a committed link out of the checkout.
func CheckLinks(srcDir string, exclude []string) error {
	excl, err := compileExcludes(exclude)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(srcDir)
	if err != nil {
		return fmt.Errorf("artifact: resolve source dir %q: %w", srcDir, err)
	}
	p := &packer{root: root, excl: excl, links: linkSet{}}
	err = filepath.WalkDir(root, func(full string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("artifact: read source tree: %w", err)
		}
		rel, skip := p.relOf(full, d)
		if skip {
			return skipDirIf(d.IsDir() && full != root)
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := os.Readlink(full)
		if err != nil {
			return fmt.Errorf("artifact: read symlink %s: %w", full, err)
		}
		p.links[rel] = target
		return nil
	})
	if err != nil {
		return err
	}
	return p.checkLinks()
}
