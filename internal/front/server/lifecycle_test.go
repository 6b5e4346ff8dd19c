package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

type fakeLifecycle struct{ got [][]byte }

func (f *fakeLifecycle) Handle(_ context.Context, body []byte) (string, error) {
	f.got = append(f.got, body)
	switch string(body) {
	case "test-notification":
		return "", fmt.Errorf("%w: autoscaling:TEST_NOTIFICATION", ErrIgnoredEvent)
	case "garbage":
		return "", fmt.Errorf("%w: not JSON", ErrBadEvent)
	case "temporal-down":
		return "", errors.New("connection refused")
	}
	return "readiness/asg/i-1/tok", nil
}

func TestLifecycleHook(t *testing.T) {
	fl := &fakeLifecycle{}
	h := New(Options{Lifecycle: fl, LifecycleToken: func() ([]byte, error) { return []byte("s3cret-token"), nil }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	post := func(token, body string) int {
		req := httptest.NewRequest(http.MethodPost, "/hooks/aws-lifecycle", bytes.NewBufferString(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := post("", "{}"); c != http.StatusUnauthorized {
		t.Fatalf("no token: %d", c)
	}
	if c := post("wrong", "{}"); c != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", c)
	}
	if len(fl.got) != 0 {
		t.Fatal("an unauthenticated event reached the starter")
	}
	for body, want := range map[string]int{"{}": 202, "test-notification": 202, "garbage": 400, "temporal-down": 503} {
		if c := post("s3cret-token", body); c != want {
			t.Errorf("%s: %d, want %d", body, c, want)
		}
	}
	// Not configured: 404 with the reason, nothing started.
	h = New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/hooks/aws-lifecycle", bytes.NewBufferString("{}")))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("unconfigured: %d", rec.Code)
	}
}
