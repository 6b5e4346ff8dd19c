// Package codec encrypts Temporal payloads with AES-256-GCM so that workflow
// inputs and results (repository URLs, commit messages, artifact locations,
// anything a recipe passes along) are never stored in clear text by the
// Temporal service. The Temporal Web UI decrypts them through Handler.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// Metadata written on every encrypted payload. The key id lets a codec
// holding several keys pick the right one, which is what makes key rotation
// possible without breaking the histories of running workflows.
const (
	EncodingEncrypted = "binary/encrypted"
	MetadataKeyID     = "encryption-key-id"
)

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// Key is one AES-256 key and the id recorded in payloads it encrypted.
type Key struct {
	ID     string
	Secret []byte
}

// KeyID derives a stable, non-secret id from a key: the first 8 bytes of
// SHA-256 over a domain prefix and the key, in hex. Deriving it (rather than
// asking operators to name keys) means the same key file yields the same id on
// every worker, and rotating is just "add the new key first".
func KeyID(secret []byte) string {
	h := sha256.New()
	h.Write([]byte("mageflow payload key id\x00"))
	h.Write(secret)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Codec is a converter.PayloadCodec encrypting with one active key and
// decrypting with any loaded key. It is safe for concurrent use.
type Codec struct {
	activeID string
	aeads    map[string]cipher.AEAD
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New returns a codec encrypting with active and decrypting with active and
// every key in old. Keys must be KeySize bytes; ids must be unique.
func New(active Key, old ...Key) (*Codec, error) {
	c := &Codec{activeID: active.ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range append([]Key{active}, old...) {
		if k.ID == "" {
			return nil, errors.New("codec: key id is empty")
		}
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("codec: key %s is %d bytes, AES-256 needs %d; generate one with `mageflow codec keygen` or `head -c32 /dev/urandom | base64`", k.ID, len(k.Secret), KeySize)
		}
		if _, dup := c.aeads[k.ID]; dup {
			return nil, fmt.Errorf("codec: key id %s is loaded twice; remove the duplicate key", k.ID)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("codec: key %s: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("codec: key %s: %w", k.ID, err)
		}
		c.aeads[k.ID] = aead
	}
	return c, nil
}

// NewFromSecrets builds a codec from raw keys, deriving ids with KeyID; the
// first key is the active one.
func NewFromSecrets(secrets ...[]byte) (*Codec, error) {
	if len(secrets) == 0 {
		return nil, errors.New("codec: no key given")
	}
	keys := make([]Key, len(secrets))
	for i, s := range secrets {
		keys[i] = Key{ID: KeyID(s), Secret: s}
	}
	return New(keys[0], keys[1:]...)
}

// ActiveKeyID is the id new payloads are encrypted with (for logs: it is not
// secret).
func (c *Codec) ActiveKeyID() string { return c.activeID }

// Encode encrypts each payload whole (metadata and data), so the payload's
// original encoding is hidden too. The key id is bound as additional
// authenticated data: relabelling a payload with another key id fails.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.activeID]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("codec: marshal payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("codec: random nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:              []byte(c.activeID),
			},
			Data: aead.Seal(nonce, nonce, plain, []byte(c.activeID)),
		}
	}
	return out, nil
}

// Decode decrypts payloads marked binary/encrypted and passes others through
// unchanged, so histories written before encryption was enabled stay
// readable.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		id := string(p.Metadata[MetadataKeyID])
		aead, ok := c.aeads[id]
		if !ok {
			return nil, fmt.Errorf("codec: payload was encrypted with key id %q, which is not loaded (loaded: %s); add that key to the key file after the active key", id, c.keyList())
		}
		ns := aead.NonceSize()
		if len(p.Data) < ns+aead.Overhead() {
			return nil, fmt.Errorf("codec: encrypted payload is truncated (%d bytes)", len(p.Data))
		}
		plain, err := aead.Open(nil, p.Data[:ns], p.Data[ns:], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("codec: payload failed authentication with key %s: it was modified or encrypted with a different key under the same id", id)
		}
		var dec commonpb.Payload
		if err := proto.Unmarshal(plain, &dec); err != nil {
			return nil, fmt.Errorf("codec: decrypted payload is not a Temporal payload: %w", err)
		}
		out[i] = &dec
	}
	return out, nil
}

func (c *Codec) keyList() string {
	s := c.activeID + " (active)"
	for _, id := range slices.Sorted(maps.Keys(c.aeads)) {
		if id != c.activeID {
			s += ", " + id
		}
	}
	return s
}

// DataConverter wraps Temporal's default converter with codec; give it to
// both the client and the worker, or histories become unreadable to one side.
func DataConverter(codec converter.PayloadCodec) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), codec)
}
