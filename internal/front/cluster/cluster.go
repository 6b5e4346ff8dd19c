// Package cluster runs Temporal as a real cluster on this machine for
// `mageflow cluster` (make run-cluster, make test-cluster): PostgreSQL 15
// under <dir>/pg, the schema set up and migrated with temporal-sql-tool,
// the frontend, history, matching and worker services as separate
// processes that find each other through the database, the namespaces
// with mageflow's search attributes, and the standalone Web UI with the
// codec endpoint. Everything listens on loopback; every process logs to
// <dir>/log/<name>.log; Stop ends them in reverse order. A second run
// reuses the data directory.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
)

// Ports are the cluster's loopback ports.
type Ports struct {
	Postgres int
	Frontend int // history, matching and worker follow it (Services)
	Metrics  int // the first of four Prometheus ports
	UI       int
}

// Options configure a cluster.
type Options struct {
	Dir           string // data, configs and logs (./var/cluster)
	Bin           string // temporal-server, temporal-sql-tool, temporal-ui-server
	PGBin         string // PostgreSQL 15's binaries
	PGUser        string // system user PostgreSQL runs as when we are root
	IP            string
	Ports         Ports
	Shards        int      // numHistoryShards: fixed at the first start
	Namespaces    []string // registered with mageflow's search attributes
	CodecEndpoint string   // the Web UI's codec endpoint ("" for none)
	NoUI          bool
	// S3Port, when set, runs the SeaweedFS S3 server (Options.Bin/weed,
	// data in <dir>/s3) on it with S3Bucket created: see s3.go.
	S3Port   int
	S3Bucket string
	Log      io.Writer // progress lines
}

// Defaults returns the options `mageflow cluster` starts from.
func Defaults() Options {
	return Options{
		Dir: "./var/cluster", Bin: "./bin", PGBin: "/usr/lib/postgresql/15/bin", PGUser: "postgres",
		IP: "127.0.0.1", Ports: Ports{Postgres: 5433, Frontend: 7233, Metrics: 8001, UI: 8233}, Shards: 4,
		Namespaces: []string{"default"},
	}
}

// Cluster is a running cluster.
type Cluster struct {
	opts     Options
	mu       sync.Mutex
	procs    []*Proc // in start order
	restarts map[string][]time.Time
	stopped  bool
	password string
	pg       *postgres
	// Frontend is the gRPC address clients dial.
	Frontend string
	// UIURL is the Web UI's address ("" with NoUI).
	UIURL string
	// S3 is the S3 server (nil without Options.S3Port).
	S3 *S3Server
}

var errStopped = errors.New("the cluster is stopping")

// Binaries that must exist under Options.Bin.
var binaries = []string{"temporal-server", "temporal-sql-tool", "temporal-ui-server", "weed"}

// Start brings the whole cluster up and returns once the namespaces answer
// with their search attributes and the UI serves. On error it stops what it
// started.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := o.absolute(); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	c = &Cluster{opts: o, Frontend: net.JoinHostPort(o.IP, strconv.Itoa(o.Ports.Frontend))}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	if err := c.startPostgres(ctx); err != nil {
		return c, err
	}
	if err := c.startS3(); err != nil {
		return c, err
	}
	if err := c.migrate(ctx); err != nil {
		return c, err
	}
	if err := c.startServices(ctx); err != nil {
		return c, err
	}
	if !o.NoUI {
		if err := c.startUI(ctx); err != nil {
			return c, err
		}
	}
	return c, c.waitS3(ctx)
}

// absolute makes the paths absolute: children run in other directories.
func (o *Options) absolute() error {
	for _, p := range []*string{&o.Dir, &o.Bin, &o.PGBin} {
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = a
	}
	return nil
}

