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

// ownerTitle is the ownership result's title.
const ownerTitle = "Code owned by the deploy user, not writable by the PHP user (var/, media/ writable by PHP, never by everyone; skin/ never writable)"

// ownerPlan is what the ownership walk found; its actions are carried out
// after the forensic snapshot has recorded every entry they touch.
type ownerPlan struct {
	chowned   int // owned by the PHP user → deploy user (group: PHP group, read-only)
	phpOwned  int // owned by the PHP user and left so (no deploy user)
	groupW    int // PHP group write bit removed
	otherW    int // world write bit removed from code
	otherWW   int // world write bit removed under a writable path (PHP keeps write)
	regrouped int // writable-path entries given to the PHP group so PHP keeps write
	symlinks  int // not followed, not changed
	errs      []string
	examples  []string
	writable  []string // writable subtrees found (var, media, Writable)
	skinNoted bool
	actions   []ownerAction
}

// ownerAction is one planned chown/chmod, with the inode it was planned
// for: it is carried out only on that inode, never through a link.
type ownerAction struct {
	path, rel      string
	fi             fs.FileInfo
	dev, ino       uint64
	newUID, newGID int // -1: unchanged
	newMode        fs.FileMode
}

// ownerIDs are the numeric ids the plan works with.
type ownerIDs struct{ phpUID, phpGID, deployUID int }

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

// resolveOwners looks up the PHP and deploy users; a non-nil result ends
// the ownership fix with that result.
func resolveOwners(t *m1audit.Target, o Options) (ownerIDs, *m1audit.CheckResult) {
	r := result(IDOwnership, ownerTitle, m1audit.SeverityHigh, "", "")
	ids := ownerIDs{deployUID: -1}
	if t.PHPUser == "" {
		r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, "PHP user unknown (no pool `user` found): cannot tell what it may write"
		return ids, &r
	}
	var err error
	if ids.phpUID, ids.phpGID, err = lookupIDs(t.PHPUser, t.PHPGroup); err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("look up PHP user %s: %v", t.PHPUser, err)
		return ids, &r
	}
	if o.DeployUser == "" {
		return ids, nil
	}
	if o.DeployUser == t.PHPUser {
		r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, "the deploy user is the PHP user: code would stay writable by PHP"
		r.Fix = "set hosts.<name>.hardening.deploy_user (or hosts.<name>.deploy_user) to a separate user (e.g. `deploy`) and run again"
		return ids, &r
	}
	if ids.deployUID, _, err = lookupIDs(o.DeployUser, ""); err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("look up deploy user %s: %v", o.DeployUser, err)
		return ids, &r
	}
	return ids, nil
}

// writableSet is var/, media/ and Options.Writable (skin/ never), relative
// to the web root.
func writableSet(o Options, p *ownerPlan) map[string]bool {
	w := map[string]bool{"var": true, "media": true}
	for _, x := range o.Writable {
		rel := filepath.Clean(strings.TrimPrefix(x, "/"))
		if rel == "skin" || strings.HasPrefix(rel, "skin/") {
			p.skinNoted = true
			continue
		}
		if rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		w[rel] = true
	}
	return w
}

// underWritable says whether rel is a writable path or below one.
func underWritable(rel string, w map[string]bool) bool {
	for x := rel; x != "." && x != "/" && x != ""; x = filepath.Dir(x) {
		if w[x] {
			return true
		}
	}
	return false
}

// planOwnership walks the web root (never following symlinks, never
// leaving it) and plans, without changing anything: code owned by the PHP
// user goes to the deploy user (group: the PHP group, read-only, so PHP
// still reads it); write bits for the PHP group and for everyone are
// removed from code; under var/, media/ and Options.Writable only the
// world-write bit goes, and an entry PHP could write only through it is
// given to the PHP group (g+w) first, so the store keeps working.
func planOwnership(t *m1audit.Target, o Options, ids ownerIDs) *ownerPlan {
	root := filepath.Clean(t.WebRoot)
	p := &ownerPlan{}
	writable := writableSet(o, p)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			p.errs = append(p.errs, err.Error())
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if writable[rel] && d.IsDir() {
			p.writable = append(p.writable, rel)
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
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			p.plan(path, rel, fi, st, underWritable(rel, writable), ids)
		}
		return nil
	})
	if err != nil {
		p.errs = append(p.errs, err.Error())
	}
	return p
}

