package codec

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

func post(t *testing.T, url, origin string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readPayloads(t *testing.T, resp *http.Response) []*commonpb.Payload {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var ps commonpb.Payloads
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &ps); err != nil {
		t.Fatalf("response %s: %v", b, err)
	}
	return ps.Payloads
}

func TestHandlerEncodeDecode(t *testing.T) {
	c, _ := NewFromSecrets(randomKey(t))
	srv := httptest.NewServer(Handler(c, DefaultAllowedOrigins))
	defer srv.Close()

	plain, _ := converter.GetDefaultDataConverter().ToPayload(secretText)
	reqBody, _ := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{plain}})

	resp := post(t, srv.URL+"/encode", "http://localhost:8233", reqBody)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:8233" {
		t.Errorf("Allow-Origin = %q", got)
	}
	enc := readPayloads(t, resp)
	if len(enc) != 1 || string(enc[0].Metadata[converter.MetadataEncoding]) != EncodingEncrypted {
		t.Fatalf("encode returned %v", enc)
	}
	encBody, _ := protojson.Marshal(&commonpb.Payloads{Payloads: enc})
	if bytes.Contains(encBody, []byte("secret-shop")) {
		t.Fatal("encoded response contains the plaintext")
	}

	dec := readPayloads(t, post(t, srv.URL+"/decode", "", encBody))
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(dec[0], &s); err != nil || s != secretText {
		t.Fatalf("decode = %q, %v", s, err)
	}
}

func TestHandlerCORS(t *testing.T) {
	c, _ := NewFromSecrets(randomKey(t))
	srv := httptest.NewServer(Handler(c, []string{"http://127.0.0.1:8233/"}))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/decode", nil)
	req.Header.Set("Origin", "http://127.0.0.1:8233")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight status %d", resp.StatusCode)
	}
	h := resp.Header
	if h.Get("Access-Control-Allow-Origin") != "http://127.0.0.1:8233" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight headers %v", h)
	}
	for _, want := range []string{"Authorization", "Content-Type", "X-Namespace"} {
		if !strings.Contains(h.Get("Access-Control-Allow-Headers"), want) {
			t.Errorf("Allow-Headers %q lacks %s", h.Get("Access-Control-Allow-Headers"), want)
		}
	}
	if !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("Allow-Methods %q", h.Get("Access-Control-Allow-Methods"))
	}

	resp = post(t, srv.URL+"/decode", "http://evil.example", []byte(`{"payloads":[]}`))
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin: status %d, allow-origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/decode", nil)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET status %d", resp.StatusCode)
	}
}

func TestHandlerRejectsBadInput(t *testing.T) {
	c, _ := NewFromSecrets(randomKey(t))
	srv := httptest.NewServer(Handler(c, nil))
	defer srv.Close()
	for name, body := range map[string][]byte{
		"not json":  []byte("nope"),
		"too large": bytes.Repeat([]byte(" "), maxCodecBody+1),
		"foreign key": []byte(`{"payloads":[{"metadata":{"encoding":"` + b64(EncodingEncrypted) +
			`","encryption-key-id":"` + b64("0011223344556677") + `"},"data":"` + b64(strings.Repeat("x", 40)) + `"}]}`),
	} {
		resp := post(t, srv.URL+"/decode", "", body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
