package m1audit

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// FPMPool is one PHP-FPM pool section with the settings the audit needs.
// `php-fpm -tt` prints the effective configuration only to the log, in a
// format that changes between versions, so the files are read instead.
type FPMPool struct {
	Name string
	File string
	// Settings are the pool's key = value lines as written (last one wins),
	// with $pool expanded.
	Settings map[string]string
	// Env are the env[NAME] = value lines.
	Env map[string]string
}

// FPMConfig is a php-fpm main file with every file its include globs pull
// in.
type FPMConfig struct {
	Global map[string]string
	Pools  []FPMPool
	Files  []string
}

// ParseFPMConfig reads the php-fpm main configuration and its includes.
// Relative include paths are relative to the main file's directory (php-fpm
// uses its prefix, which on Debian is the same place).
func ParseFPMConfig(mainFile string) (*FPMConfig, error) {
	c := &FPMConfig{Global: map[string]string{}}
	byName := map[string]int{}
	if err := c.parseFile(mainFile, filepath.Dir(mainFile), byName, 0); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *FPMConfig) parseFile(file, prefix string, byName map[string]int, depth int) error {
	if depth > 8 {
		return fmt.Errorf("%s: includes nested more than 8 deep; check for an include loop", file)
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("read PHP-FPM configuration: %w (pass the php-fpm.conf path explicitly)", err)
	}
	defer f.Close()
	c.Files = append(c.Files, file)
	section := "global"
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			if section != "global" {
				if _, ok := byName[section]; !ok {
					byName[section] = len(c.Pools)
					c.Pools = append(c.Pools, FPMPool{Name: section, File: file, Settings: map[string]string{}, Env: map[string]string{}})
				}
			}
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		val = unquoteINI(strings.TrimSpace(val))
		if key == "include" {
			pat := val
			if !filepath.IsAbs(pat) {
				pat = filepath.Join(prefix, pat)
			}
			matches, err := filepath.Glob(pat)
			if err != nil {
				return fmt.Errorf("%s: bad include pattern %q: %w", file, val, err)
			}
			sort.Strings(matches)
			for _, m := range matches {
				if err := c.parseFile(m, prefix, byName, depth+1); err != nil {
					return err
				}
			}
			// The including file keeps its own section after the include.
			continue
		}
		if section == "global" {
			c.Global[key] = val
			continue
		}
		p := &c.Pools[byName[section]]
		val = strings.ReplaceAll(val, "$pool", section)
		if strings.HasPrefix(key, "env[") && strings.HasSuffix(key, "]") {
			p.Env[key[4:len(key)-1]] = val
			continue
		}
		p.Settings[key] = val
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

// unquoteINI strips a trailing ; comment and surrounding quotes.
func unquoteINI(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') {
		if end := strings.IndexByte(v[1:], v[0]); end >= 0 {
			return v[1 : end+1]
		}
	}
	if i := strings.Index(v, " ;"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return v
}

// PoolFor returns the pool whose listen address is the given nginx
// fastcgi_pass ("unix:/run/php/x.sock", "127.0.0.1:9000", "localhost:9000").
func (c *FPMConfig) PoolFor(fastcgiPass string) (*FPMPool, bool) {
	for i := range c.Pools {
		if listenMatches(c.Pools[i].Settings["listen"], fastcgiPass) {
			return &c.Pools[i], true
		}
	}
	return nil, false
}

func listenMatches(listen, pass string) bool {
	if listen == "" || pass == "" {
		return false
	}
	if sock, ok := strings.CutPrefix(pass, "unix:"); ok {
		return filepath.Clean(sock) == filepath.Clean(listen)
	}
	if strings.HasPrefix(listen, "/") {
		return false
	}
	ph, pp := splitHostPort(pass)
	lh, lp := splitHostPort(listen)
	if lp == "" { // "listen = 9000": every address
		lp, lh = lh, ""
	}
	if pp != lp {
		return false
	}
	loopback := func(h string) bool { return h == "127.0.0.1" || h == "localhost" || h == "::1" || h == "[::1]" }
	switch {
	case lh == "" || lh == "0.0.0.0" || lh == "[::]" || lh == "::" || lh == "*":
		return true
	case lh == ph:
		return true
	case loopback(lh) && loopback(ph):
		return true
	}
	return false
}

func splitHostPort(s string) (host, port string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}
