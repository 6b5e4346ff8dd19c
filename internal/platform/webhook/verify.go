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

// ErrBadSignature is matched (errors.Is) by every error Verify returns: the
// delivery cannot be proven to come from the holder of the secret.
var ErrBadSignature = errors.New("webhook signature invalid")

// The checks Verify reports in VerifyError.Check, so an answer can say which
// one failed without saying anything about the secret.
const (
	CheckNoSecret          = "no-secret"          // no secret configured for the app
	CheckSignatureMissing  = "signature-missing"  // X-Hub-Signature(-256) absent or empty
	CheckSignatureInvalid  = "signature-invalid"  // present but not "sha256=<64 hex>", or repeated
	CheckSignatureMismatch = "signature-mismatch" // well-formed, but not the HMAC of this body
	CheckTokenMissing      = "token-missing"      // X-Gitlab-Token absent or empty
	CheckTokenInvalid      = "token-invalid"      // X-Gitlab-Token repeated
	CheckTokenMismatch     = "token-mismatch"     // X-Gitlab-Token is not the secret
)

// VerifyError says which check refused a delivery and how to fix it. Its
// text never contains the secret, the expected value or the received one,
// since it is logged and sent back to the provider's delivery log.
type VerifyError struct {
	Check  string // one of the Check… constants
	Reason string
}

func (e *VerifyError) Error() string { return ErrBadSignature.Error() + ": " + e.Reason }

// Is makes errors.Is(err, ErrBadSignature) hold.
func (e *VerifyError) Is(target error) bool { return target == ErrBadSignature }

func verifyErr(check, format string, args ...any) error {
	return &VerifyError{Check: check, Reason: fmt.Sprintf(format, args...)}
}

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
// body is the raw request body exactly as received: for a form-encoded
// GitHub delivery that is the whole "payload=…" form, not the JSON inside.
// All comparisons are constant time. The returned error is a *VerifyError
// (matching ErrBadSignature) naming the check that failed.
func Verify(p Provider, secret []byte, h http.Header, body []byte) error {
	if len(secret) == 0 {
		// An empty HMAC key is computable by anyone: refuse rather than
		// accept every delivery.
		return verifyErr(CheckNoSecret, "no webhook secret is configured for this app on the mageflow server; set webhook.secret in the config")
	}
	switch p {
	case GitHub:
		return verifyHMAC(secret, h, headerGitHubSignature, body)
	case Bitbucket:
		return verifyHMAC(secret, h, headerBitbucketSignature, body)
	case GitLab:
		return verifyToken(secret, h)
	default:
		return verifyErr(CheckSignatureInvalid, "unknown provider %q", p)
	}
}

func verifyToken(secret []byte, h http.Header) error {
	got := h.Values(headerGitLabToken)
	if len(got) == 0 || got[0] == "" {
		return verifyErr(CheckTokenMissing, "header %s is missing: set the secret token in the GitLab webhook settings to the app's webhook secret", headerGitLabToken)
	}
	if len(got) > 1 {
		return verifyErr(CheckTokenInvalid, "header %s is repeated; a proxy may be adding it", headerGitLabToken)
	}
	// Compare digests rather than the raw values: ConstantTimeCompare
	// returns early on a length mismatch, which would leak the secret's
	// length to a caller who can time the answer.
	a := sha256.Sum256([]byte(got[0]))
	b := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return verifyErr(CheckTokenMismatch, "header %s does not match the app's webhook secret: copy the secret from the mageflow server into the GitLab webhook's secret token", headerGitLabToken)
	}
	return nil
}

func verifyHMAC(secret []byte, h http.Header, header string, body []byte) error {
	values := h.Values(header)
	if len(values) == 0 || values[0] == "" {
		return verifyErr(CheckSignatureMissing, "header %s is missing: the webhook has no secret; set the app's webhook secret in the webhook settings", header)
	}
	if len(values) > 1 {
		return verifyErr(CheckSignatureInvalid, "header %s is repeated; a proxy may be adding it", header)
	}
	hexSig, ok := strings.CutPrefix(values[0], "sha256=")
	if !ok {
		return verifyErr(CheckSignatureInvalid, "header %s must start with \"sha256=\"", header)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return verifyErr(CheckSignatureInvalid, "header %s is not a hex SHA-256 digest", header)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return verifyErr(CheckSignatureMismatch, "%s does not match the body signed with the app's webhook secret: make the secret in the webhook settings equal to the one on the mageflow server, and check that no proxy rewrites the body", header)
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
