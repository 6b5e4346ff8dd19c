package m1fix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

var (
	iniSectionRE = regexp.MustCompile(`^\s*\[([^\]]+)\]\s*$`)
	iniKVRE      = regexp.MustCompile(`^\s*([A-Za-z0-9_.\[\]]+)\s*=\s*(.*?)\s*$`)
	limitExtRE   = regexp.MustCompile(`^\s*;?\s*security\.limit_extensions\s*=`)
)

const limitExtLine = "security.limit_extensions = .php ; mageflow: only .php runs, so an uploaded image can never be executed"

// setLimitExt returns the pool file with security.limit_extensions = .php
// in the pool that listens on listen (or the only pool), the value it had
// ("" when unset) and whether it changed.
func setLimitExt(src, listen string) (out, was string, changed bool, err error) {
	lines := strings.SplitAfter(src, "\n")
	type sec struct {
		name, listen string
		start, end   int
	}
	var secs []sec
	for i, l := range lines {
		if m := iniSectionRE.FindStringSubmatch(l); m != nil {
			if len(secs) > 0 {
				secs[len(secs)-1].end = i
			}
			secs = append(secs, sec{name: m[1], start: i, end: len(lines)})
			continue
		}
		if m := iniKVRE.FindStringSubmatch(l); m != nil && m[1] == "listen" && len(secs) > 0 {
			secs[len(secs)-1].listen = strings.Trim(m[2], `"'`)
		}
	}
	var pools []sec
	for _, s := range secs {
		if s.name != "global" {
			pools = append(pools, s)
		}
	}
	var pool *sec
	for i := range pools {
		if listen != "" && (pools[i].listen == listen || "unix:"+pools[i].listen == listen) {
			pool = &pools[i]
		}
	}
	if pool == nil && len(pools) == 1 {
		pool = &pools[0]
	}
	if pool == nil {
		return "", "", false, fmt.Errorf("found %d pools and none listens on %q: set security.limit_extensions = .php in the store's pool by hand", len(pools), listen)
	}
	active := -1
	for i := pool.start + 1; i < pool.end; i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, ";") && limitExtRE.MatchString(l) {
			active = i
			_, v, _ := strings.Cut(l, "=")
			if c := strings.IndexByte(v, ';'); c >= 0 {
				v = v[:c]
			}
			was = strings.Join(strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)), " ")
		}
	}
	if active >= 0 && was == ".php" {
		return src, was, false, nil
	}
	if active >= 0 {
		lines[active] = limitExtLine + "\n"
	} else {
		// Append at the end of the pool's section, after its last non-blank
		// line.
		at := pool.end
		for at > pool.start+1 && strings.TrimSpace(lines[at-1]) == "" {
			at--
		}
		ins := limitExtLine + "\n"
		if at > 0 && !strings.HasSuffix(lines[at-1], "\n") {
			ins = "\n" + ins
		}
		lines = append(lines[:at], append([]string{ins}, lines[at:]...)...)
	}
	return strings.Join(lines, ""), was, true, nil
}

// fpmMainConf is the config php-fpm -t must read: the pool file itself when
// it holds [global], else Debian's php-fpm.conf above pool.d/.
func (o Options) fpmMainConf(pool string, src string) string {
	if o.PHPFPMConf != "" {
		return o.PHPFPMConf
	}
	for _, l := range strings.Split(src, "\n") {
		if m := iniSectionRE.FindStringSubmatch(l); m != nil && m[1] == "global" {
			return pool
		}
	}
	return filepath.Join(filepath.Dir(filepath.Dir(pool)), "php-fpm.conf")
}

