package codec

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

type buildInput struct {
	RepoURL string
	Message string
}

const secretText = "git@github.com:acme/secret-shop.git"

func TestRoundTripThroughDataConverter(t *testing.T) {
	c, err := NewFromSecrets(randomKey(t))
	if err != nil {
		t.Fatal(err)
	}
	dc := DataConverter(c)
	in := buildInput{RepoURL: secretText, Message: "Fix cart"}
	p, err := dc.ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(p.Metadata[converter.MetadataEncoding]); got != EncodingEncrypted {
		t.Fatalf("encoding = %q, want %q", got, EncodingEncrypted)
	}
	if got := string(p.Metadata[MetadataKeyID]); got != c.ActiveKeyID() || got == "" {
		t.Fatalf("key id = %q, want %q", got, c.ActiveKeyID())
	}
	if bytes.Contains(p.Data, []byte("secret-shop")) || bytes.Contains(p.Data, []byte("json/plain")) {
		t.Fatal("encrypted payload contains plaintext")
	}
	var out buildInput
	if err := dc.FromPayload(p, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("round trip = %+v, want %+v", out, in)
	}
}

func TestEncodeIsRandomized(t *testing.T) {
	c, _ := NewFromSecrets(randomKey(t))
	p := &commonpb.Payload{Data: []byte("same")}
	a, _ := c.Encode([]*commonpb.Payload{p})
	b, _ := c.Encode([]*commonpb.Payload{p})
	if bytes.Equal(a[0].Data, b[0].Data) {
		t.Fatal("two encryptions of one payload are identical: nonce reuse")
	}
}

func TestTamperDetection(t *testing.T) {
	c, _ := NewFromSecrets(randomKey(t))
	enc, err := c.Encode([]*commonpb.Payload{{Data: []byte(secretText)}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc[0].Data {
		bad := &commonpb.Payload{Metadata: enc[0].Metadata, Data: bytes.Clone(enc[0].Data)}
		bad.Data[i] ^= 0x01
		if _, err := c.Decode([]*commonpb.Payload{bad}); err == nil || !strings.Contains(err.Error(), "failed authentication") {
			t.Fatalf("flipping byte %d: err = %v, want authentication failure", i, err)
		}
	}
	short := &commonpb.Payload{Metadata: enc[0].Metadata, Data: enc[0].Data[:10]}
	if _, err := c.Decode([]*commonpb.Payload{short}); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated: err = %v", err)
	}
}

func TestKeyIDIsAuthenticated(t *testing.T) {
	k1, k2 := randomKey(t), randomKey(t)
	c, _ := NewFromSecrets(k1, k2)
	enc, _ := c.Encode([]*commonpb.Payload{{Data: []byte("x")}})
	// Relabel with the other loaded key's id, then with the real key under a
	// forged id: both must fail rather than decrypt or mis-decrypt.
	enc[0].Metadata[MetadataKeyID] = []byte(KeyID(k2))
	if _, err := c.Decode(enc); err == nil {
		t.Fatal("payload relabelled with another key id decoded")
	}
	forged, _ := New(Key{ID: "forged", Secret: k1})
	enc2, _ := forged.Encode([]*commonpb.Payload{{Data: []byte("x")}})
	enc2[0].Metadata[MetadataKeyID] = []byte(KeyID(k1))
	if _, err := c.Decode(enc2); err == nil {
		t.Fatal("payload with a rewritten key id decoded")
	}
}

func TestUnknownKeyID(t *testing.T) {
	old, _ := NewFromSecrets(randomKey(t))
	enc, _ := old.Encode([]*commonpb.Payload{{Data: []byte("x")}})
	c, _ := NewFromSecrets(randomKey(t))
	_, err := c.Decode(enc)
	if err == nil {
		t.Fatal("decoded with the wrong key")
	}
	for _, want := range []string{old.ActiveKeyID(), "not loaded", c.ActiveKeyID() + " (active)", "add that key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	before, _ := NewFromSecrets(oldKey)
	encOld, _ := before.Encode([]*commonpb.Payload{{Data: []byte("old")}})

	after, err := NewFromSecrets(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := after.Decode(encOld)
	if err != nil || string(dec[0].Data) != "old" {
		t.Fatalf("old payload after rotation: %v, %v", dec, err)
	}
	encNew, _ := after.Encode([]*commonpb.Payload{{Data: []byte("new")}})
	if got := string(encNew[0].Metadata[MetadataKeyID]); got != KeyID(newKey) {
		t.Fatalf("new payloads use key %s, want the first (active) key %s", got, KeyID(newKey))
	}
	if _, err := before.Decode(encNew); err == nil {
		t.Fatal("codec without the new key decoded a new payload")
	}
}

func TestUnencryptedPayloadsPassThrough(t *testing.T) {
	c, _ := NewFromSecrets(randomKey(t))
	p := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte("json/plain")}, Data: []byte(`"hi"`)}
	out, err := c.Decode([]*commonpb.Payload{p})
	if err != nil || out[0] != p {
		t.Fatalf("plain payload: %v, %v", out, err)
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	k := randomKey(t)
	cases := map[string][]Key{
		"short key":    {{ID: "a", Secret: k[:16]}},
		"empty id":     {{ID: "", Secret: k}},
		"duplicate id": {{ID: "a", Secret: k}, {ID: "a", Secret: randomKey(t)}},
	}
	for name, keys := range cases {
		if _, err := New(keys[0], keys[1:]...); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := NewFromSecrets(); err == nil {
		t.Error("NewFromSecrets with no key succeeded")
	}
}