// check fails with advice when a binary is missing or a port is taken.
func (o *Options) check() error {
	for _, b := range binaries {
		if b == "temporal-ui-server" && o.NoUI || b == "weed" && o.S3Port == 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join(o.Bin, b)); err != nil {
			return fmt.Errorf("%s is missing: run `make run-cluster` (builds it into ./bin) or pass --bin", filepath.Join(o.Bin, b))
		}
	}
	if _, err := os.Stat(filepath.Join(o.PGBin, "postgres")); err != nil {
		return fmt.Errorf("PostgreSQL 15 is not installed at %s: `make deps-cluster` installs postgresql-15", o.PGBin)
	}
	ports := []int{o.Ports.Postgres}
	for _, s := range Services(o.Ports.Frontend, o.Ports.Metrics) {
		ports = append(ports, s.GRPC, s.Membership, s.Metrics)
		if s.HTTP != 0 {
			ports = append(ports, s.HTTP)
		}
	}
	if !o.NoUI {
		ports = append(ports, o.Ports.UI)
	}
	if o.S3Port != 0 {
		ports = append(ports, DefaultS3Ports(o.S3Port).all()...)
	}
	for _, p := range ports {
		addr := net.JoinHostPort(o.IP, strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("port %s is taken (%v): is another cluster running? stop it, or see `ss -ltnp | grep :%d`", addr, err, p)
		}
		ln.Close()
	}
	return nil
}

func (c *Cluster) logDir() string { return filepath.Join(c.opts.Dir, "log") }

func (c *Cluster) say(format string, a ...any) { fmt.Fprintf(c.opts.Log, format+"\n", a...) }

func (c *Cluster) startPostgres(ctx context.Context) error {
	pg, err := newPostgres(&c.opts)
	if err != nil {
		return err
	}
	c.pg = pg
	if err := os.MkdirAll(c.opts.Dir, 0o755); err != nil {
		return err
	}
	if c.password, err = pg.password(); err != nil {
		return err
	}
	created, err := pg.initialize(c.password)
	if err != nil {
		return err
	}
	if created {
		c.say("cluster: initialized PostgreSQL in %s", pg.dataDir)
	}
	if _, err := c.startPostgresProc(ctx, nil); err != nil {
		return err
	}
	c.say("cluster: PostgreSQL 15 on %s:%d (data %s)", c.opts.IP, c.opts.Ports.Postgres, pg.dataDir)
	return pg.createDatabases(ctx, c.password)
}

// migrate sets up the schema version tables and applies every versioned
// schema step not applied yet (both idempotent), from the schema embedded
// in temporal-sql-tool, which matches the server's version.
func (c *Cluster) migrate(ctx context.Context) error {
	start := time.Now()
	for _, db := range Databases {
		name := "temporal"
		if db == "temporal_visibility" {
			name = "visibility"
		}
		for _, args := range [][]string{{"setup-schema", "-v", "0.0"}, {"update-schema", "--schema-name", "postgresql/v12/" + name}} {
			cmd := exec.CommandContext(ctx, filepath.Join(c.opts.Bin, "temporal-sql-tool"), args...)
			cmd.Env = append(os.Environ(), "SQL_PLUGIN=postgres12", "SQL_HOST="+c.opts.IP, "SQL_PORT="+strconv.Itoa(c.opts.Ports.Postgres),
				"SQL_USER="+pgRole, "SQL_PASSWORD="+c.password, "SQL_DATABASE="+db)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("temporal-sql-tool %s on %s: %w\n%s", args[0], db, err, out)
			}
		}
	}
	c.say("cluster: schema of %v up to date (%s)", Databases, time.Since(start).Round(time.Millisecond))
	return nil
}

