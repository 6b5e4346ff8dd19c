// Package metrics exposes mageflow's own Prometheus metrics (build counts and
// durations) next to the Temporal SDK's, on the worker's /metrics endpoint.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mageflow/mageflow/internal/build/release"
)

// Build holds the build metrics. A nil *Build records nothing, so tests and
// tools can leave it out.
type Build struct {
	builds   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	steps    *prometheus.HistogramVec
}

// NewBuild registers the build metrics on reg.
func NewBuild(reg prometheus.Registerer) *Build {
	b := &Build{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mageflow_builds_total", Help: "Builds finished, by app and result (succeeded, failed).",
		}, []string{"app", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mageflow_build_duration_seconds", Help: "Wall time of a build attempt: checkout, recipe, package and upload.",
			Buckets: []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600},
		}, []string{"app", "result"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mageflow_build_step_duration_seconds", Help: "Duration of each recipe step.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200},
		}, []string{"app", "step"}),
	}
	reg.MustRegister(b.builds, b.duration, b.steps)
	return b
}

// Observe records one finished build attempt.
func (b *Build) Observe(app, result string, d time.Duration, steps []release.StepDuration) {
	if b == nil {
		return
	}
	b.builds.WithLabelValues(app, result).Inc()
	b.duration.WithLabelValues(app, result).Observe(d.Seconds())
	for _, s := range steps {
		b.steps.WithLabelValues(app, s.Name).Observe(s.Seconds)
	}
}
