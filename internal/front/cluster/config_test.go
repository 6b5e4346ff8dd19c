package cluster

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestServerConfigsDoNotCollide renders every service's config and checks
// what separate processes on one machine need: each its own metrics port,
// no port used twice, everything on the loopback address, the postgres12_pgx
// plugin for both stores.
func TestServerConfigsDoNotCollide(t *testing.T) {
	o := Defaults()
	seen := map[int]string{o.Ports.Postgres: "postgres", o.Ports.UI: "ui"}
	use := func(port int, what string) {
		if prev, ok := seen[port]; ok {
			t.Errorf("port %d used by %s and %s", port, prev, what)
		}
		seen[port] = what
	}
	for _, svc := range Services(o.Ports.Frontend, o.Ports.Metrics) {
		b, err := renderServerConfig(&o, svc, "s3cret", "/d/dynamicconfig.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Persistence struct {
				NumHistoryShards int `yaml:"numHistoryShards"`
				Datastores       map[string]struct {
					SQL struct {
						PluginName  string `yaml:"pluginName"`
						ConnectAddr string `yaml:"connectAddr"`
						Password    string `yaml:"password"`
					} `yaml:"sql"`
				}
			}
			Global struct {
				Metrics struct {
					Prometheus struct {
						ListenAddress string `yaml:"listenAddress"`
					}
				}
			}
			Services map[string]struct {
				RPC struct {
					GRPCPort       int    `yaml:"grpcPort"`
					MembershipPort int    `yaml:"membershipPort"`
					HTTPPort       int    `yaml:"httpPort"`
					BindOnIP       string `yaml:"bindOnIP"`
				} `yaml:"rpc"`
			}
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("%s config is not YAML: %v\n%s", svc.Name, err, b)
		}
		if want := net.JoinHostPort(o.IP, strconv.Itoa(svc.Metrics)); cfg.Global.Metrics.Prometheus.ListenAddress != want {
			t.Errorf("%s metrics on %q, want %q", svc.Name, cfg.Global.Metrics.Prometheus.ListenAddress, want)
		}
		use(svc.Metrics, svc.Name+" metrics")
		if cfg.Persistence.NumHistoryShards != o.Shards || len(cfg.Persistence.Datastores) != 2 {
			t.Errorf("%s persistence %+v", svc.Name, cfg.Persistence)
		}
		for name, ds := range cfg.Persistence.Datastores {
			if ds.SQL.PluginName != "postgres12_pgx" || ds.SQL.Password != "s3cret" || ds.SQL.ConnectAddr != "127.0.0.1:5433" {
				t.Errorf("%s datastore %s: %+v", svc.Name, name, ds.SQL)
			}
		}
		if len(cfg.Services) != 4 {
			t.Errorf("%s config lists %d services", svc.Name, len(cfg.Services))
		}
		if svc.Name != "frontend" {
			continue
		}
		for name, s := range cfg.Services {
			if s.RPC.BindOnIP != o.IP {
				t.Errorf("%s binds %q", name, s.RPC.BindOnIP)
			}
			use(s.RPC.GRPCPort, name+" grpc")
			use(s.RPC.MembershipPort, name+" membership")
			if s.RPC.HTTPPort != 0 {
				use(s.RPC.HTTPPort, name+" http")
			}
		}
	}
	if len(seen) != 2+4+4*2+1 {
		t.Errorf("ports %v", seen)
	}
}

func TestUIConfigWiresTheCodec(t *testing.T) {
	o := Defaults()
	o.Namespaces = []string{"shop"}
	o.CodecEndpoint = "http://127.0.0.1:8080/codec"
	b, err := renderUIConfig(&o)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		TemporalGrpcAddress string `yaml:"temporalGrpcAddress"`
		Port                int
		DefaultNamespace    string `yaml:"defaultNamespace"`
		Codec               struct {
			Endpoint           string
			IncludeCredentials bool `yaml:"includeCredentials"`
		}
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.TemporalGrpcAddress != "127.0.0.1:7233" || cfg.Port != 8233 || cfg.DefaultNamespace != "shop" ||
		cfg.Codec.Endpoint != o.CodecEndpoint || !cfg.Codec.IncludeCredentials {
		t.Errorf("UI config %+v\n%s", cfg, b)
	}
	if !strings.Contains(string(b), "enableUi: true") {
		t.Error("the UI is not enabled")
	}
}
