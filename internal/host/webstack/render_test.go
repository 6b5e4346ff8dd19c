package webstack

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mageflow/mageflow/internal/testkit/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the renderers")

// golden compares got with testdata/name; -update rewrites the file.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/host/webstack -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendered config (go test -update rewrites it after review):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestRenderHostGolden(t *testing.T) {
	full, err := RenderHost(HostSite{
		Host:             "web1",
		App:              "shop",
		Root:             "/srv/mageflow",
		Listen:           "127.0.0.1:8081",
		ServerName:       "shop.example.com",
		FastCGI:          "/run/php/shop.sock",
		MaintenanceAllow: []string{"127.0.0.1", "10.0.0.0/8"},
		BypassSecret:     "0123456789abcdef",
		TrustedProxies:   []string{"10.0.0.10"},
		RetryAfter:       2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "host_full.golden", full)

	minimal, err := RenderHost(HostSite{Host: "local", App: "shop", Root: "/var/mageflow", Listen: "8081", FastCGI: "127.0.0.1:9000"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "host_minimal.golden", minimal)
	// Without allow list or secret there are no geo blocks nor their maps
	// (only the release root's) and the maintenance condition compares
	// constants for those parts.
	if n := strings.Count(minimal, "\nmap "); n != 1 || !strings.Contains(minimal, "\nmap $host $mageflow_release_root_") {
		t.Errorf("minimal site renders %d maps, want only the release root's", n)
	}
	for _, s := range []string{"geo ", "$http_x_mageflow_bypass", "set_real_ip_from"} {
		if strings.Contains(minimal, s) {
			t.Errorf("minimal site renders %q", s)
		}
	}
	if !strings.Contains(minimal, `"${mageflow_maintenance}:0:0"`) || !strings.Contains(minimal, "Retry-After 30 always") {
		t.Errorf("minimal site: maintenance condition or default Retry-After missing:\n%s", minimal)
	}
}

func TestRenderBalancerGolden(t *testing.T) {
	got, err := RenderBalancer(Balancer{Name: "shop-prod", Listen: "0.0.0.0:80", ServerName: "shop.example.com", Upstreams: []string{"10.0.0.11:8081", "10.0.0.12:8081", "10.0.0.13:8081"}, Tries: 2, Keepalive: 32})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "balancer.golden", got)

	def, err := RenderBalancer(Balancer{Name: "b", Listen: "8080", Upstreams: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def, "proxy_next_upstream_tries 3;") || !strings.Contains(def, "keepalive 16;") {
		t.Errorf("defaults: want tries = number of upstreams and keepalive 16:\n%s", def)
	}
	if strings.Contains(def, "http_503") {
		t.Error("balancer retries 503: maintenance would be retried away")
	}
}

func TestRenderPoolGolden(t *testing.T) {
	got, err := RenderPool(Pool{
		Name:                  "shop",
		Dir:                   "/run/mageflow",
		ErrorLog:              "/var/log/mageflow/php-fpm.log",
		User:                  "magento",
		Group:                 "magento",
		SocketGroup:           "www-data",
		MaxChildren:           8,
		ProcessControlTimeout: 30 * time.Second,
		Env:                   map[string]string{"MAGE_MODE": "production", "APP_ENV": "prod"},
		AdminValues:           map[string]string{"opcache.validate_timestamps": "0", "memory_limit": "756M"},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "pool.golden", got)

	static, err := RenderPool(Pool{Dir: "/tmp/x", User: "nobody", Group: "nogroup", PM: "static"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"process_control_timeout = 10s", "pm = static", "pm.max_children = 4", "listen = /tmp/x/php-fpm.sock", "pid = /tmp/x/php-fpm.pid", "clear_env = no", "catch_workers_output = yes"} {
		if !strings.Contains(static, want) {
			t.Errorf("default pool lacks %q:\n%s", want, static)
		}
	}
	if strings.Contains(static, "pm.start_servers") {
		t.Error("static pool renders dynamic settings")
	}
}

func TestRenderRejects(t *testing.T) {
	ok := HostSite{Host: "web1", App: "shop", Root: "/srv", Listen: "8081", FastCGI: "/run/php.sock"}
	hostCases := map[string]struct {
		edit func(*HostSite)
		want string
	}{
		"host with space":  {func(s *HostSite) { s.Host = "web 1" }, "host name"},
		"relative root":    {func(s *HostSite) { s.Root = "srv" }, "absolute path"},
		"root with $":      {func(s *HostSite) { s.Root = "/srv/$x" }, "contains whitespace"},
		"root with ;":      {func(s *HostSite) { s.Root = "/srv;evil" }, "contains whitespace"},
		"listen":           {func(s *HostSite) { s.Listen = "localhost" }, "want 127.0.0.1:8081"},
		"fastcgi":          {func(s *HostSite) { s.FastCGI = "php.sock" }, "unix socket path"},
		"allow":            {func(s *HostSite) { s.MaintenanceAllow = []string{"office"} }, "neither an IP address nor a CIDR"},
		"proxy":            {func(s *HostSite) { s.TrustedProxies = []string{"10.0.0.0/33"} }, "neither an IP address nor a CIDR"},
		"short secret":     {func(s *HostSite) { s.BypassSecret = "abc" }, "at least 8 characters"},
		"secret quote":     {func(s *HostSite) { s.BypassSecret = `abcdefgh"` }, "at least 8 characters"},
		"secret regex":     {func(s *HostSite) { s.BypassSecret = "~abcdefgh" }, "at least 8 characters"},
		"secret keyword":   {func(s *HostSite) { s.BypassSecret = "hostnames" }, "at least 8 characters"},
		"retry subsecond":  {func(s *HostSite) { s.RetryAfter = time.Millisecond }, "whole seconds"},
		"server name code": {func(s *HostSite) { s.ServerName = "a;b" }, "server name"},
	}
	for name, c := range hostCases {
		s := ok
		c.edit(&s)
		if _, err := RenderHost(s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("RenderHost %s: err %v, want it to mention %q", name, err, c.want)
		}
	}
	if _, err := RenderHost(ok); err != nil {
		t.Fatalf("base case: %v", err)
	}
	if _, err := RenderBalancer(Balancer{Name: "b", Listen: "80"}); err == nil || !strings.Contains(err.Error(), "no upstreams") {
		t.Errorf("balancer without upstreams: %v", err)
	}
	if _, err := RenderBalancer(Balancer{Name: "b", Listen: "80", Upstreams: []string{"10.0.0.1"}}); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("balancer upstream without port: %v", err)
	}
	if _, err := RenderPool(Pool{}); err == nil || !strings.Contains(err.Error(), "Pool.Dir") {
		t.Errorf("pool without paths: %v", err)
	}
	if _, err := RenderPool(Pool{Dir: "/x", PM: "auto"}); err == nil || !strings.Contains(err.Error(), "static, dynamic or ondemand") {
		t.Errorf("pool pm: %v", err)
	}
	if _, err := RenderPool(Pool{Dir: "/x", ProcessControlTimeout: time.Millisecond}); err == nil || !strings.Contains(err.Error(), "process_control_timeout") {
		t.Errorf("pool timeout: %v", err)
	}
	if _, err := RenderPool(Pool{Dir: "/x", Env: map[string]string{"A": "x\ny"}}); err == nil {
		t.Error("pool env value with newline accepted")
	}
}

func TestListens(t *testing.T) {
	got := listens("server {\n    listen 127.0.0.1:8081;\n  listen 8082;\n}", "  listen [::1]:8083 ;\nlisten 127.0.0.1:8081;\n# listen 9;")
	want := []string{"127.0.0.1:8081", "127.0.0.1:8082", "[::1]:8083"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("listens = %v, want %v", got, want)
	}
}

func TestBinaryHint(t *testing.T) {
	_, err := findBinary("php-fpm: install php8.2-fpm (make deps)", "/nonexistent/php-fpm", "mageflow-no-such-binary")
	if err == nil || !strings.Contains(err.Error(), "install php8.2-fpm (make deps)") {
		t.Errorf("missing binary error = %v", err)
	}
}

// TestLongNamesStayWithinNginxLimits renders a site whose host, app and
// port make a long variable id and checks nginx accepts it.
func TestLongNamesStayWithinNginxLimits(t *testing.T) {
	conf, err := RenderHost(HostSite{Host: "web-frontend-01", App: "serialshop-enterprise", Root: t.TempDir(), Listen: "127.0.0.1:65001",
		FastCGI: "127.0.0.1:9000", BypassSecret: "0123456789abcdef", MaintenanceAllow: []string{"10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range regexp.MustCompile(`\$(mageflow_[a-z0-9_]+)`).FindAllStringSubmatch(conf, -1) {
		if len(v[1]) > 46 {
			t.Errorf("nginx variable %s is %d characters; nginx -t refuses names over ~46 with the default variables_hash_bucket_size", v[1], len(v[1]))
		}
	}
	bin, err := NginxBinary()
	testenv.ToolOrSkip(t, err)
	dir := t.TempDir()
	confs, files, err := splitSecrets([]string{conf})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSecrets(dir, files); err != nil {
		t.Fatal(err)
	}
	main := "pid " + dir + "/nginx.pid; error_log " + dir + "/error.log; events {} http { " + confs[0] + " }"
	if err := os.WriteFile(dir+"/nginx.conf", []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", dir+"/nginx.conf").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}
