package m1fix

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mageflow/mageflow/internal/host/hostops"
)

// change is one file Apply wants to replace (new == nil: leave it).
type change struct {
	path string
	old  []byte // nil: the file does not exist
	new  []byte
	mode fs.FileMode
	gid  int // -1: keep the process's group
	note string
}

func (c change) differs() bool { return c.old == nil || !bytes.Equal(c.old, c.new) }

// readMaybe reads path; a missing file is (nil, nil).
func readMaybe(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed, so a daemon's config check never reads
// half a file. The temporary name starts with '.' and ends in neither
// .conf nor a name a glob include would pick up.
func writeAtomic(path string, data []byte, mode fs.FileMode, gid int) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := hostops.WriteFileAtomic(path, data, mode, hostops.Owner{UID: -1, GID: gid}); err != nil {
		return fmt.Errorf("write %s: %w (may this process write the directory?)", path, err)
	}
	return nil
}

// restore puts back what a change replaced (or removes a file it created).
func restore(c change) error {
	if c.old == nil {
		err := os.Remove(c.path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return writeAtomic(c.path, c.old, c.mode, -1)
}

// backup copies the current content of a file about to be replaced into
// dir, named <base>.<UTC time>.bak. dir is never one a daemon globs.
func backup(dir, path string, data []byte) (string, error) {
	if data == nil {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create backup dir %s: %w", dir, err)
	}
	name := filepath.Join(dir, filepath.Base(path)+"."+time.Now().UTC().Format("20060102T150405.000000000")+".bak")
	if err := os.WriteFile(name, data, 0o600); err != nil {
		return "", fmt.Errorf("back up %s: %w", path, err)
	}
	return name, nil
}

// fileMode is the mode of an existing file, or def.
func fileMode(path string, def fs.FileMode) fs.FileMode {
	if fi, err := os.Stat(path); err == nil {
		return fi.Mode().Perm()
	}
	return def
}

// bcryptCost is the htpasswd hash cost. nginx verifies the hash on every
// admin request, so it is bcrypt's default (≈50 ms), not more; tests lower
// it because the race detector makes bcrypt ~20× slower.
var bcryptCost = bcrypt.DefaultCost

// htpasswd returns the htpasswd content for the credential: the current
// file when it already holds exactly this user with a hash of this password
// (bcrypt is salted, so re-hashing would change the file on every run),
// else a fresh bcrypt line. nginx verifies $2y$/$2b$ hashes through the C
// library's crypt(), which on Debian (libxcrypt) supports bcrypt.
func htpasswd(old []byte, a BasicAuth) ([]byte, error) {
	if old != nil {
		sc := bufio.NewScanner(bytes.NewReader(old))
		var lines []string
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		if len(lines) == 1 {
			u, h, ok := strings.Cut(lines[0], ":")
			if ok && u == a.User && strings.HasPrefix(h, "$2") && bcrypt.CompareHashAndPassword([]byte(h), []byte(a.Password)) == nil {
				return old, nil
			}
		}
	}
	h, err := bcrypt.GenerateFromPassword([]byte(a.Password), bcryptCost)
	if err != nil {
		return nil, fmt.Errorf("hash the basic-auth password: %w", err)
	}
	return []byte("# managed by mageflow (Magento 1 admin/staging basic auth)\n" + a.User + ":" + string(h) + "\n"), nil
}

// nginxGroup is the group nginx's workers read the htpasswd file as
// (Debian: www-data); -1 when unknown or when not running as root.
func nginxGroup() int {
	if os.Geteuid() != 0 {
		return -1
	}
	g, err := user.LookupGroup("www-data")
	if err != nil {
		return -1
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	return id
}

// run executes a command and returns its combined output, trimmed.
func run(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// findBinary returns want if set, else the first candidate that exists.
func findBinary(want string, candidates ...string) (string, error) {
	if want != "" {
		if _, err := exec.LookPath(want); err != nil {
			return "", err
		}
		return want, nil
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("none of %s found", strings.Join(candidates, ", "))
}
