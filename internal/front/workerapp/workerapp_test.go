package workerapp

import (
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
)

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