func applyFPM(ctx context.Context, t *m1audit.Target, o Options) m1audit.CheckResult {
	r := result(IDFPMLimitExt, "PHP-FPM pool runs only .php (security.limit_extensions = .php)", m1audit.SeverityHigh, "", "")
	if t.FPMPoolFile == "" {
		r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, "discovery found no PHP-FPM pool file for the vhost's fastcgi_pass"
		r.Fix = "set security.limit_extensions = .php in the store's pool and reload php-fpm"
		return r
	}
	r.Evidence.Files = []string{t.FPMPoolFile}
	data, err := os.ReadFile(t.FPMPoolFile)
	if err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("read pool file: %v", err)
		return r
	}
	src := string(data)
	out, was, changed, err := setLimitExt(src, t.FPMListen)
	if err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusNeedsPerson, err.Error()
		return r
	}
	if !changed {
		r.Status, r.Evidence.Detail = m1audit.StatusPass, unchanged
		return r
	}
	r.Before = "security.limit_extensions = " + orDefault(was, "(unset: php-fpm's default .php .phar)")
	r.After = "security.limit_extensions = .php"
	if o.DryRun {
		r.Status, r.Evidence.Detail = m1audit.StatusFail, "dry run: would set security.limit_extensions = .php"
		return r
	}
	bin, err := findBinary(o.PHPFPMBinary, "php-fpm8.2", "php-fpm", "/usr/sbin/php-fpm8.2", "/usr/sbin/php-fpm")
	if err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("no php-fpm binary to check the pool with (%v): install php-fpm or set its path", err)
		return r
	}
	mainConf := o.fpmMainConf(t.FPMPoolFile, src)
	testArgs := append([]string{"-t", "-y", mainConf}, o.PHPFPMArgs...)
	r.Evidence.Command = bin + " " + strings.Join(testArgs, " ")
	// Check the current config first: if it is already broken, changing
	// it would only muddle whose fault the failure is.
	if msg, err := run(ctx, bin, testArgs...); err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, "php-fpm -t rejects the config before any change: "+msg
		return r
	}
	bak, err := backup(filepath.Join(o.includeDir(), "backup"), t.FPMPoolFile, data)
	if err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, err.Error()
		return r
	}
	mode := fileMode(t.FPMPoolFile, 0o644)
	if err := writeAtomic(t.FPMPoolFile, []byte(out), mode, -1); err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, err.Error()
		return r
	}
	if msg, err := run(ctx, bin, testArgs...); err != nil {
		rerr := writeAtomic(t.FPMPoolFile, data, mode, -1)
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("php-fpm -t rejected the change (%s); previous pool file restored (restore error: %v)", msg, rerr)
		return r
	}
	if err := reloadFPM(ctx, o, mainConf); err != nil {
		r.Status, r.Evidence.Detail = m1audit.StatusError, fmt.Sprintf("pool file changed and checked, but the reload failed: %v (reload php-fpm by hand, or set hosts.<name>.hardening.php_fpm.reload)", err)
		return r
	}
	r.Status = m1audit.StatusFixed
	r.Evidence.Detail = "pool updated (backup " + bak + "), php-fpm -t passed, php-fpm reloaded"
	return r
}

// reloadFPM reloads php-fpm: the caller's function, else SIGUSR2 to the pid
// in the main config's `pid` (php-fpm keeps its listening sockets across
// the re-exec, so no connection is refused).
func reloadFPM(ctx context.Context, o Options, mainConf string) error {
	if o.ReloadPHPFPM != nil {
		return o.ReloadPHPFPM(ctx)
	}
	data, err := os.ReadFile(mainConf)
	if err != nil {
		return err
	}
	pidFile := ""
	for _, l := range strings.Split(string(data), "\n") {
		if m := iniKVRE.FindStringSubmatch(l); m != nil && m[1] == "pid" {
			pidFile = strings.Trim(m[2], `"'`)
		}
	}
	if pidFile == "" {
		return fmt.Errorf("%s names no pid file (`pid =`): set hosts.<name>.hardening.php_fpm.reload, e.g. [systemctl, reload, php8.2-fpm]", mainConf)
	}
	if !filepath.IsAbs(pidFile) {
		pidFile = filepath.Join("/var/run", pidFile) // php-fpm's default prefix for relative pid paths
	}
	pid, err := signalPIDFile(pidFile, syscall.SIGUSR2)
	if err != nil {
		return err
	}
	// The master re-executes itself under the same pid; give it a moment
	// and make sure it survived.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if syscall.Kill(pid, 0) == nil {
			if _, err := os.Stat(pidFile); err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("php-fpm master %d did not come back after SIGUSR2: check its log", pid)
}
