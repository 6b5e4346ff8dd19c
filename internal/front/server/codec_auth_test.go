package server

import (
	"bytes"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mageflow/mageflow/internal/platform/codec"
)

// cardSecret is what a workflow payload holds; the attacker wants it.
const cardSecret = "pan=4111111111111111 cvv=737"

// encryptedHistory returns the body of a /codec/decode request carrying a
// payload as Temporal stores it: encrypted with the server's key.
func encryptedHistory(t *testing.T, c *codec.Codec) []byte {
	t.Helper()
	plain, err := converter.GetDefaultDataConverter().ToPayload(cardSecret)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.Encode([]*commonpb.Payload{plain})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(enc[0].Data, []byte("4111")) {
		t.Fatal("the payload is not encrypted: the test would prove nothing")
	}
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: enc})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func testCodec(t *testing.T) *codec.Codec {
	t.Helper()
	key := make([]byte, codec.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	c, err := codec.NewFromSecrets(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// codecServer is `mageflow serve` on a real listener with the real codec,
// as an internet-facing server is configured: credentials, protected views,
// the Web UI at testUI.
func codecServer(t *testing.T, c *codec.Codec, mod func(*Options)) (*httptest.Server, http.Handler) {
	t.Helper()
	opt := Options{
		Codec: codec.Handler(c, codec.UIOrigins(testUI)), CodecOrigins: codec.UIOrigins(testUI),
		Auth:   Auth{Token: secretOf(testToken), BasicUser: basicUser, BasicPassword: secretOf(basicPass), ProtectViews: true},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&opt)
	}
	h := New(opt)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

type codecAnswer struct {
	status int
	body   string
	header http.Header
}

func codecCall(t *testing.T, method, target string, body []byte, mods ...func(*http.Request)) codecAnswer {
	t.Helper()
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	for _, m := range mods {
		m(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return codecAnswer{resp.StatusCode, string(b), resp.Header}
}

// TestCodecAttackAnonymousDecrypt is finding 2: an anonymous client of the
// internet-facing listener posts an encrypted payload from the history to
// /codec/decode. It must get 401 and a body without the plaintext, with or
// without an Origin, while the operator (bearer, basic, or the session
// cookie sent by the Web UI from its origin) still gets it decrypted.
func TestCodecAttackAnonymousDecrypt(t *testing.T) {
	c := testCodec(t)
	srv, h := codecServer(t, c, nil)
	stolen := encryptedHistory(t, c)
	decode := srv.URL + "/codec/decode"

	for name, mods := range map[string][]func(*http.Request){
		"no origin (curl)":            nil,
		"from the UI origin":          {withHeader("Origin", testUI)},
		"wrong bearer":                {withHeader("Authorization", "Bearer guess")},
		"forged session cookie":       {withCookies(&http.Cookie{Name: sessionCookie, Value: "eyJ1Ijoib3BzIn0.AAAA"})},
		"basic with a wrong password": {func(r *http.Request) { r.SetBasicAuth(basicUser, "guess") }},
	} {
		a := codecCall(t, http.MethodPost, decode, stolen, mods...)
		if a.status != http.StatusUnauthorized || strings.Contains(a.body, "4111") {
			t.Errorf("%s: %d %s, want 401 without the plaintext", name, a.status, a.body)
		}
		if !strings.Contains(a.body, "/login") || !strings.Contains(a.body, "Authorization: Bearer") {
			t.Errorf("%s: the refusal does not say how to authenticate: %s", name, a.body)
		}
	}
	// The UI can read its 401 (to show it), other origins cannot even ask.
	if a := codecCall(t, http.MethodPost, decode, stolen, withHeader("Origin", testUI)); a.header.Get("Access-Control-Allow-Origin") != testUI {
		t.Errorf("401 to the UI without Allow-Origin: %v", a.header)
	}
	if a := codecCall(t, http.MethodPost, decode, stolen, withHeader("Origin", "https://evil.example"), withHeader("Authorization", "Bearer "+testToken)); a.status != http.StatusForbidden || strings.Contains(a.body, "4111") {
		t.Errorf("another origin with the token: %d %s", a.status, a.body)
	}
	// /encode is covered too: an oracle that encrypts chosen plaintext is
	// the operator's as well.
	if a := codecCall(t, http.MethodPost, srv.URL+"/codec/encode", stolen); a.status != http.StatusUnauthorized {
		t.Errorf("anonymous encode: %d", a.status)
	}

	session, _ := login(t, h, "Dana", testToken)
	for name, mods := range map[string][]func(*http.Request){
		"bearer":                     {withHeader("Authorization", "Bearer "+testToken)},
		"basic":                      {func(r *http.Request) { r.SetBasicAuth(basicUser, basicPass) }},
		"session cookie from the UI": {withHeader("Origin", testUI), withCookies(session)},
	} {
		a := codecCall(t, http.MethodPost, decode, stolen, mods...)
		if a.status != http.StatusOK || !strings.Contains(a.body, base64Of(cardSecret)) {
			t.Errorf("operator with %s: %d %s, want the decrypted payload", name, a.status, a.body)
		}
	}
	// A page of another site that the browser sends the cookie from.
	if a := codecCall(t, http.MethodPost, decode, stolen, withCookies(session), withHeader("Sec-Fetch-Site", "cross-site")); a.status != http.StatusForbidden {
		t.Errorf("cross-site request with the cookie: %d %s", a.status, a.body)
	}
}

func base64Of(s string) string {
	p, _ := converter.GetDefaultDataConverter().ToPayload(s)
	b, _ := protojson.Marshal(p)
	// protojson renders data as base64; take the data field's value.
	_, v, _ := strings.Cut(string(b), `"data":"`)
	v, _, _ = strings.Cut(v, `"`)
	return v
}

// TestCodecPreflight: the browser's preflight carries no credentials and is
// answered for the UI's origin only, with credentials allowed.
func TestCodecPreflight(t *testing.T) {
	srv, _ := codecServer(t, testCodec(t), nil)
	pre := func(origin string) codecAnswer {
		return codecCall(t, http.MethodOptions, srv.URL+"/codec/decode", nil, withHeader("Origin", origin),
			withHeader("Access-Control-Request-Method", "POST"), withHeader("Access-Control-Request-Headers", "content-type,x-namespace"))
	}
	a := pre(testUI)
	if a.status != http.StatusNoContent || a.header.Get("Access-Control-Allow-Origin") != testUI || a.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("UI preflight: %d %v", a.status, a.header)
	}
	a = pre("https://evil.example")
	if a.status != http.StatusForbidden || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign preflight: %d %v", a.status, a.header)
	}
}

// TestCodecWithoutCredentials: a server with no auth at all keeps an open
// codec on loopback (local development) and refuses it anywhere else.
func TestCodecWithoutCredentials(t *testing.T) {
	c := testCodec(t)
	stolen := encryptedHistory(t, c)
	public, _ := codecServer(t, c, func(o *Options) { o.Auth = Auth{} })
	if a := codecCall(t, http.MethodPost, public.URL+"/codec/decode", stolen); a.status != http.StatusForbidden || strings.Contains(a.body, base64Of(cardSecret)) || !strings.Contains(a.body, "server.auth") {
		t.Errorf("public server without auth: %d %s", a.status, a.body)
	}
	dev, _ := codecServer(t, c, func(o *Options) { o.Auth, o.LoopbackOnly = Auth{}, true })
	if a := codecCall(t, http.MethodPost, dev.URL+"/codec/decode", stolen); a.status != http.StatusOK || !strings.Contains(a.body, base64Of(cardSecret)) {
		t.Errorf("loopback dev server: %d %s", a.status, a.body)
	}
}

// TestCodecGuessingIsLimited: the codec takes basic credentials, so it
// would be a password-guessing endpoint without the rate limit.
func TestCodecGuessingIsLimited(t *testing.T) {
	c := testCodec(t)
	srv, _ := codecServer(t, c, nil)
	stolen := encryptedHistory(t, c)
	guess := func(pass string) codecAnswer {
		return codecCall(t, http.MethodPost, srv.URL+"/codec/decode", stolen, func(r *http.Request) { r.SetBasicAuth(basicUser, pass) })
	}
	for i := range limitPerAddr {
		if a := guess("guess"); a.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, a.status)
		}
	}
	a := guess(basicPass)
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" || strings.Contains(a.body, base64Of(cardSecret)) {
		t.Fatalf("the right password after %d wrong ones: %d %s (want 429 with Retry-After)", limitPerAddr, a.status, a.body)
	}
}