// startServices writes each service's config and starts the four
// processes, then waits for the frontend and registers the namespaces.
func (c *Cluster) startServices(ctx context.Context) error {
	cfgDir := filepath.Join(c.opts.Dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return err
	}
	dyn := filepath.Join(cfgDir, "dynamicconfig.yaml")
	if err := writeFileAtomic(dyn, []byte(dynamicConfig), 0o644); err != nil {
		return err
	}
	start := time.Now()
	var started []*Proc
	for _, svc := range Services(c.opts.Ports.Frontend, c.opts.Ports.Metrics) {
		b, err := renderServerConfig(&c.opts, svc, c.password, dyn)
		if err != nil {
			return err
		}
		// The config holds the database password: private to us.
		if err := writeFileAtomic(filepath.Join(cfgDir, svc.Name+".yaml"), b, 0o600); err != nil {
			return err
		}
		p, err := c.startService(svc.Name, nil)
		if err != nil {
			return err
		}
		started = append(started, p)
		if len(started) == 1 {
			// On a fresh database every service would write the cluster
			// metadata at once and all but one fail: the first writes it.
			if err := c.waitClusterMetadata(ctx, exited(started)); err != nil {
				return err
			}
		}
	}
	cl, err := waitHealthy(ctx, c.Frontend, 2*time.Minute, exited(started))
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, ns := range c.opts.Namespaces {
		if err := RegisterNamespace(ctx, cl, ns); err != nil {
			return err
		}
	}
	c.say("cluster: Temporal frontend %s, history, matching and worker up; namespaces %v ready (%s)", c.Frontend, c.opts.Namespaces, time.Since(start).Round(time.Millisecond))
	return nil
}

// exited returns a check that fails when one of procs has exited.
func exited(procs []*Proc) func() error {
	return func() error {
		for _, p := range procs {
			if p.Exited() {
				return fmt.Errorf("%s exited during start-up (%v): see its log, %s.log", p.Name, p.Err(), p.Name)
			}
		}
		return nil
	}
}

// waitClusterMetadata waits until the cluster's metadata row exists.
func (c *Cluster) waitClusterMetadata(ctx context.Context, exited func() error) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		n, err := c.pg.query(ctx, c.password, "temporal", "SELECT count(*) FROM cluster_metadata_info")
		if err == nil && n != "0" {
			return nil
		}
		if e := exited(); e != nil {
			return e
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no cluster metadata after 90s (%v): see %s", err, c.logDir())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// startService starts one Temporal service process named temporal-<name>
// (in old's place when it replaces one) and writes its pid to
// <dir>/run/temporal-<name>.pid (fault tests).
func (c *Cluster) startService(name string, old *Proc) (*Proc, error) {
	cmd := exec.Command(filepath.Join(c.opts.Bin, "temporal-server"), "--root", c.opts.Dir, "--config", "config",
		"--env", name, "--allow-no-auth", "start", "--service", name)
	cmd.Dir = c.opts.Dir
	p, err := StartProc("temporal-"+name, c.logDir(), cmd)
	if err != nil {
		return nil, err
	}
	if err := c.adopt(p, old); err != nil {
		return nil, errors.Join(err, p.Stop(stopGrace))
	}
	return p, c.writePid(p)
}

// startPostgresProc starts PostgreSQL (in old's place when it replaces
// one), waits until it answers and writes its pid file.
func (c *Cluster) startPostgresProc(ctx context.Context, old *Proc) (*Proc, error) {
	p, err := c.pg.start(ctx, c.password)
	if err != nil {
		return nil, err
	}
	if err := c.adopt(p, old); err != nil {
		return nil, errors.Join(err, p.Stop(stopGrace))
	}
	return p, c.writePid(p)
}

// adopt records p as running, in old's place when it replaces one, so
// Stop still ends the processes in reverse start order (PostgreSQL last).
// After Stop it refuses: p is not in the list Stop went through.
func (c *Cluster) adopt(p, old *Proc) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errStopped
	}
	for i, q := range c.procs {
		if old != nil && q == old {
			c.procs[i] = p
			return nil
		}
	}
	c.procs = append(c.procs, p)
	return nil
}

