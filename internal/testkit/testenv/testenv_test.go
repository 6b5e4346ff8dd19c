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
