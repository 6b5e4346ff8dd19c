// Package webhook authenticates and decodes push deliveries from GitHub,
// GitLab and Bitbucket Cloud. It is pure (no I/O, no clock) so that the
// parsing of untrusted bytes can be fuzzed in isolation from the HTTP server.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Provider names the git hosting service that sent a delivery. The value is
// also the last path segment of the server's hook URL (/hooks/github…).
type Provider string

// The supported providers.
const (
	GitHub    Provider = "github"
	GitLab    Provider = "gitlab"
	Bitbucket Provider = "bitbucket"
)

// Providers lists every supported provider, for help texts and validation.
var Providers = []Provider{GitHub, GitLab, Bitbucket}

// Valid reports whether p is one of the supported providers.
func (p Provider) Valid() bool {
	switch p {
	case GitHub, GitLab, Bitbucket:
		return true
	}
	return false
}

// ErrBadSignature is returned (wrapped with a reason) by Verify for every
// delivery that cannot be proven to come from the holder of the secret.
var ErrBadSignature = errors.New("webhook signature invalid")

// Header names carrying the proof of authenticity.
const (
	headerGitHubSignature    = "X-Hub-Signature-256"
	headerGitLabToken        = "X-Gitlab-Token"
	headerBitbucketSignature = "X-Hub-Signature"
)

// Verify checks that a delivery was sent by someone holding secret:
//
//   - github: X-Hub-Signature-256 is "sha256=" + hex(HMAC-SHA256(secret, body))
//   - gitlab: X-Gitlab-Token equals secret (GitLab sends the secret itself)
//   - bitbucket: X-Hub-Signature is "sha256=" + hex(HMAC-SHA256(secret, body))
//
// All comparisons are constant time. The returned error wraps
// ErrBadSignature and never contains the secret or the received value, since
// both end up in logs.
func Verify(p Provider, secret []byte, h http.Header, body []byte) error {
	if len(secret) == 0 {
		// An empty HMAC key is computable by anyone: refuse rather than
		// accept every delivery.
		return fmt.Errorf("%w: no webhook secret is configured for this app", ErrBadSignature)
	}
	switch p {
	case GitHub:
		return verifyHMAC(secret, h, headerGitHubSignature, body)
	case Bitbucket:
		return verifyHMAC(secret, h, headerBitbucketSignature, body)
	case GitLab:
		got := h.Values(headerGitLabToken)
		if len(got) == 0 || got[0] == "" {
			return fmt.Errorf("%w: header %s is missing; set the secret token in the GitLab webhook settings", ErrBadSignature, headerGitLabToken)
		}
		if len(got) > 1 {
			return fmt.Errorf("%w: header %s is repeated", ErrBadSignature, headerGitLabToken)
		}
		// Compare digests rather than the raw values: ConstantTimeCompare
		// returns early on a length mismatch, which would leak the secret's
		// length to a caller who can time the answer.
		a := sha256.Sum256([]byte(got[0]))
		b := sha256.Sum256(secret)
		if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			return fmt.Errorf("%w: %s does not match the configured secret", ErrBadSignature, headerGitLabToken)
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown provider %q", ErrBadSignature, p)
	}
}

func verifyHMAC(secret []byte, h http.Header, header string, body []byte) error {
	values := h.Values(header)
	if len(values) == 0 || values[0] == "" {
		return fmt.Errorf("%w: header %s is missing; set a secret in the webhook settings", ErrBadSignature, header)
	}
	if len(values) > 1 {
		return fmt.Errorf("%w: header %s is repeated", ErrBadSignature, header)
	}
	hexSig, ok := strings.CutPrefix(values[0], "sha256=")
	if !ok {
		return fmt.Errorf("%w: header %s must start with \"sha256=\"", ErrBadSignature, header)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: header %s is not a hex SHA-256 digest", ErrBadSignature, header)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%w: %s does not match the body signed with the configured secret", ErrBadSignature, header)
	}
	return nil
}

// Sign returns the signature header value GitHub and Bitbucket would send
// for body ("sha256=<hex>"). Tests, the benchmark and `mageflow hook test`
// style tooling use it to produce genuine deliveries.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
