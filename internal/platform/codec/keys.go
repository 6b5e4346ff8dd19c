package codec

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultKeyEnv is the environment variable Load reads keys from; it wins
// over the key file so containers can inject keys without a file.
const DefaultKeyEnv = "MAGEFLOW_CODEC_KEY"

// ParseKeys reads one or more keys: one per line (or separated by commas or
// spaces, which suits environment variables), each 32 bytes as standard
// base64 or as 64 hex digits. Blank lines and lines starting with # are
// ignored. The first key is the active one; keep older keys after it while
// workflows encrypted with them may still be read.
func ParseKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, field := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			k, err := parseKey(field)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
			}
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no key found; expected 32 random bytes as base64 (head -c32 /dev/urandom | base64)")
	}
	return keys, nil
}

func parseKey(s string) ([]byte, error) {
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		k, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		// Do not echo s: it is (a typo'd) key material.
		return nil, fmt.Errorf("key is neither base64 nor %d hex digits", 2*KeySize)
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("key decodes to %d bytes, want %d", len(k), KeySize)
	}
	return k, nil
}

// LoadKeyFile reads keys from path with ParseKeys. The file must not be
// accessible to group or others (mode 0600 or stricter): a readable key file
// defeats the encryption for anyone with a shell on the host.
func LoadKeyFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("codec key file %s does not exist; create one with `make run` or: (umask 077; head -c32 /dev/urandom | base64 > %s)", path, path)
		}
		return nil, fmt.Errorf("codec key file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the checked file is the read one.
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("codec key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("codec key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("codec key file %s has mode %04o, which lets other users read it; run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("codec key file %s: %w", path, err)
	}
	keys, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("codec key file %s: %w", path, err)
	}
	return keys, nil
}

// Load builds the codec from the environment variable env when it is set
// (non-empty), otherwise from the key file at path.
func Load(env, path string) (*Codec, error) {
	var keys [][]byte
	if v := os.Getenv(env); strings.TrimSpace(v) != "" {
		var err error
		if keys, err = ParseKeys([]byte(v)); err != nil {
			return nil, fmt.Errorf("codec key from $%s: %w", env, err)
		}
	} else {
		var err error
		if keys, err = LoadKeyFile(path); err != nil {
			return nil, err
		}
	}
	return NewFromSecrets(keys...)
}

// GenerateKeyFile writes a new random key to path (mode 0600, parent
// directories 0700) unless the file already exists: overwriting a key would
// make every payload encrypted with it unreadable. created reports whether a
// key was written.
func GenerateKeyFile(path string) (created bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("codec key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("codec key file: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("codec key: %w", err)
	}
	content := "# mageflow payload encryption key (AES-256, base64). Back it up: losing it makes\n" +
		"# encrypted workflow histories unreadable. To rotate, put a new key on the first line.\n" +
		base64.StdEncoding.EncodeToString(key) + "\n"
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("codec key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return false, fmt.Errorf("codec key file %s: %w", path, err)
	}
	return true, nil
}
