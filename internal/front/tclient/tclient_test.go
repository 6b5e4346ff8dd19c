package tclient

import (
	"testing"

	"github.com/mageflow/mageflow/internal/platform/config"
)

// A deploy asks Temporal which agents poll, in cfg's namespace: with
// TEMPORAL_NAMESPACE overriding the config, that must be the client's
// namespace, or every deploy fails with "no agent is polling".
func TestOptionsWriteTheEffectiveNamespaceBack(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "10.0.0.9:7233")
	t.Setenv("TEMPORAL_NAMESPACE", "prod")
	cfg := &config.Config{}
	cfg.Temporal.Address, cfg.Temporal.Namespace = "127.0.0.1:7233", "default"
	opts, err := Options(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Namespace != "prod" || opts.HostPort != "10.0.0.9:7233" {
		t.Fatalf("client options %s/%s", opts.HostPort, opts.Namespace)
	}
	if cfg.Temporal.Namespace != opts.Namespace || cfg.Temporal.Address != opts.HostPort {
		t.Errorf("cfg says %s/%s, the client uses %s/%s", cfg.Temporal.Address, cfg.Temporal.Namespace, opts.HostPort, opts.Namespace)
	}
}

func TestOptionsKeepTheConfigWithoutEnvironment(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "")
	t.Setenv("TEMPORAL_NAMESPACE", "")
	cfg := &config.Config{}
	cfg.Temporal.Address, cfg.Temporal.Namespace = "127.0.0.1:7233", "shop"
	opts, err := Options(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Namespace != "shop" || opts.HostPort != "127.0.0.1:7233" || cfg.Temporal.Namespace != "shop" {
		t.Errorf("options %s/%s, cfg %+v", opts.HostPort, opts.Namespace, cfg.Temporal)
	}
}
