package m1fix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mageflow/mageflow/internal/host/lbconf"
	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// reloadWait bounds how long Apply waits for nginx's old workers to stop
// taking new connections after a reload.
const reloadWait = 20 * time.Second

var pidRE = regexp.MustCompile(`(?m)^\s*pid\s+([^;\s]+)\s*;`)

func (o Options) nginxBin() (string, error) {
	bin, err := findBinary(o.NginxBinary, "/usr/sbin/nginx", "nginx")
	if err != nil {
		return "", fmt.Errorf("no nginx binary (%v): install nginx (Debian: nginx-light) or set the nginx binary", err)
	}
	return bin, nil
}

// applyNginx writes the managed includes, the http file, the htpasswd file
// and missing include lines, checks them with nginx -t and reloads — all
// or nothing.
func applyNginx(ctx context.Context, t *m1audit.Target, o Options) []m1audit.CheckResult {
	a := newNginxApply(t, o)
	if len(t.Vhosts) == 0 {
		return a.fail(fmt.Errorf("no nginx vhost serves %s: nothing to protect (check the audit's discovery: nginx -T)", t.WebRoot))
	}
	bin, err := o.nginxBin()
	if err != nil {
		return a.fail(err)
	}
	if err := a.plan(bin); err != nil {
		return a.fail(err)
	}
	todo := a.pending()
	if len(todo) == 0 {
		return a.finish(m1audit.StatusPass, unchanged)
	}
	if o.DryRun {
		return a.finish(m1audit.StatusFail, fmt.Sprintf("dry run: would write %d file(s)", len(todo)))
	}
	if err := a.writeAndReload(ctx, bin, todo); err != nil {
		return a.fail(err)
	}
	what := fmt.Sprintf("wrote %d file(s), nginx -t passed, nginx reloaded", len(todo))
	if a.handEdited {
		what += " (hand edit overwritten)"
	}
	return a.finish(m1audit.StatusFixed, what)
}

// nginxApply is one applyNginx run: the results it reports and the file
// changes it plans, with the before/after lines that explain them.
type nginxApply struct {
	t                         *m1audit.Target
	o                         Options
	main, design, auth, daily m1audit.CheckResult
	changes                   []change
	files                     []string
	before, after             []string
	handEdited                bool
}

// vhostFile is one vhost config file and the include lines it lacks.
type vhostFile struct {
	src string
	ins []insertion
}

func newNginxApply(t *m1audit.Target, o Options) *nginxApply {
	return &nginxApply{
		t:      t,
		o:      o,
		main:   result(IDNginx, "Managed nginx include denies the §3 paths, PHP outside the entry points, and guards the admin", m1audit.SeverityCritical, "", ""),
		design: result(IDDesignPost, "POST saving the design config section is refused before PHP (misc-scripts virtual patch)", m1audit.SeverityHigh, "", ""),
		auth:   result(IDAdminAuth, "Admin (and staging) behind basic auth / IP allow list, admin POSTs rate-limited", m1audit.SeverityHigh, "", ""),
		daily:  dailyLimit(t, o),
	}
}

// fail marks the three nginx results as errors carrying err.
func (a *nginxApply) fail(err error) []m1audit.CheckResult {
	for _, r := range []*m1audit.CheckResult{&a.main, &a.design, &a.auth} {
		r.Status = m1audit.StatusError
		r.Evidence.Detail = err.Error()
	}
	return []m1audit.CheckResult{a.main, a.design, a.auth, a.daily}
}

// plan works out every file's new content first: htpasswd, the http
// include, each vhost's server include and the include lines to add.
func (a *nginxApply) plan(bin string) error {
	t, o := a.t, a.o
	if o.BasicAuth != nil {
		if err := a.planHtpasswd(); err != nil {
			return err
		}
	}
	_, httpText, err := RenderNginx(t, o)
	if err != nil {
		return err
	}
	hp := o.httpFile(t)
	old, err := readMaybe(hp)
	if err != nil {
		return err
	}
	a.changes = append(a.changes, change{path: hp, old: old, new: []byte(httpText), mode: 0o644, gid: -1, note: "http include"})
	if err := a.planVhosts(); err != nil {
		return err
	}
	a.files = append(a.files, hp)
	if o.BasicAuth != nil {
		a.files = append(a.files, o.htpasswdFile(t))
	}
	a.main.Evidence.Files = a.files
	a.main.Evidence.Command = strings.Join(append([]string{bin, "-t"}, o.NginxArgs...), " ") + " && reload"
	return nil
}

