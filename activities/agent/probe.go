package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mageflow/mageflow/internal/host/hostops"
	"github.com/mageflow/mageflow/internal/host/magento"
)

func (h *HostActivities) client() *http.Client {
	if h.HTTP != nil {
		return h.HTTP
	}
	return &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		// A redirect is an answer: following it would leave the host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func joinURL(base, p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return strings.TrimRight(base, "/") + p
}

// envHost is the environment URL's host, sent as Host header when talking
// to a host directly so nginx picks the right server block.
func envHost(c *resolvedTarget) string {
	if c.env == nil || c.env.URL == "" {
		return ""
	}
	if u, err := url.Parse(c.env.URL); err == nil {
		return u.Host
	}
	return ""
}

type probe struct {
	status int
	body   string
	err    error
}

func (h *HostActivities) get(ctx context.Context, timeout time.Duration, u, host string, hdr map[string]string, bodyLimit int64) probe {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return probe{err: err}
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("User-Agent", "mageflow-agent")
	req.Header.Set("Cache-Control", "no-cache")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.client().Do(req)
	if err != nil {
		return probe{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return probe{status: resp.StatusCode, body: string(b)}
}

// Warm requests the warm-up paths on this host directly (Host header: the
// environment's host), so the first visitor does not pay for cold caches.
// Any path not answering below 400 is reported in the error.
func (h *HostActivities) Warm(ctx context.Context, in WarmInput) error {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return err
	}
	if c.host.URL == "" {
		return nonRetryable(ErrConfig, "hosts.%s.url is not set: the agent needs it to warm and health-check this host", h.Host)
	}
	timeout := h.WarmTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	var hdr map[string]string
	if in.BypassMaintain && c.host.Nginx.MaintenanceBypass != "" {
		v, err := h.Secrets.Read(c.host.Nginx.MaintenanceBypass)
		if err != nil {
			return nonRetryable(ErrConfig, "hosts.%s.nginx.maintenance_bypass: %v", h.Host, err)
		}
		hdr = map[string]string{MaintenanceBypassHeader: string(v)}
	}
	var done atomic.Int64
	stop := h.heartbeatWhile(ctx, func() any { return HostProgress{Step: "warm", Bytes: done.Load(), Total: int64(len(in.Paths))} })
	defer stop()
	var failed []string
	for _, p := range in.Paths {
		r := h.get(ctx, timeout, joinURL(c.host.URL, p), envHost(c), hdr, 0)
		done.Add(1)
		switch {
		case r.err != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", p, r.err))
		case r.status >= 400:
			failed = append(failed, fmt.Sprintf("%s: HTTP %d", p, r.status))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("warm-up of %s: %d of %d paths failed: %s", c.host.URL, len(failed), len(in.Paths), strings.Join(failed, "; "))
	}
	return nil
}

// Health checks the paths answer 200 and serve the expected release.
// Failures are returned, not raised: the workflow decides between rolling
// back and waiting.
func (h *HostActivities) Health(ctx context.Context, in HealthInput) (*HealthResult, error) {
	c, err := h.resolve(in.HostTarget)
	if err != nil {
		return nil, err
	}
	base, hostHeader := in.BaseURL, ""
	if base == "" {
		if c.host.URL == "" {
			return nil, nonRetryable(ErrConfig, "hosts.%s.url is not set: the agent needs it to health-check this host", h.Host)
		}
		base, hostHeader = c.host.URL, envHost(c)
	}
	hdr := map[string]string{}
	var secret string
	if in.BypassMaintain {
		ref := c.host.Nginx.MaintenanceBypass
		if ref == "" {
			return nil, nonRetryable(ErrConfig, "hosts.%s.nginx.maintenance_bypass is not set, so health checks cannot pass the maintenance page; set it to a secret reference (the same the nginx config uses)", h.Host)
		}
		v, err := h.Secrets.Read(ref)
		if err != nil {
			return nil, nonRetryable(ErrConfig, "hosts.%s.nginx.maintenance_bypass: %v", h.Host, err)
		}
		secret = string(v)
		hdr[MaintenanceBypassHeader] = secret
	}
	timeout := h.HealthTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	paths := in.Paths
	if len(paths) == 0 {
		paths = []string{"/"}
	}
	res := &HealthResult{}
	fail := func(format string, args ...any) {
		res.Failures = append(res.Failures, magento.Redact(fmt.Sprintf(format, args...), secret))
	}
	for _, p := range paths {
		r := h.get(ctx, timeout, joinURL(base, p), hostHeader, hdr, 0)
		switch {
		case r.err != nil:
			fail("GET %s: %v", joinURL(base, p), r.err)
		case r.status != http.StatusOK:
			fail("GET %s: HTTP %d, want 200", joinURL(base, p), r.status)
		}
	}
	if in.ExpectRelease != "" {
		u := joinURL(base, "/"+hostops.ReleaseMarker)
		r := h.get(ctx, timeout, u, hostHeader, hdr, 256)
		switch {
		case r.err != nil:
			fail("GET %s: %v", u, r.err)
		case r.status != http.StatusOK:
			fail("GET %s: HTTP %d, want 200 with %q", u, r.status, in.ExpectRelease)
		case strings.TrimSpace(r.body) != in.ExpectRelease:
			fail("%s serves release %q, want %q", base, strings.TrimSpace(r.body), in.ExpectRelease)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, nil
}
