package magento

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeMagento is a bin/magento that stores config:set and
// config:sensitive:set in a JSON-lines "database" (config.db next to bin/)
// and stays alive a while, so a process scanner has time to look at it.
const fakeMagento = `#!/usr/bin/env php
<?php
$cmd = $argv[1] ?? '';
if ($cmd !== 'config:set' && $cmd !== 'config:sensitive:set') { fwrite(STDERR, "Command \"$cmd\" is not defined.\n"); exit(1); }
if (($argv[2] ?? '') !== '--') { echo "expected -- before the path\n"; exit(1); }
if ($argv[3] === 'fail/me') { echo "cannot save value {$argv[4]}\n"; exit(1); }
usleep(150000);
file_put_contents(dirname(__DIR__) . '/config.db', json_encode(['cmd' => $cmd, 'path' => $argv[3], 'value' => $argv[4]]) . "\n", FILE_APPEND);
echo "Value was saved.\n";
`

// procScanner reads every /proc/<pid>/cmdline and environ in a tight loop
// and records any that holds one of the needles. It also counts the php
// processes it saw, so a test can tell the scan really watched the commands.
type procScanner struct {
	needles [][]byte
	php     string
	mu      sync.Mutex
	hits    []string
	phpSeen atomic.Int64
}

func (s *procScanner) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		default:
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if e.Name()[0] < '0' || e.Name()[0] > '9' {
				continue
			}
			for _, f := range []string{"cmdline", "environ"} {
				b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
				if err != nil || len(b) == 0 {
					continue
				}
				if f == "cmdline" && bytes.HasPrefix(b, []byte(s.php+"\x00")) || bytes.Equal(b, []byte(s.php+"\x00")) {
					s.phpSeen.Add(1)
				}
				for _, n := range s.needles {
					if bytes.Contains(b, n) {
						s.mu.Lock()
						if len(s.hits) < 5 {
							s.hits = append(s.hits, "/proc/"+e.Name()+"/"+f+": "+strings.ReplaceAll(string(b), "\x00", " "))
						}
						s.mu.Unlock()
					}
				}
			}
		}
	}
}

// TestApplyConfigKeepsValuesOffCommandLines is the attack of a local user
// who watches /proc while a deploy applies config: no value of the config
// secret may ever appear in any process's command line or environment, and
// every value must still reach the store's config unchanged.
func TestApplyConfigKeepsValuesOffCommandLines(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		t.Fatal("php not found: install the Debian package php-cli")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/magento"), []byte(fakeMagento), 0o755); err != nil {
		t.Fatal(err)
	}
	settings := []Setting{
		{"payment/braintree/private_key", "PRIVKEY-7f3a9c1e5b"},
		{"web/secure/base_url", "https://shop.example.com/BASEURL-2d8e4a"},
		{"carriers/x/password", "--PASSWORD-9b1c 'quoted' \"dq\" $(id) ü"},
	}
	s := &procScanner{php: php}
	for _, st := range settings {
		s.needles = append(s.needles, []byte(strings.Fields(st.Value)[0]))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go s.run(stop, done)
	err = CLI{PHP: php, Dir: dir}.ApplyConfig(context.Background(), settings, []string{"payment/braintree/private_key"})
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if len(s.hits) > 0 {
		t.Fatalf("config values visible to every local user:\n%s", strings.Join(s.hits, "\n"))
	}
	if s.phpSeen.Load() == 0 {
		t.Fatal("the scanner never saw a php process: it proves nothing (make the fake bin/magento slower)")
	}

	b, err := os.ReadFile(filepath.Join(dir, "config.db"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(settings) {
		t.Fatalf("store got %d settings, want %d:\n%s", len(lines), len(settings), b)
	}
	for i, l := range lines {
		var got struct{ Cmd, Path, Value string }
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		want := "config:set"
		if i == 0 {
			want = "config:sensitive:set"
		}
		if got.Cmd != want || got.Path != settings[i].Path || got.Value != settings[i].Value {
			t.Errorf("store has %+v, want %s %s %q", got, want, settings[i].Path, settings[i].Value)
		}
	}

	// A failing command names the path, never the value.
	err = CLI{PHP: php, Dir: dir}.ApplyConfig(context.Background(), []Setting{{"fail/me", "FAILVALUE-5e2b"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "fail/me") || strings.Contains(err.Error(), "FAILVALUE") || !strings.Contains(err.Error(), "cannot save value [redacted]") {
		t.Fatalf("got %v", err)
	}
}
