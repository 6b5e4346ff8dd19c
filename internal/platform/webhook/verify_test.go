package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// hmacHex computes the signature independently of Sign so that a bug in Sign
// cannot hide a bug in Verify.
func hmacHex(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func TestVerify(t *testing.T) {
	secret := []byte("s3cr3t-value")
	body := []byte(`{"ref":"refs/heads/main"}`)
	good := "sha256=" + hmacHex(secret, body)
	other := "sha256=" + hmacHex([]byte("other"), body)

	cases := []struct {
		name   string
		p      Provider
		secret []byte
		h      http.Header
		body   []byte
		ok     bool
		reason string
	}{
		{"github ok", GitHub, secret, http.Header{"X-Hub-Signature-256": {good}}, body, true, ""},
		{"github upper-case hex ok", GitHub, secret, http.Header{"X-Hub-Signature-256": {"sha256=" + strings.ToUpper(hmacHex(secret, body))}}, body, true, ""},
		{"github missing", GitHub, secret, http.Header{}, body, false, "missing"},
		{"github legacy sha1 header only", GitHub, secret, http.Header{"X-Hub-Signature": {good}}, body, false, "missing"},
		{"github wrong secret", GitHub, secret, http.Header{"X-Hub-Signature-256": {other}}, body, false, "does not match"},
		{"github tampered body", GitHub, secret, http.Header{"X-Hub-Signature-256": {good}}, append([]byte{' '}, body...), false, "does not match"},
		{"github no prefix", GitHub, secret, http.Header{"X-Hub-Signature-256": {hmacHex(secret, body)}}, body, false, "sha256="},
		{"github sha1 prefix", GitHub, secret, http.Header{"X-Hub-Signature-256": {"sha1=" + hmacHex(secret, body)}}, body, false, "sha256="},
		{"github bad hex", GitHub, secret, http.Header{"X-Hub-Signature-256": {"sha256=zz"}}, body, false, "not a hex"},
		{"github short digest", GitHub, secret, http.Header{"X-Hub-Signature-256": {good[:40]}}, body, false, "not a hex"},
		{"github repeated header", GitHub, secret, http.Header{"X-Hub-Signature-256": {good, good}}, body, false, "repeated"},
		{"github empty secret", GitHub, nil, http.Header{"X-Hub-Signature-256": {"sha256=" + hmacHex(nil, body)}}, body, false, "no webhook secret"},
		{"bitbucket ok", Bitbucket, secret, http.Header{"X-Hub-Signature": {good}}, body, true, ""},
		{"bitbucket github header only", Bitbucket, secret, http.Header{"X-Hub-Signature-256": {good}}, body, false, "missing"},
		{"bitbucket wrong", Bitbucket, secret, http.Header{"X-Hub-Signature": {other}}, body, false, "does not match"},
		{"gitlab ok", GitLab, secret, http.Header{"X-Gitlab-Token": {string(secret)}}, body, true, ""},
		{"gitlab wrong", GitLab, secret, http.Header{"X-Gitlab-Token": {"s3cr3t-valuE"}}, body, false, "does not match"},
		{"gitlab prefix of secret", GitLab, secret, http.Header{"X-Gitlab-Token": {"s3cr3t"}}, body, false, "does not match"},
		{"gitlab missing", GitLab, secret, http.Header{}, body, false, "missing"},
		{"unknown provider", Provider("gitea"), secret, http.Header{"X-Hub-Signature-256": {good}}, body, false, "unknown provider"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.p, tc.secret, tc.h, tc.body)
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify: %v, want ErrBadSignature", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not give reason %q", err, tc.reason)
			}
			if len(tc.secret) > 0 && strings.Contains(err.Error(), string(tc.secret)) {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
}

func TestSignMatchesIndependentHMAC(t *testing.T) {
	secret, body := []byte("k"), []byte("payload")
	if got, want := Sign(secret, body), "sha256="+hmacHex(secret, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestProviderValid(t *testing.T) {
	for _, p := range Providers {
		if !p.Valid() {
			t.Errorf("%s not valid", p)
		}
	}
	if Provider("GitHub").Valid() || Provider("").Valid() {
		t.Error("provider names are case-sensitive and must not be empty")
	}
}
