package magento

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mageflow/mageflow/test/fixtures"
)

func TestParseConfig(t *testing.T) {
	s, err := ParseConfig([]byte(`{"b/c/d": "x", "a/b/c": 3.50, "y/n/flag": false, "z/z/z": true}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Setting{{"a/b/c", "3.50"}, {"b/c/d", "x"}, {"y/n/flag", "0"}, {"z/z/z", "1"}}
	if len(s) != len(want) {
		t.Fatalf("got %v", s)
	}
	for i := range want {
		if s[i] != want[i] {
			t.Fatalf("got %v, want %v", s, want)
		}
	}
	for _, bad := range []string{`{"a/b": {"x": 1}}`, `{"a/b": null}`, `{"--evil": "x"}`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	_, err = ParseConfig([]byte(`{"a/b": "SECRETVALUE"`))
	if err == nil || strings.Contains(err.Error(), "SECRETVALUE") {
		t.Fatalf("syntax error must not quote the secret: %v", err)
	}
}

func TestRedactAndTail(t *testing.T) {
	if got := Redact("pw hunter2 and hunter2", "hunter2", ""); got != "pw [redacted] and [redacted]" {
		t.Fatal(got)
	}
	if got := Tail("a\nb\nc\nd\n", 2); got != "c\nd" {
		t.Fatalf("%q", got)
	}
	if got := (Result{Output: "\n\n  first \nsecond"}).FirstLine(); got != "first" {
		t.Fatalf("%q", got)
	}
}

// TestUpgradeStatusOnFixture runs the fixture's bin/magento: behind, then
// upgraded, then broken.
func TestUpgradeStatusOnFixture(t *testing.T) {
	if _, err := exec.LookPath("php"); err != nil {
		t.Fatal("php not found: install the Debian package php-cli")
	}
	dir := fixtures.Magento2App(t)
	db := filepath.Join(t.TempDir(), "db.json")
	env := filepath.Join(dir, "app/etc/env.php")
	if err := os.WriteFile(env, []byte("<?php return ['fixture_db' => '"+db+"'];"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := CLI{Dir: dir}
	st, err := c.UpgradeStatus(ctx)
	if err != nil || !st.Needed || len(st.Reasons) != 2 || !strings.HasPrefix(st.Reasons[0], "setup:db:status: ") {
		t.Fatalf("behind: %+v %v", st, err)
	}
	if _, err := c.Must(ctx, nil, "setup:upgrade", "--keep-generated"); err != nil {
		t.Fatal(err)
	}
	if st, err = c.UpgradeStatus(ctx); err != nil || st.Needed {
		t.Fatalf("after upgrade: %+v %v", st, err)
	}
	if err := os.WriteFile(env, []byte("<?php return [];"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = c.UpgradeStatus(ctx); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("broken env.php: %v", err)
	}
	_, err = c.Must(ctx, []string{"s3cret"}, "no:such", "s3cret")
	if ce, ok := err.(*CommandError); !ok || ce.ExitCode != 1 || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("got %v", err)
	}
}