// plan decides one entry's action.
func (p *ownerPlan) plan(path, rel string, fi fs.FileInfo, st *syscall.Stat_t, writable bool, ids ownerIDs) {
	mode := fi.Mode().Perm()
	uid, gid := int(st.Uid), int(st.Gid)
	a := ownerAction{path: path, rel: rel, fi: fi, dev: uint64(st.Dev), ino: st.Ino, newUID: -1, newGID: -1, newMode: mode}
	if writable {
		if mode&0o002 == 0 {
			return
		}
		phpWrites := (uid == ids.phpUID && mode&0o200 != 0) || (gid == ids.phpGID && mode&0o020 != 0)
		if !phpWrites {
			a.newGID = ids.phpGID
			a.newMode |= 0o060
			if fi.IsDir() {
				a.newMode |= 0o010
			}
			p.regrouped++
		}
		a.newMode &^= 0o002
		p.otherWW++
		p.example(rel)
		p.actions = append(p.actions, a)
		return
	}
	if uid == ids.phpUID {
		if ids.deployUID >= 0 {
			a.newUID, a.newGID, gid = ids.deployUID, ids.phpGID, ids.phpGID
			a.newMode |= 0o040
			if fi.IsDir() {
				a.newMode |= 0o010
			}
			a.newMode &^= 0o020
			p.chowned++
			p.example(rel)
		} else {
			p.phpOwned++
			p.example(rel)
		}
	}
	if gid == ids.phpGID && a.newMode&0o020 != 0 {
		a.newMode &^= 0o020
		p.groupW++
		p.example(rel)
	}
	if a.newMode&0o002 != 0 {
		a.newMode &^= 0o002
		p.otherW++
		p.example(rel)
	}
	if a.newUID >= 0 || a.newGID >= 0 || a.newMode != mode {
		p.actions = append(p.actions, a)
	}
}

// execute carries out the planned actions. Each entry is opened without
// following a symlink and changed through its descriptor only if it is
// still the inode that was planned (a swap between plan and change is
// skipped and reported).
func (p *ownerPlan) execute() {
	for _, a := range p.actions {
		if err := a.do(); err != nil {
			p.errs = append(p.errs, err.Error())
		}
	}
}

func (a ownerAction) do() error {
	f, err := os.OpenFile(a.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", a.rel, err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s: %w", a.rel, err)
	}
	if uint64(st.Dev) != a.dev || st.Ino != a.ino {
		return fmt.Errorf("%s was replaced while hardening ran: left alone", a.rel)
	}
	if a.newUID >= 0 || a.newGID >= 0 {
		if err := f.Chown(a.newUID, a.newGID); err != nil {
			return fmt.Errorf("%s: %w", a.rel, err)
		}
	}
	// chown clears setuid/setgid: set the mode again, keeping the sticky
	// bit and a directory's setgid (group inheritance under var/, media/).
	keep := a.fi.Mode() & fs.ModeSticky
	if a.fi.IsDir() {
		keep |= a.fi.Mode() & fs.ModeSetgid
	}
	if err := f.Chmod(a.newMode | keep); err != nil {
		return fmt.Errorf("%s: %w", a.rel, err)
	}
	return nil
}

// ownershipResult reports the plan (carried out unless o.DryRun).
func ownershipResult(t *m1audit.Target, o Options, p *ownerPlan) m1audit.CheckResult {
	r := result(IDOwnership, ownerTitle, m1audit.SeverityHigh, "", "")
	r.Evidence.Files = p.examples
	changes := p.chowned + p.groupW + p.otherW + p.otherWW
	detail := fmt.Sprintf("owner changed: %d, PHP-group write removed: %d, world write removed: %d from code and %d under the writable paths (%s; PHP keeps write as owner or group, %d entries given to group %s for it), symlinks not followed: %d",
		p.chowned, p.groupW, p.otherW, p.otherWW, strings.Join(p.writable, ", "), p.regrouped, orDefault(t.PHPGroup, "(php group)"), p.symlinks)
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
		r.Fix = "set hosts.<name>.hardening.deploy_user (or hosts.<name>.deploy_user) to the user that should own the code and run again"
	case changes == 0:
		r.Status, r.Evidence.Detail = m1audit.StatusPass, unchanged
	default:
		r.Status = m1audit.StatusFixed
		r.Evidence.Detail = detail
		r.Before = fmt.Sprintf("%d entries owned by %s, %d writable by group %s, %d world-writable", p.chowned, t.PHPUser, p.groupW, orDefault(t.PHPGroup, "(php group)"), p.otherW+p.otherWW)
		r.After = "code owned by " + orDefault(o.DeployUser, "(unchanged owners)") + ", not writable by the PHP user; nothing world-writable"
	}
	return r
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
