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
	main := result(IDNginx, "Managed nginx include denies the §3 paths, PHP outside the entry points, and guards the admin", m1audit.SeverityCritical, "", "")
	design := result(IDDesignPost, "POST saving the design config section is refused before PHP (misc-scripts virtual patch)", m1audit.SeverityHigh, "", "")
	auth := result(IDAdminAuth, "Admin (and staging) behind basic auth / IP allow list, admin POSTs rate-limited", m1audit.SeverityHigh, "", "")
	daily := dailyLimit(t, o)
	fail := func(err error) []m1audit.CheckResult {
		for _, r := range []*m1audit.CheckResult{&main, &design, &auth} {
			r.Status = m1audit.StatusError
			r.Evidence.Detail = err.Error()
		}
		return []m1audit.CheckResult{main, design, auth, daily}
	}
	if len(t.Vhosts) == 0 {
		return fail(fmt.Errorf("no nginx vhost serves %s: nothing to protect (check the audit's discovery: nginx -T)", t.WebRoot))
	}
	bin, err := o.nginxBin()
	if err != nil {
		return fail(err)
	}

	// Work out every file's new content first.
	var changes []change
	var files []string
	var before, after []string
	handEdited := false
	if o.BasicAuth != nil {
		p := o.htpasswdFile(t)
		old, err := readMaybe(p)
		if err != nil {
			return fail(err)
		}
		data, err := htpasswd(old, *o.BasicAuth)
		if err != nil {
			return fail(err)
		}
		changes = append(changes, change{path: p, old: old, new: data, mode: 0o640, gid: nginxGroup(), note: "htpasswd"})
		if gid := nginxGroup(); gid < 0 {
			changes[len(changes)-1].mode = 0o644 // nginx's workers must read it
		}
	}
	_, httpText, err := RenderNginx(t, o)
	if err != nil {
		return fail(err)
	}
	hp := o.httpFile(t)
	old, err := readMaybe(hp)
	if err != nil {
		return fail(err)
	}
	changes = append(changes, change{path: hp, old: old, new: []byte(httpText), mode: 0o644, gid: -1, note: "http include"})
	type vfile struct {
		src string
		ins []insertion
	}
	vfiles := map[string]*vfile{}
	var vorder []string
	for _, v := range t.Vhosts {
		path, line := splitFileLine(v.File)
		vf := vfiles[path]
		if vf == nil {
			src, err := readVhost(path)
			if err != nil {
				return fail(fmt.Errorf("vhost %v: %w", v.ServerNames, err))
			}
			vf = &vfile{src: src}
			vfiles[path] = vf
			vorder = append(vorder, path)
		}
		sp := o.serverFile(v)
		sb, need, err := needInclude(vf.src, line, v.ServerNames, sp)
		if err != nil {
			return fail(fmt.Errorf("vhost %v in %s: %w: add `include %s;` to its server block by hand", v.ServerNames, path, err, sp))
		}
		text, err := renderServer(t, v, o, sb.locations)
		if err != nil {
			return fail(err)
		}
		if testHookServer != nil {
			text = testHookServer(text)
		}
		old, err := readMaybe(sp)
		if err != nil {
			return fail(err)
		}
		if old != nil {
			if managed, intact := sealState(old); !managed || !intact {
				handEdited = true
				main.Evidence.Detail += fmt.Sprintf("%s was edited by hand (checksum mismatch): overwritten, the edited copy is kept under %s; ", sp, filepath.Join(o.includeDir(), "backup"))
			}
		}
		changes = append(changes, change{path: sp, old: old, new: []byte(text), mode: 0o644, gid: -1, note: "server include"})
		if need {
			vf.ins = append(vf.ins, insertion{at: sb.open, path: sp})
			before = append(before, fmt.Sprintf("%s: server block at line %d does not include %s", path, sb.line, sp))
			after = append(after, fmt.Sprintf("%s: `include %s;` added as the first directive of the server block at line %d", path, sp, sb.line))
		}
		files = append(files, sp)
	}
	for _, path := range vorder {
		vf := vfiles[path]
		files = append(files, path)
		if len(vf.ins) > 0 {
			changes = append(changes, change{path: path, old: []byte(vf.src), new: []byte(addIncludes(vf.src, vf.ins)), mode: fileMode(path, 0o644), gid: -1, note: "include line"})
		}
	}
	files = append(files, hp)
	if o.BasicAuth != nil {
		files = append(files, o.htpasswdFile(t))
	}
	main.Evidence.Files = files
	main.Evidence.Command = strings.Join(append([]string{bin, "-t"}, o.NginxArgs...), " ") + " && reload"

	var todo []change
	for _, c := range changes {
		if c.differs() {
			todo = append(todo, c)
			if c.note != "include line" {
				if c.old == nil {
					before = append(before, c.path+": absent")
				} else {
					before = append(before, c.path+": differs from the rendered rules")
				}
				after = append(after, fmt.Sprintf("%s: %s written (%d bytes)", c.path, c.note, len(c.new)))
			}
		}
	}
	detailRules := fmt.Sprintf("%d deny rules (server-level, case-insensitive) plus ^~/= locations for the canonical paths", RuleCount())
	finish := func(st m1audit.Status, what string) []m1audit.CheckResult {
		main.Status = st
		main.Evidence.Detail += what + "; " + detailRules
		if st == m1audit.StatusFixed || (st == m1audit.StatusFail && o.DryRun) {
			main.Before, main.After = strings.Join(before, "\n"), strings.Join(after, "\n")
		}
		design.Status, auth.Status = st, st
		design.Evidence.Detail = what + "; nginx cannot read bodies, so every POST to …/system_config/save that could save the design section (section/design in the path, a query string, no section in the path, encoded or repeated section) is answered 403 before PHP; change design settings via the database or OpenMage OPENMAGE_CONFIG__ overrides"
		auth.Evidence.Detail = what
		if t.AdminFrontName == "" {
			design.Status, design.Evidence.Detail = m1audit.StatusNeedsPerson, "admin frontName unknown (local.xml not read): the design-save and admin rules were not rendered"
			design.Fix = "make app/etc/local.xml readable to the audit and run again"
		}
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
		if st == m1audit.StatusPass {
			for _, r := range []*m1audit.CheckResult{&main, &design, &auth} {
				if r.Status == m1audit.StatusPass {
					r.Evidence.Detail = unchanged
				}
			}
		}
		return []m1audit.CheckResult{main, design, auth, daily}
	}
	if len(todo) == 0 {
		return finish(m1audit.StatusPass, unchanged)
	}
	if o.DryRun {
		return finish(m1audit.StatusFail, fmt.Sprintf("dry run: would write %d file(s)", len(todo)))
	}

	bdir := filepath.Join(o.includeDir(), "backup")
	for _, c := range todo {
		if _, err := backup(bdir, c.path, c.old); err != nil {
			return fail(err)
		}
	}
	var written []change
	rollback := func() string {
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
	for _, c := range todo {
		if err := writeAtomic(c.path, c.new, c.mode, c.gid); err != nil {
			return fail(fmt.Errorf("%w%s", err, rollback()))
		}
		written = append(written, c)
	}
	if out, err := run(ctx, bin, append([]string{"-t", "-q"}, o.NginxArgs...)...); err != nil {
		hint := ""
		if strings.Contains(out, "zone") {
			hint = fmt.Sprintf(" (is %s included in nginx's http {}? Debian's nginx.conf includes conf.d/*.conf)", o.httpDir())
		}
		return fail(fmt.Errorf("nginx -t rejected the hardened config: %s%s%s", out, hint, rollback()))
	}
	if err := reloadNginx(ctx, bin, o); err != nil {
		// The files are valid (nginx -t passed); keep them, the next
		// reload applies them.
		return fail(fmt.Errorf("files written and nginx -t passed, but the reload failed: %w", err))
	}
	what := fmt.Sprintf("wrote %d file(s), nginx -t passed, nginx reloaded", len(todo))
	if handEdited {
		what += " (hand edit overwritten)"
	}
	return finish(m1audit.StatusFixed, what)
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