// planHtpasswd plans the htpasswd file holding the basic-auth user.
func (a *nginxApply) planHtpasswd() error {
	p := a.o.htpasswdFile(a.t)
	old, err := readMaybe(p)
	if err != nil {
		return err
	}
	data, err := htpasswd(old, *a.o.BasicAuth)
	if err != nil {
		return err
	}
	a.changes = append(a.changes, change{path: p, old: old, new: data, mode: 0o640, gid: nginxGroup(), note: "htpasswd"})
	if gid := nginxGroup(); gid < 0 {
		a.changes[len(a.changes)-1].mode = 0o644 // nginx's workers must read it
	}
	return nil
}

// planVhosts plans each vhost's server include, then the include lines
// missing from the vhost files, in the order the files were first seen.
func (a *nginxApply) planVhosts() error {
	vfiles := map[string]*vhostFile{}
	var vorder []string
	for _, v := range a.t.Vhosts {
		path, line := splitFileLine(v.File)
		vf := vfiles[path]
		if vf == nil {
			src, err := readVhost(path)
			if err != nil {
				return fmt.Errorf("vhost %v: %w", v.ServerNames, err)
			}
			vf = &vhostFile{src: src}
			vfiles[path] = vf
			vorder = append(vorder, path)
		}
		if err := a.planServer(v, path, line, vf); err != nil {
			return err
		}
	}
	for _, path := range vorder {
		vf := vfiles[path]
		a.files = append(a.files, path)
		if len(vf.ins) > 0 {
			a.changes = append(a.changes, change{path: path, old: []byte(vf.src), new: []byte(addIncludes(vf.src, vf.ins)), mode: fileMode(path, 0o644), gid: -1, note: "include line"})
		}
	}
	return nil
}

// planServer plans one vhost's server include and, when its server block
// lacks it, the include line for vf.
func (a *nginxApply) planServer(v m1audit.Vhost, path string, line int, vf *vhostFile) error {
	sp := a.o.serverFile(v)
	sb, need, err := needInclude(vf.src, line, v.ServerNames, sp)
	if err != nil {
		return fmt.Errorf("vhost %v in %s: %w: add `include %s;` to its server block by hand", v.ServerNames, path, err, sp)
	}
	text, err := renderServer(a.t, v, a.o, sb.locations)
	if err != nil {
		return err
	}
	if testHookServer != nil {
		text = testHookServer(text)
	}
	old, err := readMaybe(sp)
	if err != nil {
		return err
	}
	if old != nil {
		if managed, intact := sealState(old); !managed || !intact {
			a.handEdited = true
			a.main.Evidence.Detail += fmt.Sprintf("%s was edited by hand (checksum mismatch): overwritten, the edited copy is kept under %s; ", sp, filepath.Join(a.o.includeDir(), "backup"))
		}
	}
	a.changes = append(a.changes, change{path: sp, old: old, new: []byte(text), mode: 0o644, gid: -1, note: "server include"})
	if need {
		vf.ins = append(vf.ins, insertion{at: sb.open, path: sp})
		a.before = append(a.before, fmt.Sprintf("%s: server block at line %d does not include %s", path, sb.line, sp))
		a.after = append(a.after, fmt.Sprintf("%s: `include %s;` added as the first directive of the server block at line %d", path, sp, sb.line))
	}
	a.files = append(a.files, sp)
	return nil
}

// pending returns the planned changes that differ from disk, noting each
// (except include lines, noted while planning) in before/after.
func (a *nginxApply) pending() []change {
	var todo []change
	for _, c := range a.changes {
		if !c.differs() {
			continue
		}
		todo = append(todo, c)
		if c.note != "include line" {
			if c.old == nil {
				a.before = append(a.before, c.path+": absent")
			} else {
				a.before = append(a.before, c.path+": differs from the rendered rules")
			}
			a.after = append(a.after, fmt.Sprintf("%s: %s written (%d bytes)", c.path, c.note, len(c.new)))
		}
	}
	return todo
}