// writePid records p's pid under <dir>/run.
func (c *Cluster) writePid(p *Proc) error {
	dir := filepath.Join(c.opts.Dir, "run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, p.Name+".pid"), []byte(strconv.Itoa(p.Pid())+"\n"), 0o644)
}

// PidFile is where the pid of process name (e.g. temporal-history) of the
// cluster in dir is recorded.
func PidFile(dir, name string) string { return filepath.Join(dir, "run", name+".pid") }

func (c *Cluster) startUI(ctx context.Context) error {
	dir := filepath.Join(c.opts.Dir, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := renderUIConfig(&c.opts)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "cluster.yaml"), b, 0o644); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.opts.Bin, "temporal-ui-server"), "--root", c.opts.Dir, "--config", "ui", "--env", "cluster", "start")
	cmd.Dir = c.opts.Dir
	p, err := StartProc("temporal-ui", c.logDir(), cmd)
	if err != nil {
		return err
	}
	if err := c.adopt(p, nil); err != nil {
		return errors.Join(err, p.Stop(stopGrace))
	}
	c.UIURL = "http://" + net.JoinHostPort(c.opts.IP, strconv.Itoa(c.opts.Ports.UI))
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(c.UIURL + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				c.say("cluster: Web UI on %s (codec endpoint %q)", c.UIURL, c.opts.CodecEndpoint)
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("the Web UI on %s is not serving (%v): see %s", c.UIURL, err, filepath.Join(c.logDir(), "temporal-ui.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Proc returns the running process called name (postgres, temporal-history,
// …), or nil.
func (c *Cluster) Proc(name string) *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.Name == name && !p.Exited() {
			return p
		}
	}
	return nil
}

// Restart limits: a service that dies more often than this is left down
// and Supervise returns.
const (
	restartLimit  = 5
	restartWindow = time.Minute
)

// Supervise watches the processes until ctx ends (nil). A Temporal service,
// PostgreSQL or the S3 server that exits is started again, as systemd's Restart=always
// would, at most restartLimit times a minute; the UI exiting is an error.
func (c *Cluster) Supervise(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for _, p := range c.exitedProcs() {
			if p.Name == "temporal-ui" {
				return fmt.Errorf("%s exited (%v): see %s", p.Name, p.Err(), filepath.Join(c.logDir(), p.Name+".log"))
			}
			if err := c.restart(ctx, p); err != nil {
				return err
			}
		}
	}
}

// exitedProcs are the processes that exited on their own.
func (c *Cluster) exitedProcs() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Proc
	for _, p := range c.procs {
		if p.Exited() {
			out = append(out, p)
		}
	}
	return out
}

// restart replaces the exited process old (PostgreSQL or a Temporal
// service) with a new one in its place.
func (c *Cluster) restart(ctx context.Context, old *Proc) error {
	now := time.Now()
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	if c.restarts == nil {
		c.restarts = map[string][]time.Time{}
	}
	var recent []time.Time
	for _, t := range c.restarts[old.Name] {
		if now.Sub(t) < restartWindow {
			recent = append(recent, t)
		}
	}
	c.restarts[old.Name] = append(recent, now)
	c.mu.Unlock()
	if len(recent) >= restartLimit {
		return fmt.Errorf("%s exited %d times within %s (last: %v): see %s", old.Name, len(recent)+1, restartWindow, old.Err(), filepath.Join(c.logDir(), old.Name+".log"))
	}
	c.say("cluster: %s exited (%v); restarting it", old.Name, old.Err())
	if old.Name == "postgres" {
		// Backends outlive a killed postmaster for a moment and hold its
		// shared memory: a new one refuses to start until they are gone.
		// Its own group (an archiver's children) is killed; the backends,
		// each in its own session, are waited for.
		if err := reapGroup(old, 10*time.Second); err != nil {
			return err
		}
		if err := c.pg.waitSharedMemoryFree(30 * time.Second); err != nil {
			return err
		}
		_, err := c.startPostgresProc(ctx, old)
		return err
	}
	if old.Name == s3ProcName {
		_, err := c.startS3Proc(old)
		return err
	}
	_, err := c.startService(strings.TrimPrefix(old.Name, "temporal-"), old)
	return err
}

// Stop ends every process in reverse start order (UI, services,
// PostgreSQL last, so the services flush their shards first).
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	procs := c.procs
	c.procs, c.stopped = nil, true
	c.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if c.S3 != nil {
		c.S3.RemoveSockets()
	}
	if err := os.RemoveAll(filepath.Join(c.opts.Dir, "run")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Client dials the frontend for namespace ns.
func (c *Cluster) Client(ns string) (client.Client, error) {
	return client.Dial(client.Options{HostPort: c.Frontend, Namespace: ns, Logger: nopLogger{}})
}
