package agentapp

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/platform/config"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"--host", "web1"}, ""},
		{[]string{"--host", "i-1", "--group", "web", "--serve-web"}, ""},
		{[]string{"--config", "/etc/mageflow.yaml", "--host", "lb1", "--log-level", "debug"}, ""},
		{nil, errHost.Error()},
		{[]string{"--group", "web"}, errHost.Error()},
		{[]string{"--host", "web1", "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"--host", "web1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--agent"}, "flag provided but not defined: -agent"},
	} {
		f, err := ParseFlags(tc.args, io.Discard)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.args, err)
			}
			continue
		}
		var ue ErrUsage
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v (flags %+v), want a usage error containing %q", tc.args, err, f, tc.want)
		}
	}
	f, err := ParseFlags([]string{"--host", "i-9", "--group", "web", "--serve-web"}, io.Discard)
	if err != nil || f.Host != "i-9" || f.Group != "web" || !f.ServeWeb {
		t.Errorf("flags not read: %+v, %v", f, err)
	}
	if _, err := ParseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestMainExitCodes(t *testing.T) {
	var errb bytes.Buffer
	if code := Main(context.Background(), nil, &errb); code != 2 || !strings.Contains(errb.String(), "mageflow-agent: --host NAME is required") {
		t.Errorf("usage error: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	if code := Main(context.Background(), []string{"--config", missing, "--host", "web1"}, &errb); code != 1 || !strings.Contains(errb.String(), missing) {
		t.Errorf("missing config: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := Main(context.Background(), []string{"-h"}, &errb); code != 0 || !strings.Contains(errb.String(), "-serve-web") {
		t.Errorf("-h: exit %d, %q", code, errb.String())
	}
}

func TestAppOnTakesTheFirstAppByNameOnHostOrGroup(t *testing.T) {
	cfg := &config.Config{Apps: map[string]*config.App{
		"zshop": {Environments: map[string]*config.Environment{"prod": {Hosts: []string{"web1"}}}},
		"blog": {Environments: map[string]*config.Environment{
			"staging": {Hosts: []string{"web2"}},
			"nil":     nil,
			"prod":    {Group: "web"},
		}},
		"admin": {Environments: map[string]*config.Environment{"prod": {Hosts: []string{"web1", "web2"}}}},
	}}
	for _, tc := range []struct{ host, group, want string }{
		{"web1", "", "admin"},
		{"web2", "", "admin"},
		{"web3", "", ""},
		{"i-123", "web", "blog"},
		{"i-123", "other", ""},
	} {
		if got := AppOn(cfg, tc.host, tc.group); got != tc.want {
			t.Errorf("AppOn(%q, %q) = %q, want %q", tc.host, tc.group, got, tc.want)
		}
	}
}

func TestServeWebRefusesWhatTheConfigDoesNotDeclare(t *testing.T) {
	cfg := &config.Config{File: "m.yaml", Hosts: map[string]*config.Host{"web1": {}}, Apps: map[string]*config.App{}}
	for _, tc := range []struct{ host, group, want string }{
		{"nope", "", `host "nope" is not declared under hosts: in m.yaml`},
		{"i-1", "nope", `group "nope" is not declared under groups: in m.yaml`},
		{"web1", "", `no app has an environment on host "web1"`},
	} {
		_, err := ServeWeb(context.Background(), cfg, tc.host, tc.group)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ServeWeb(%q, %q) = %v, want an error containing %q", tc.host, tc.group, err, tc.want)
		}
	}
}

func TestNewLBActivitiesIsNilForAHostThatBalancesNothing(t *testing.T) {
	lb, err := NewLBActivities(&config.Config{Hosts: map[string]*config.Host{"web1": {}}}, "web1")
	if err != nil || lb != nil {
		t.Fatalf("NewLBActivities = %v, %v; want nil, nil", lb, err)
	}
}

// The --serve-web agent runs again after each failure and stops at once
// when its context ends.
func TestRunUntilDoneRestarts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	runs := 0
	done := make(chan struct{})
	go func() {
		runUntilDone(ctx, func(context.Context) error {
			runs++
			if runs == 3 {
				cancel()
			}
			return errors.New("temporal unreachable")
		}, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("runUntilDone did not return after cancel")
	}
	if runs != 3 {
		t.Fatalf("ran %d times, want 3 (restart after each failure until cancelled)", runs)
	}
}
