// Package secrets reads values from the secure config area. Workflows only
// ever carry references ("file:shop-env.php", "env:SHOP_WEBHOOK"); the value
// is read here, inside an activity or a request handler, so it never reaches
// workflow history or logs.
package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mageflow/mageflow/internal/platform/config"
)

// Area is the secure config area rooted at Dir.
type Area struct{ Dir string }

// Read resolves a reference. file: names must stay inside Dir and the file
// must not be readable by group or others, so a leaked-permission secret is
// noticed rather than used.
func (a Area) Read(ref string) ([]byte, error) {
	if err := config.CheckSecretRef(ref); err != nil {
		return nil, err
	}
	kind, name, _ := strings.Cut(ref, ":")
	switch kind {
	case "env":
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return nil, fmt.Errorf("secret %s: environment variable %s is not set; export it for the mageflow process", ref, name)
		}
		return []byte(v), nil
	default:
		p := filepath.Join(a.Dir, filepath.FromSlash(name))
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("secret %s: %s does not exist; create it (mode 0600) in the secrets dir %s", ref, p, a.Dir)
		}
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", ref, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("secret %s: %s is readable by others (mode %o); run chmod 600 %s", ref, p, fi.Mode().Perm(), p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", ref, err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
}

// Write stores a file secret with mode 0600, creating the area if needed.
// Used by `mageflow dev` to seed the demo's webhook secret.
func (a Area) Write(name string, value []byte) error {
	if err := config.CheckSecretRef("file:" + name); err != nil {
		return err
	}
	if err := os.MkdirAll(a.Dir, 0o700); err != nil {
		return err
	}
	p := filepath.Join(a.Dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, value, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
