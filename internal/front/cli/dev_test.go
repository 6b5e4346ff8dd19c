package cli

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/mageflow/mageflow/internal/platform/config"
)

func TestDevAddressesPointAtTheDevServerOnly(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "elsewhere:7233")
	t.Setenv("TEMPORAL_NAMESPACE", "prod")
	cfg := &config.Config{}
	cfg.Server.Listen, cfg.Server.PublicURL = "127.0.0.1:8080", "http://127.0.0.1:8080"
	devAddresses(cfg, "10.0.0.1", 7300, 8300, "")
	if cfg.Temporal.Address != "10.0.0.1:7300" || cfg.Temporal.UIURL != "http://10.0.0.1:8300" || cfg.Server.PublicURL != "http://127.0.0.1:8080" {
		t.Fatalf("temporal %+v, server %+v", cfg.Temporal, cfg.Server)
	}
	for _, k := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q is still set: the dev stack would talk to another server", k, v)
		}
	}
	devAddresses(cfg, "127.0.0.1", 7233, 8233, "127.0.0.1:9090")
	if cfg.Server.Listen != "127.0.0.1:9090" || cfg.Server.PublicURL != "http://127.0.0.1:9090" {
		t.Fatalf("--listen: server %+v", cfg.Server)
	}
}

func TestDevPrepareNamesTheBusyPortAndTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := &config.Config{}
	cfg.Server.Listen = ln.Addr().String()
	err = devPrepare(cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "mageflow HTTP server port "+cfg.Server.Listen+" is taken") || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("devPrepare with a busy --listen port = %v", err)
	}
}
