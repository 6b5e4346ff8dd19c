package m1fix

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// ownerPlan is what the ownership walk found (and, unless dry, changed).
type ownerPlan struct {
	chowned   int // owned by the PHP user → deploy user (group: PHP group, read-only)
	phpOwned  int // owned by the PHP user and left so (no deploy user)
	groupW    int // PHP group write bit removed
	otherW    int // world write bit removed
	symlinks  int // not followed, not changed
	errs      []string
	examples  []string
	skipped   []string // writable subtrees left alone
	skinNoted bool
}

func (p *ownerPlan) example(rel string) {
	if len(p.examples) < 5 {
		p.examples = append(p.examples, rel)
	}
}

func lookupIDs(name, group string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return 0, 0, err
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

// applyOwnership makes the code unwritable for the PHP user: entries it
// owns go to the deploy user (group: the PHP group, read-only, so PHP still
// reads them), and write bits for the PHP group and for everyone are
// removed. var/, media/ and Options.Writable are left alone; skin/ is
// always treated as code. The walk stays inside the web root and never
// follows symlinks.
func applyOwnership(t *m1audit.Target, o Options) m1audit.CheckResult {
	r := result(IDOwnership, "Code owned by the deploy user, not writable by the PHP user (var/, media/ excepted; skin/ never writable)", m1audit.SeverityHigh, "", "")
	if t.PHPUser == "" {
		r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, "PHP user unknown (no pool `user` found): cannot tell what it may write"
		return r
	}
	phpUID, phpGID, err := lookupIDs(t.PHPUser, t.PHPGroup)
	if err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("look up PHP user %s: %v", t.PHPUser, err)
		return r
	}
	deployUID := -1
	if o.DeployUser != "" {
		if o.DeployUser == t.PHPUser {
			r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, "the deploy user is the PHP user: code would stay writable by PHP"
			r.Fix = "deploy as a separate user (e.g. `deploy`) and run again"
			return r
		}
		if deployUID, _, err = lookupIDs(o.DeployUser, ""); err != nil {
			r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("look up deploy user %s: %v", o.DeployUser, err)
			return r
		}
	}
	root := filepath.Clean(t.WebRoot)
	skip := map[string]bool{"var": true, "media": true}
	var p ownerPlan
	for _, w := range o.Writable {
		rel := filepath.Clean(strings.TrimPrefix(w, "/"))
		if rel == "skin" || strings.HasPrefix(rel, "skin/") {
			p.skinNoted = true
			continue
		}
		if rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		skip[rel] = true
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			p.errs = append(p.errs, err.Error())
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if skip[rel] {
			p.skipped = append(p.skipped, rel)
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			p.symlinks++
			return nil
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			p.errs = append(p.errs, err.Error())
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		mode := fi.Mode().Perm()
		newMode := mode
		uid, gid := int(st.Uid), int(st.Gid)
		chown := false
		if uid == phpUID {
			if deployUID >= 0 {
				chown = true
				gid = phpGID
				newMode |= 0o040
				if d.IsDir() {
					newMode |= 0o010
				}
				newMode &^= 0o020
			} else {
				p.phpOwned++
				p.example(rel)
			}
		}
		if gid == phpGID && newMode&0o020 != 0 {
			newMode &^= 0o020
			p.groupW++
			p.example(rel)
		}
		if newMode&0o002 != 0 {
			newMode &^= 0o002
			p.otherW++
			p.example(rel)
		}
		if chown {
			p.chowned++
			p.example(rel)
		}
		if o.DryRun {
			return nil
		}
		if chown {
			if err := os.Lchown(path, deployUID, gid); err != nil {
				p.errs = append(p.errs, err.Error())
				return nil
			}
		}
		if newMode != mode || chown { // chown clears setuid/setgid bits: set the mode again
			if err := os.Chmod(path, newMode|(fi.Mode()&(fs.ModeSticky))); err != nil {
				p.errs = append(p.errs, err.Error())
			}
		}
		return nil
	})
	if err != nil {
		p.errs = append(p.errs, err.Error())
	}
	r.Evidence.Files = p.examples
	changes := p.chowned + p.groupW + p.otherW
	detail := fmt.Sprintf("owner changed: %d, PHP-group write removed: %d, world write removed: %d, symlinks not followed: %d, left writable: %s",
		p.chowned, p.groupW, p.otherW, p.symlinks, strings.Join(append([]string{}, p.skipped...), ", "))
	if p.skinNoted {
		detail += "; skin/ was listed as writable and ignored: skin/ is code"
	}
	switch {
	case len(p.errs) > 0:
		r.Status = m1audit.StatusError
		r.Evidence.Detail = detail + "; errors: " + strings.Join(first(p.errs, 5), "; ")
	case o.DryRun && changes+p.phpOwned > 0:
		r.Status = m1audit.StatusFail
		r.Evidence.Detail = "dry run: would change — " + detail
	case p.phpOwned > 0:
		r.Status = m1audit.StatusNeedsPerson
		r.Evidence.Detail = fmt.Sprintf("%d entries are owned by the PHP user %s (an owner can chmod them back); no deploy user configured, ownership left alone; %s", p.phpOwned, t.PHPUser, detail)
		r.Fix = "configure the deploy user that should own the code and run again"
	case changes == 0:
		r.Status, r.Evidence.Detail = m1audit.StatusPass, unchanged
	default:
		r.Status = m1audit.StatusFixed
		r.Evidence.Detail = detail
		r.Before = fmt.Sprintf("%d entries owned by %s, %d writable by group %s, %d world-writable", p.chowned, t.PHPUser, p.groupW, orDefault(t.PHPGroup, "(php group)"), p.otherW)
		r.After = "code owned by " + orDefault(o.DeployUser, "(unchanged owners)") + ", not writable by the PHP user"
	}
	return r
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
