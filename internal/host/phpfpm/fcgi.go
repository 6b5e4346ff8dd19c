package phpfpm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A minimal FastCGI client (the responder role of the FastCGI 1.0 spec):
// enough to run one PHP script in a pool and read its answer, and to ask
// the pool for FCGI_GET_VALUES as a liveness probe. It is written here
// rather than taken from a library because it is ~200 lines, the protocol
// has not changed since 1996, and the well-known Go clients either pull in
// an HTTP-proxy framework (gofast) or are unmaintained single-file copies
// without context support; the agent runs as root on production hosts, so
// fewer dependencies is worth more than saved lines.

const (
	fcgiVersion1     = 1
	typeBeginRequest = 1
	typeEndRequest   = 3
	typeParams       = 4
	typeStdin        = 5
	typeStdout       = 6
	typeStderr       = 7
	typeGetValues    = 9
	typeGetValuesRes = 10
	roleResponder    = 1
	maxContent       = 65535
)

type header struct {
	Version       uint8
	Type          uint8
	RequestID     uint16
	ContentLength uint16
	PaddingLength uint8
	Reserved      uint8
}

func writeRecord(w io.Writer, typ uint8, reqID uint16, content []byte) error {
	for {
		n := min(len(content), maxContent)
		pad := uint8((8 - n%8) % 8)
		h := header{fcgiVersion1, typ, reqID, uint16(n), pad, 0}
		var buf bytes.Buffer
		_ = binary.Write(&buf, binary.BigEndian, h)
		buf.Write(content[:n])
		buf.Write(make([]byte, pad))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		content = content[n:]
		if len(content) == 0 {
			return nil
		}
	}
}

func readRecord(r io.Reader) (header, []byte, error) {
	var h header
	if err := binary.Read(r, binary.BigEndian, &h); err != nil {
		return h, nil, err
	}
	if h.Version != fcgiVersion1 {
		return h, nil, fmt.Errorf("fastcgi: record version %d, want 1: is this a FastCGI socket?", h.Version)
	}
	b := make([]byte, int(h.ContentLength)+int(h.PaddingLength))
	if _, err := io.ReadFull(r, b); err != nil {
		return h, nil, err
	}
	return h, b[:h.ContentLength], nil
}

func appendLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

func encodePairs(m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b []byte
	for _, k := range keys {
		b = appendLen(b, len(k))
		b = appendLen(b, len(m[k]))
		b = append(b, k...)
		b = append(b, m[k]...)
	}
	return b
}

func decodePairs(b []byte) map[string]string {
	m := map[string]string{}
	readLen := func() (int, bool) {
		if len(b) == 0 {
			return 0, false
		}
		if b[0]&0x80 == 0 {
			n := int(b[0])
			b = b[1:]
			return n, true
		}
		if len(b) < 4 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint32(b) &^ (1 << 31))
		b = b[4:]
		return n, true
	}
	for len(b) > 0 {
		kl, ok1 := readLen()
		vl, ok2 := readLen()
		if !ok1 || !ok2 || kl+vl > len(b) {
			break
		}
		m[string(b[:kl])] = string(b[kl : kl+vl])
		b = b[kl+vl:]
	}
	return m
}

// Dial connects to a FastCGI address: a unix socket path (optionally
// "unix:" prefixed) or host:port.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	network, a := "tcp", addr
	if strings.HasPrefix(addr, "unix:") {
		network, a = "unix", strings.TrimPrefix(addr, "unix:")
	} else if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	var d net.Dialer
	return d.DialContext(ctx, network, a)
}

// Response is what a FastCGI responder returned.
type Response struct {
	// Status is the HTTP status from the Status header (200 when absent,
	// as a web server would assume).
	Status  int
	Header  textproto.MIMEHeader
	Body    []byte
	Stderr  string
	AppExit uint32
}

// Do sends one request with params and an empty body to addr and reads the
// whole response. ctx bounds the exchange.
func Do(ctx context.Context, addr string, params map[string]string) (*Response, error) {
	conn, err := Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	const id = 1
	begin := []byte{0, roleResponder, 0, 0, 0, 0, 0, 0} // role, flags (close after), reserved
	w := bufio.NewWriter(conn)
	if err := writeRecord(w, typeBeginRequest, id, begin); err != nil {
		return nil, err
	}
	if err := writeRecord(w, typeParams, id, encodePairs(params)); err != nil {
		return nil, err
	}
	for _, t := range []uint8{typeParams, typeStdin} { // empty records end the streams
		if err := writeRecord(w, t, id, nil); err != nil {
			return nil, err
		}
	}
	if err := w.Flush(); err != nil {
		return nil, ctxErr(ctx, err)
	}

	var stdout, stderr bytes.Buffer
	r := bufio.NewReader(conn)
	for {
		h, b, err := readRecord(r)
		if err != nil {
			return nil, fmt.Errorf("fastcgi: read response from %s: %w", addr, ctxErr(ctx, err))
		}
		switch h.Type {
		case typeStdout:
			stdout.Write(b)
		case typeStderr:
			stderr.Write(b)
		case typeEndRequest:
			resp := &Response{Status: 200, Stderr: stderr.String()}
			if len(b) >= 4 {
				resp.AppExit = binary.BigEndian.Uint32(b)
			}
			if err := parseCGI(stdout.Bytes(), resp); err != nil {
				return nil, err
			}
			return resp, nil
		}
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func parseCGI(out []byte, resp *Response) error {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(out)))
	hdr, err := tp.ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("fastcgi: malformed CGI headers in the response: %w", err)
	}
	resp.Header = hdr
	if s := hdr.Get("Status"); s != "" {
		code, err := strconv.Atoi(strings.Fields(s)[0])
		if err != nil {
			return fmt.Errorf("fastcgi: bad Status header %q", s)
		}
		resp.Status = code
	}
	body, _ := io.ReadAll(tp.R)
	resp.Body = body
	return nil
}

// GetValues asks the FastCGI server for FCGI_MAX_CONNS, FCGI_MAX_REQS and
// FCGI_MPXS_CONNS. php-fpm answers from a worker process, so a reply proves
// a worker is accepting connections, without running any PHP script.
func GetValues(ctx context.Context, addr string) (map[string]string, error) {
	conn, err := Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	q := encodePairs(map[string]string{"FCGI_MAX_CONNS": "", "FCGI_MAX_REQS": "", "FCGI_MPXS_CONNS": ""})
	if err := writeRecord(conn, typeGetValues, 0, q); err != nil {
		return nil, ctxErr(ctx, err)
	}
	r := bufio.NewReader(conn)
	for {
		h, b, err := readRecord(r)
		if err != nil {
			return nil, fmt.Errorf("fastcgi: read FCGI_GET_VALUES_RESULT from %s: %w", addr, ctxErr(ctx, err))
		}
		if h.Type == typeGetValuesRes {
			return decodePairs(b), nil
		}
	}
}