// finish sets the three nginx results to st, explained by what.
func (a *nginxApply) finish(st m1audit.Status, what string) []m1audit.CheckResult {
	detailRules := fmt.Sprintf("%d deny rules (server-level, case-insensitive) plus ^~/= locations for the canonical paths", RuleCount())
	a.main.Status = st
	a.main.Evidence.Detail += what + "; " + detailRules
	if st == m1audit.StatusFixed || (st == m1audit.StatusFail && a.o.DryRun) {
		a.main.Before, a.main.After = strings.Join(a.before, "\n"), strings.Join(a.after, "\n")
	}
	a.finishDesign(st, what)
	a.finishAuth(st, what)
	if st == m1audit.StatusPass {
		for _, r := range []*m1audit.CheckResult{&a.main, &a.design, &a.auth} {
			if r.Status == m1audit.StatusPass {
				r.Evidence.Detail = unchanged
			}
		}
	}
	return []m1audit.CheckResult{a.main, a.design, a.auth, a.daily}
}

// finishDesign sets the design-save result: needs a person when the admin
// frontName is unknown.
func (a *nginxApply) finishDesign(st m1audit.Status, what string) {
	a.design.Status = st
	a.design.Evidence.Detail = what + "; nginx cannot read bodies, so every POST to …/system_config/save that could save the design section (section/design in the path, a query string, no section in the path, encoded or repeated section) is answered 403 before PHP; change design settings via the database or OpenMage OPENMAGE_CONFIG__ overrides"
	if a.t.AdminFrontName == "" {
		a.design.Status, a.design.Evidence.Detail = m1audit.StatusNeedsPerson, "admin frontName unknown (local.xml not read): the design-save and admin rules were not rendered"
		a.design.Fix = "make app/etc/local.xml readable to the audit and run again"
	}
}

// finishAuth sets the admin-auth result from what was rendered and which
// credentials or allow list were configured.
func (a *nginxApply) finishAuth(st m1audit.Status, what string) {
	t, o, auth := a.t, a.o, &a.auth
	auth.Status = st
	auth.Evidence.Detail = what
	switch {
	case t.AdminFrontName == "":
		auth.Status, auth.Evidence.Detail = m1audit.StatusNeedsPerson, "admin frontName unknown: no admin block rendered"
		auth.Fix = "make app/etc/local.xml readable to the audit and run again"
	case !anyAdmin(t):
		auth.Status, auth.Evidence.Detail = m1audit.StatusNeedsPerson, "no vhost has a fastcgi_pass discovery could read: the admin block (which needs its own PHP handler) was not rendered"
		auth.Fix = "pass the PHP-FPM address of the vhost (fastcgi_pass) and run again"
	case o.BasicAuth == nil && len(o.AdminAllow) == 0:
		auth.Status = m1audit.StatusNeedsPerson
		auth.Evidence.Detail = what + "; admin has its own PHP handler and rate limit but no credentials or allow list were configured"
		auth.Fix = "set hosts.<name>.hardening.basic_auth (user, password: file:NAME) and/or hardening.admin_allow, then run `mageflow harden --host <name> --apply` again"
	default:
		auth.Evidence.Detail = fmt.Sprintf("%s; /%s, /index.php/%s and every spelling Magento routes there (/index.php%[2]s/, store-code prefixes, any case): %[4]s, POSTs limited to %d/min per address (429 beyond)", what, t.AdminFrontName, t.AdminFrontName, authWhat(o), o.rate())
		if o.StagingBasicAuth {
			auth.Evidence.Detail += "; staging vhosts entirely behind the same credentials"
		}
	}
}

// writeAndReload backs up and writes todo, checks the result with nginx -t
// and reloads nginx; a failed write or check restores the previous files.
func (a *nginxApply) writeAndReload(ctx context.Context, bin string, todo []change) error {
	o := a.o
	bdir := filepath.Join(o.includeDir(), "backup")
	for _, c := range todo {
		if _, err := backup(bdir, c.path, c.old); err != nil {
			return err
		}
	}
	var written []change
	for _, c := range todo {
		if err := writeAtomic(c.path, c.new, c.mode, c.gid); err != nil {
			return fmt.Errorf("%w%s", err, rollback(written, bdir))
		}
		written = append(written, c)
	}
	if out, err := run(ctx, bin, append([]string{"-t", "-q"}, o.NginxArgs...)...); err != nil {
		hint := ""
		if strings.Contains(out, "zone") {
			hint = fmt.Sprintf(" (is %s included in nginx's http {}? Debian's nginx.conf includes conf.d/*.conf)", o.httpDir())
		}
		return fmt.Errorf("nginx -t rejected the hardened config: %s%s%s", out, hint, rollback(written, bdir))
	}
	if err := reloadNginx(ctx, bin, o); err != nil {
		// The files are valid (nginx -t passed); keep them, the next
		// reload applies them.
		return fmt.Errorf("files written and nginx -t passed, but the reload failed: %w", err)
	}
	return nil
}

