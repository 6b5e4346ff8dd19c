package codec

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeys(t *testing.T) {
	k1, k2 := randomKey(t), randomKey(t)
	b64, hx := base64.StdEncoding.EncodeToString(k1), hex.EncodeToString(k2)
	keys, err := ParseKeys([]byte("# comment\n\n" + b64 + "\n  " + hx + "  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || string(keys[0]) != string(k1) || string(keys[1]) != string(k2) {
		t.Fatalf("ParseKeys = %x", keys)
	}
	keys, err = ParseKeys([]byte(hx + "," + strings.TrimRight(b64, "=")))
	if err != nil || len(keys) != 2 || string(keys[0]) != string(k2) || string(keys[1]) != string(k1) {
		t.Fatalf("comma separated, unpadded: %x, %v", keys, err)
	}
	for name, in := range map[string]string{
		"empty":    "# only a comment\n",
		"16 bytes": base64.StdEncoding.EncodeToString(k1[:16]),
		"garbage":  "not-a-key!",
	} {
		if _, err := ParseKeys([]byte(in)); err == nil {
			t.Errorf("%s: ParseKeys succeeded", name)
		} else if strings.Contains(err.Error(), "not-a-key") {
			t.Errorf("%s: error echoes key material: %v", name, err)
		}
	}
}

func TestLoadKeyFilePermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "codec.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(randomKey(t))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); err != nil {
		t.Fatalf("0600: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: err = %v, want advice to chmod 600", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); err != nil {
		t.Errorf("0400 is stricter than 0600 and must load: %v", err)
	}
	if _, err := LoadKeyFile(path + ".missing"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadKeyFile(t.TempDir()); err == nil {
		t.Error("a directory loaded as key file")
	}
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var", "codec.key")
	created, err := GenerateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("GenerateKeyFile = %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %04o, want 0600", st.Mode().Perm())
	}
	first, _ := os.ReadFile(path)
	keys, err := LoadKeyFile(path)
	if err != nil || len(keys) != 1 {
		t.Fatalf("generated file does not load: %v", err)
	}

	created, err = GenerateKeyFile(path)
	if err != nil || created {
		t.Fatalf("second GenerateKeyFile = %v, %v; want false, nil", created, err)
	}
	second, _ := os.ReadFile(path)
	if string(first) != string(second) {
		t.Fatal("GenerateKeyFile overwrote an existing key")
	}

	other, _ := GenerateKeyFile(filepath.Join(filepath.Dir(path), "other.key"))
	k2, _ := LoadKeyFile(filepath.Join(filepath.Dir(path), "other.key"))
	if !other || string(k2[0]) == string(keys[0]) {
		t.Fatal("two generated keys are equal")
	}
}

func TestLoadPrefersEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "codec.key")
	if _, err := GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	fileKeys, _ := LoadKeyFile(path)

	t.Setenv("MAGEFLOW_TEST_CODEC_KEY", "")
	c, err := Load("MAGEFLOW_TEST_CODEC_KEY", path)
	if err != nil || c.ActiveKeyID() != KeyID(fileKeys[0]) {
		t.Fatalf("file: %v, %v", c, err)
	}
	envKey := randomKey(t)
	t.Setenv("MAGEFLOW_TEST_CODEC_KEY", hex.EncodeToString(envKey))
	c, err = Load("MAGEFLOW_TEST_CODEC_KEY", filepath.Join(dir, "absent"))
	if err != nil || c.ActiveKeyID() != KeyID(envKey) {
		t.Fatalf("env: %v, %v", c, err)
	}
	t.Setenv("MAGEFLOW_TEST_CODEC_KEY", "short")
	if _, err := Load("MAGEFLOW_TEST_CODEC_KEY", path); err == nil || !strings.Contains(err.Error(), "$MAGEFLOW_TEST_CODEC_KEY") {
		t.Fatalf("bad env key: %v", err)
	}
}
