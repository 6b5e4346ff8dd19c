package cluster

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"text/template"
)

// Service is one Temporal service process and its ports.
type Service struct {
	Name       string // frontend, history, matching, worker
	GRPC       int
	Membership int
	HTTP       int // frontend only
	Metrics    int // Prometheus; each process needs its own
}

// Services are the four Temporal services in start order, ports derived
// from the frontend's as Temporal's own defaults do (7233 → history 7234,
// matching 7235, worker 7239; membership 300 lower; metrics from base).
func Services(frontend, metricsBase int) []Service {
	svc := func(name string, grpc, i int) Service {
		return Service{Name: name, GRPC: grpc, Membership: grpc - 300, Metrics: metricsBase + i}
	}
	fe := svc("frontend", frontend, 0)
	fe.HTTP = frontend + 10
	return []Service{
		svc("history", frontend+1, 1),
		svc("matching", frontend+2, 2),
		fe,
		svc("worker", frontend+6, 3),
	}
}

// serverConfig is the data of one service's config file.
type serverConfig struct {
	IP            string
	PGPort        int
	Password      string
	Shards        int
	MetricsListen string
	Services      []Service
	Frontend      string
	DynamicConfig string
}

// The v1.29.1 server config. Every process gets the whole services: map
// (they find each other through the database's membership table) but its
// own metrics port. Pools: 4 processes × (20 + 10) stay under
// pgMaxConnections.
var serverTemplate = template.Must(template.New("server").Parse(`# Written by mageflow cluster; rewritten on every start.
log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: {{.Shards}}
  datastores:
    default:
      sql:
        # pgx caches prepared statements per connection: PostgreSQL parses
        # and plans each statement once, not on every call (lib/pq's
        # postgres12 does); a third less PostgreSQL CPU in benchscale.
        pluginName: postgres12_pgx
        databaseName: temporal
        connectAddr: "{{.IP}}:{{.PGPort}}"
        connectProtocol: tcp
        user: temporal
        password: "{{.Password}}"
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    visibility:
      sql:
        pluginName: postgres12_pgx
        databaseName: temporal_visibility
        connectAddr: "{{.IP}}:{{.PGPort}}"
        connectProtocol: tcp
        user: temporal
        password: "{{.Password}}"
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "{{.IP}}"
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: "{{.MetricsListen}}"
services:
{{- range .Services}}
  {{.Name}}:
    rpc:
      grpcPort: {{.GRPC}}
      membershipPort: {{.Membership}}
      bindOnIP: "{{$.IP}}"
{{- if .HTTP}}
      httpPort: {{.HTTP}}
{{- end}}
{{- end}}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "{{.Frontend}}"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "{{.DynamicConfig}}"
  pollInterval: 10s
`))

// dynamicConfig: the persistence QPS raised for bursts, and one partition
// per task queue instead of four: partitions spread a queue's load over
// matching hosts, and this cluster has one, with a handful of pollers per
// queue. With four, a burst of new workflows waited seconds for their first
// workflow task (benchscale, 40 deploys: p50 6.8 s with 4 partitions, 4.3 s
// with one; docs/benchmarks.md).
//
// Not system.forceSearchAttributesCacheRefreshOnRead, which the dev server
// sets: it makes every search-attribute lookup (each visibility record,
// each start and upsert validated) read the cluster metadata row again,
// one at a time behind a mutex; with SQL visibility that map is the fixed
// set of pre-allocated columns, and a namespace's custom attributes are
// aliases in its namespace record, which it does not cache.
const dynamicConfig = `# Written by mageflow cluster.
frontend.persistenceMaxQPS:
  - value: 10000
history.persistenceMaxQPS:
  - value: 45000
matching.numTaskqueueReadPartitions:
  - value: 1
matching.numTaskqueueWritePartitions:
  - value: 1
`

// renderServerConfig returns the config file of service svc.
func renderServerConfig(o *Options, svc Service, password, dynamicPath string) ([]byte, error) {
	var b bytes.Buffer
	err := serverTemplate.Execute(&b, serverConfig{
		IP: o.IP, PGPort: o.Ports.Postgres, Password: password, Shards: o.Shards,
		MetricsListen: net.JoinHostPort(o.IP, strconv.Itoa(svc.Metrics)),
		Services:      Services(o.Ports.Frontend, o.Ports.Metrics),
		Frontend:      net.JoinHostPort(o.IP, strconv.Itoa(o.Ports.Frontend)),
		DynamicConfig: dynamicPath,
	})
	if err != nil {
		return nil, fmt.Errorf("render %s config: %w", svc.Name, err)
	}
	return b.Bytes(), nil
}

// uiConfig is the standalone Web UI's config: the cluster's frontend, the
// namespace shown first, and mageflow's codec endpoint (payloads decode
// for an operator logged in to the dashboard, hence credentials).
var uiTemplate = template.Must(template.New("ui").Parse(`# Written by mageflow cluster.
temporalGrpcAddress: "{{.Frontend}}"
host: "{{.IP}}"
port: {{.Port}}
enableUi: true
defaultNamespace: "{{.Namespace}}"
refreshInterval: 1m
notifyOnNewVersion: false
cors:
  cookieInsecure: true
codec:
  endpoint: "{{.Codec}}"
  includeCredentials: {{if .Codec}}true{{else}}false{{end}}
`))

func renderUIConfig(o *Options) ([]byte, error) {
	ns := "default"
	if len(o.Namespaces) > 0 {
		ns = o.Namespaces[0]
	}
	var b bytes.Buffer
	err := uiTemplate.Execute(&b, map[string]any{
		"Frontend": net.JoinHostPort(o.IP, strconv.Itoa(o.Ports.Frontend)), "IP": o.IP, "Port": o.Ports.UI,
		"Namespace": ns, "Codec": o.CodecEndpoint,
	})
	return b.Bytes(), err
}
