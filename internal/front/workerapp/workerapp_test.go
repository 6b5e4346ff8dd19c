package workerapp

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mageflow/mageflow/activities"
	"github.com/mageflow/mageflow/internal/platform/config"
)

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

// recorder is a worker.Registry that keeps the workflow type names.
type recorder struct {
	worker.Registry
	workflows  []string
	activities int
}

func (r *recorder) RegisterWorkflowWithOptions(_ any, o workflow.RegisterOptions) {
	r.workflows = append(r.workflows, o.Name)
}
func (r *recorder) RegisterActivity(any) { r.activities++ }
func (r *recorder) RegisterActivityWithOptions(any, activity.RegisterOptions) {
	r.activities++
}

// The workflow type names are in recorded histories and in running
// schedules: renaming one breaks replay, so they are pinned here.
func TestRegisterKeepsTheWorkflowTypeNames(t *testing.T) {
	var r recorder
	Register(&r, &activities.BuildActivities{}, &activities.DeployActivities{})
	want := []string{"BuildRelease", "ResolveRef", "ZeroDowntimeDeploy", "ScheduledBuild", "ScaleOutReadiness",
		"WarmPoolImageRefresh", "MagentoM1EOLHardening", "ScheduledHarden"}
	slices.Sort(want)
	slices.Sort(r.workflows)
	if !slices.Equal(r.workflows, want) {
		t.Errorf("registered workflows %v, want %v", r.workflows, want)
	}
	if r.activities == 0 {
		t.Error("Register registered no activities")
	}
}

func TestServeMetricsServesTheRegistryAndNamesATakenPort(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "mageflow_test_total"}))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	closeFn, err := serveMetrics(addr, reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "mageflow_test_total 0") {
		t.Errorf("/metrics lacks the registry's counter:\n%s", body)
	}
	if _, err := serveMetrics(addr, reg, logger); err == nil || !strings.Contains(err.Error(), "metrics endpoint "+addr) || !strings.Contains(err.Error(), "worker.metrics_listen") {
		t.Errorf("a second worker on the same port: %v", err)
	}
}
