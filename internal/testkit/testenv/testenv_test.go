package testenv

import (
	"errors"
	"testing"
)

func TestExternalTemporal(t *testing.T) {
	for _, tc := range []struct {
		addr, ns string
		ok       bool
		err      error
	}{
		{"", "", false, nil},
		{"127.0.0.1:7333", "it-1", true, nil},
		{"127.0.0.1:7333", "", false, ErrHalfExternal},
		{"", "it-1", false, ErrHalfExternal},
	} {
		t.Setenv(EnvTemporal, tc.addr)
		t.Setenv(EnvNamespace, tc.ns)
		addr, ns, ok, err := ExternalTemporal()
		if ok != tc.ok || !errors.Is(err, tc.err) {
			t.Errorf("%q/%q: ok %v err %v, want ok %v err %v", tc.addr, tc.ns, ok, err, tc.ok, tc.err)
		}
		if ok && (addr != tc.addr || ns != tc.ns) {
			t.Errorf("%q/%q: got %q/%q", tc.addr, tc.ns, addr, ns)
		}
	}
}

func TestWeed(t *testing.T) {
	t.Setenv(EnvWeed, "")
	if _, err := Weed(); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("unset: err %v, want ErrNotInstalled", err)
	}
	missing := t.TempDir() + "/weed"
	t.Setenv(EnvWeed, missing)
	if _, err := Weed(); err == nil || errors.Is(err, ErrNotInstalled) {
		t.Errorf("missing file: err %v, want a failure that is not ErrNotInstalled", err)
	}
	t.Setenv(EnvWeed, "/bin/sh")
	if p, err := Weed(); err != nil || p != "/bin/sh" {
		t.Errorf("present: %q, %v", p, err)
	}
}

// fakeTB records what ToolOrSkip asked of its test.
type fakeTB struct{ skipped, failed bool }

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped = true }
func (f *fakeTB) Fatal(args ...any) { f.failed = true }

func TestToolOrSkip(t *testing.T) {
	missing := errors.New("nginx: not found")
	for _, tc := range []struct {
		cli          string
		err          error
		skip, failed bool
	}{
		{"", nil, false, false},
		{"/x/bin/temporal", nil, false, false},
		{"", missing, true, false},                // go test ./... on a fresh checkout
		{"/x/bin/temporal", missing, false, true}, // make test promised it
	} {
		t.Setenv("TEMPORAL_CLI", tc.cli)
		var f fakeTB
		ToolOrSkip(&f, tc.err)
		if f.skipped != tc.skip || f.failed != tc.failed {
			t.Errorf("TEMPORAL_CLI=%q err=%v: skipped %v failed %v, want %v %v", tc.cli, tc.err, f.skipped, f.failed, tc.skip, tc.failed)
		}
	}
}
