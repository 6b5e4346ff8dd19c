package m1verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mageflow/mageflow/internal/m1/m1audit"
)

// response is one answer, bounded.
type response struct {
	method    string
	url       string // as sent (BaseURL + raw path)
	host      string
	status    int // 0 when no answer came
	header    http.Header
	body      []byte
	truncated bool
	err       error
}

// evidence turns a response into report evidence. Every request made is
// exactly one HTTPEvidence in exactly one result, so Requests(results) is
// the number of requests.
func (r response) evidence(leaked bool, note string) m1audit.HTTPEvidence {
	ev := m1audit.HTTPEvidence{Method: r.method, URL: r.url, Host: r.host, Status: r.status, Leaked: leaked}
	var parts []string
	if note != "" {
		parts = append(parts, note)
	}
	if r.err != nil {
		parts = append(parts, "no answer: "+r.err.Error())
	} else {
		sum := sha256.Sum256(r.body)
		b := fmt.Sprintf("body sha256:%s, %d bytes", hex.EncodeToString(sum[:6]), len(r.body))
		if r.truncated {
			b += " (truncated)"
		}
		parts = append(parts, b)
	}
	ev.Note = strings.Join(parts, "; ")
	return ev
}

// fetcher sends every request to BaseURL's address with a chosen Host
// header, bounded in concurrency, time and body size.
type fetcher struct {
	base     *url.URL
	sem      chan struct{}
	timeout  time.Duration
	maxBody  int64
	count    atomic.Int64
	mu       sync.Mutex
	clients  map[string]*http.Client
	dialAddr string
}

func newFetcher(base *url.URL, concurrency int, timeout time.Duration, maxBody int64) *fetcher {
	addr := base.Host
	if base.Port() == "" {
		if base.Scheme == "https" {
			addr = net.JoinHostPort(base.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(base.Hostname(), "80")
		}
	}
	return &fetcher{base: base, sem: make(chan struct{}, concurrency), timeout: timeout, maxBody: maxBody,
		clients: map[string]*http.Client{}, dialAddr: addr}
}

// client returns the client for one Host: the TLS server name (SNI) must be
// the vhost's, while the connection goes to the origin address.
func (f *fetcher) client(host string) *http.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[host]; ok {
		return c
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	d := &net.Dialer{Timeout: f.timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, f.dialAddr)
		},
		TLSClientConfig:     &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: cap(f.sem),
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true, // bodies are searched as sent
	}
	c := &http.Client{
		Transport: tr,
		// Redirects are followed by the caller, which decides whether the
		// target is still the same origin.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	f.clients[host] = c
	return c
}

func (f *fetcher) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		c.CloseIdleConnections()
	}
}

// do sends one request. rawPath is sent as written (percent-encoding, "//",
// dot segments are not normalised). The error in the response is for the
// report; do returns a Go error only when ctx itself is done.
func (f *fetcher) do(ctx context.Context, method, host, rawPath string, body []byte, header http.Header) (response, error) {
	r := response{method: method, host: host, url: f.base.Scheme + "://" + f.base.Host + rawPath}
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return r, ctx.Err()
	}
	defer func() { <-f.sem }()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	u, err := url.Parse(r.url)
	if err != nil {
		r.err = fmt.Errorf("bad URL: %w", err)
		return r, nil
	}
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u.String(), rd)
	if err != nil {
		r.err = err
		return r, nil
	}
	req.URL = u // keep the raw spelling; String() round trips may normalise
	req.Host = host
	req.Header.Set("User-Agent", "mageflow-m1verify/1 (+hardening verification)")
	for k, vs := range header {
		req.Header[k] = vs
	}
	f.count.Add(1)
	resp, err := f.client(host).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.err = trimURLError(err)
		return r, nil
	}
	defer resp.Body.Close()
	r.status, r.header = resp.StatusCode, resp.Header
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBody+1))
	if int64(len(data)) > f.maxBody {
		data, r.truncated = data[:f.maxBody], true
	}
	r.body = data
	if err != nil && !r.truncated {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.err = fmt.Errorf("reading body: %w", trimURLError(err))
	}
	return r, nil
}

// trimURLError drops url.Error's repetition of method and URL, which the
// evidence already holds.
func trimURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// sameOrigin resolves a redirect's Location against the request and says
// whether it stays on the vhost (same hostname, same scheme as BaseURL); it
// returns the path and query to request next.
func (f *fetcher) sameOrigin(host, fromPath, location string) (next string, ok bool, err error) {
	from, err := url.Parse(f.base.Scheme + "://" + host + fromPath)
	if err != nil {
		return "", false, err
	}
	loc, err := url.Parse(location)
	if err != nil {
		return "", false, fmt.Errorf("bad Location %q: %w", location, err)
	}
	to := from.ResolveReference(loc)
	wantHost := host
	if h, _, e := net.SplitHostPort(host); e == nil {
		wantHost = h
	}
	if !strings.EqualFold(to.Hostname(), wantHost) || to.Scheme != f.base.Scheme {
		return to.String(), false, nil
	}
	next = to.EscapedPath()
	if next == "" {
		next = "/"
	}
	if to.RawQuery != "" {
		next += "?" + to.RawQuery
	}
	return next, true, nil
}
