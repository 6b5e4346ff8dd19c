package workerapp

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{nil, ""},
		{[]string{"--agent", "--host", "web1"}, ""},
		{[]string{"--agent", "--host", "i-1", "--group", "web", "--serve-web"}, ""},
		{[]string{"--agent"}, errAgentHost.Error()},
		{[]string{"--host", "web1"}, errAgentHost.Error()},
		{[]string{"--serve-web"}, errServeWeb.Error()},
		{[]string{"--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--nope"}, "flag provided but not defined"},
	} {
		f, err := ParseFlags(tc.args, io.Discard)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.args, err)
			}
			continue
		}
		var ue errUsage
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v (flags %+v), want a usage error containing %q", tc.args, err, f, tc.want)
		}
	}
	if _, err := ParseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestMainExitCodes(t *testing.T) {
	var errb bytes.Buffer
	if code := Main(context.Background(), []string{"--agent"}, &errb); code != 2 || !strings.Contains(errb.String(), "--host NAME") {
		t.Errorf("usage error: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	if code := Main(context.Background(), []string{"--config", missing}, &errb); code != 1 || !strings.Contains(errb.String(), missing) {
		t.Errorf("missing config: exit %d, %q", code, errb.String())
	}
	if code := Main(context.Background(), []string{"-h"}, io.Discard); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}