// rollback restores written in reverse order and says how that went, as a
// suffix for the error that caused it.
func rollback(written []change, bdir string) string {
	var errs []string
	for i := len(written) - 1; i >= 0; i-- {
		if err := restore(written[i]); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return "; ROLLBACK INCOMPLETE: " + strings.Join(errs, "; ") + " (restore from " + bdir + ")"
	}
	return "; previous files restored"
}

func anyAdmin(t *m1audit.Target) bool {
	for _, v := range t.Vhosts {
		if adminActive(t, v) {
			return true
		}
	}
	return false
}

func authWhat(o Options) string {
	switch {
	case o.BasicAuth != nil && len(o.AdminAllow) > 0:
		return fmt.Sprintf("basic auth (user %s) or one of %d allowed addresses", o.BasicAuth.User, len(o.AdminAllow))
	case o.BasicAuth != nil:
		return fmt.Sprintf("basic auth (user %s)", o.BasicAuth.User)
	default:
		return fmt.Sprintf("only %d allowed addresses", len(o.AdminAllow))
	}
}

// dailyLimit reports the per-day failed-login limit, which nginx cannot
// express (limit_req rates stop at r/m and forget after the burst): it
// belongs to fail2ban, whose jail Apply spells out.
func dailyLimit(t *m1audit.Target, o Options) m1audit.CheckResult {
	r := result(IDAdminDaily, "Failed admin logins limited per address per day", m1audit.SeverityMedium, m1audit.StatusNotApplicable, "no per-day limit configured")
	if o.AdminLoginsPerDay <= 0 {
		return r
	}
	front := orDefault(t.AdminFrontName, "<admin frontName>")
	r.Status = m1audit.StatusNeedsPerson
	r.Evidence.Detail = fmt.Sprintf("nginx limits admin POSTs to %d/min; a limit of %d per day needs fail2ban (nginx rates stop at r/m)", o.rate(), o.AdminLoginsPerDay)
	r.Fix = fmt.Sprintf("install fail2ban and add /etc/fail2ban/filter.d/mageflow-m1-admin.conf:\n"+
		"[Definition]\nfailregex = ^<HOST> .*\"POST /(index\\.php/)?%s/.* (401|403|429) \n"+
		"and /etc/fail2ban/jail.d/mageflow-m1-admin.conf:\n"+
		"[mageflow-m1-admin]\nenabled = true\nfilter = mageflow-m1-admin\nlogpath = /var/log/nginx/access.log\nmaxretry = %d\nfindtime = 86400\nbantime = 86400\n",
		regexp.QuoteMeta(front), o.AdminLoginsPerDay)
	return r
}

// reloadNginx makes the running master load the checked config and waits
// until its old workers stop taking new connections, so requests made after
// Apply returns see the new rules.
func reloadNginx(ctx context.Context, bin string, o Options) error {
	out, err := run(ctx, bin, append([]string{"-T", "-q"}, o.NginxArgs...)...)
	if err != nil {
		return fmt.Errorf("nginx -T: %v: %s", err, out)
	}
	pidFile := "/run/nginx.pid"
	if m := pidRE.FindAllStringSubmatch(out, -1); len(m) > 0 {
		pidFile = m[len(m)-1][1]
	}
	if !filepath.IsAbs(pidFile) {
		pidFile = filepath.Join(nginxPrefix(o.NginxArgs), pidFile)
	}
	n := lbconf.Nginx{PIDFile: pidFile}
	master, old, err := n.Reload()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(reloadWait)
	for _, w := range old {
		for {
			running, shutting := w.Current()
			if !running || shutting {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nginx master %d did not apply the reload within %s (old worker %d still accepts connections): see nginx's error log", master, reloadWait, w.PID)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if !lbconf.Alive(master) {
		return fmt.Errorf("nginx master %d exited during the reload: see nginx's error log", master)
	}
	return nil
}

// nginxPrefix is the -p argument, else Debian's compiled-in prefix.
func nginxPrefix(args []string) string {
	for i, a := range args {
		if a == "-p" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return "/usr/share/nginx"
}

// signalPIDFile sends sig to the pid in path.
func signalPIDFile(path string, sig syscall.Signal) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s holds %q, not a pid", path, strings.TrimSpace(string(data)))
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return pid, fmt.Errorf("signal %d from %s: %w", pid, path, err)
	}
	return pid, nil
}
