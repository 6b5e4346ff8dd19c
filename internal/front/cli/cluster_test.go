package cli

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestClusterFlagsDefaults(t *testing.T) {
	_, o, err := parseCluster(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Dir != "./var/cluster" || o.Bin != "./bin" || o.PGBin != "/usr/lib/postgresql/15/bin" || o.PGUser != "postgres" || o.IP != "127.0.0.1" {
		t.Errorf("paths and user: %+v", o.Options)
	}
	if o.Ports.Postgres != 5433 || o.Ports.Frontend != 7233 || o.Ports.Metrics != 8001 || o.Ports.UI != 8233 || o.Shards != 4 {
		t.Errorf("ports: %+v shards %d", o.Ports, o.Shards)
	}
	if o.workers != 2 || !o.demo || o.temporalOnly || o.NoUI || o.exitAfter || o.workerBin != "./bin/mageflow-worker" || o.agentBin != "./bin/mageflow-agent" {
		t.Errorf("stack: %+v", o)
	}
}

func TestClusterFlagsParse(t *testing.T) {
	_, o, err := parseCluster([]string{"--temporal-only", "--no-ui", "--dir", "/tmp/c", "--pg-port", "5434", "--temporal-port", "7333",
		"--metrics-port", "8011", "--ui-port", "8333", "--namespace", "it-1", "--namespace", "it-2", "--ready-file", "/tmp/c/ready",
		"--workers", "3", "--demo=false", "--shards", "8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !o.temporalOnly || !o.NoUI || o.Dir != "/tmp/c" || o.readyFile != "/tmp/c/ready" || o.workers != 3 || o.demo || o.Shards != 8 {
		t.Errorf("parsed %+v", o)
	}
	if o.Ports.Postgres != 5434 || o.Ports.Frontend != 7333 || o.Ports.Metrics != 8011 || o.Ports.UI != 8333 {
		t.Errorf("ports %+v", o.Ports)
	}
	if !reflect.DeepEqual([]string(o.namespaces), []string{"it-1", "it-2"}) {
		t.Errorf("namespaces %v", o.namespaces)
	}
}

func TestClusterFlagsRefuse(t *testing.T) {
	for _, args := range [][]string{{"--workers", "0"}, {"--pg-port", "x"}, {"extra"}, {"--no-such-flag"}} {
		_, _, err := parseCluster(args, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if _, _, err := parseCluster([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestDedupe(t *testing.T) {
	got := dedupe([]string{"default", "", "it-1", "default", "it-1", "it-2"})
	if !reflect.DeepEqual(got, []string{"default", "it-1", "it-2"}) {
		t.Errorf("dedupe = %v", got)
	}
}
