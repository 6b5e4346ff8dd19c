package webstack

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReloadOutlastsSilentClients is a client (a browser's preconnect, or
// someone who wants deploys to fail) holding connections to the store that
// send no request, or trickle a header a byte at a time: each keeps an old
// nginx worker, and the config it serves, alive after a reload. Reload must
// still finish (nginx drops such connections after headerTimeout), and the
// silent connections end instead of being served the old config later.
func TestReloadOutlastsSilentClients(t *testing.T) {
	requireStack(t)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "shop"), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	site := func(secret string) string {
		s, err := RenderHost(HostSite{Host: "h", App: "shop", Root: root, Listen: addr, FastCGI: "/nonexistent.sock", BypassSecret: secret})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	p, err := StartNginx(t.Context(), filepath.Join(t.TempDir(), "nginx"), site("first-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })

	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the trickler: one header byte a second, never done
		hdr := []byte("GET / HTTP/1.1\r\nHost: shop.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
		for _, b := range hdr {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			if _, err := conns[0].Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // accepted by the workers

	start := time.Now()
	if err := p.Reload(site("second-secret-0123456789")); err != nil {
		t.Fatalf("reload with silent clients connected: %v", err)
	}
	t.Logf("reload took %s with %d silent connections", time.Since(start).Round(time.Millisecond), len(conns))
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("silent connection %d is still open after the reload", i)
		}
	}
}
