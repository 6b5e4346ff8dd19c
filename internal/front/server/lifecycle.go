package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
)

// Lifecycle starts ScaleOutReadiness for an autoscaling lifecycle event
// (EventBridge JSON, as delivered by an API destination or SQS).
type Lifecycle interface {
	// Handle parses body and starts (or joins) the readiness run; it
	// returns ErrIgnoredEvent (wrapped) for events that are not lifecycle
	// actions (test notifications, other event types).
	Handle(ctx context.Context, body []byte) (workflowID string, err error)
}

// ErrIgnoredEvent marks deliveries that are acknowledged but start nothing.
var ErrIgnoredEvent = errors.New("not a lifecycle action")

// ErrBadEvent marks deliveries that cannot be parsed.
var ErrBadEvent = errors.New("malformed lifecycle event")

const (
	errLifecycleNoToken  = "missing bearer token: send the header Authorization: Bearer <server.lifecycle_token> (the API destination's connection, API key auth)"
	errLifecycleBadToken = "wrong bearer token: the Authorization header does not match server.lifecycle_token; update the API destination's connection"
)

// handleLifecycle is POST /hooks/aws-lifecycle. EventBridge API
// destinations authenticate with a header the operator configures: here a
// bearer token. The tokens' sha256 digests are compared in constant time
// (equal), so neither the content nor the length of the token leaks through
// the response time.
func (s *server) handleLifecycle(w http.ResponseWriter, r *http.Request) {
	if s.opt.Lifecycle == nil || s.opt.LifecycleToken == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"status": "error", "error": "lifecycle hooks are not configured (groups: and server.lifecycle_token)"})
		return
	}
	want, err := readSecret(s.opt.LifecycleToken)
	if err != nil || len(want) == 0 {
		s.opt.Logger.Error("lifecycle token unreadable", "error", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "error", "error": "the server cannot read its lifecycle token"})
		return
	}
	scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(got) == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"status": "error", "error": errLifecycleNoToken})
		return
	}
	if !equal([]byte(strings.TrimSpace(got)), want) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"status": "error", "error": errLifecycleBadToken})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"status": "error", "error": "body over 1 MiB"})
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	id, err := s.opt.Lifecycle.Handle(ctx, body)
	switch {
	case errors.Is(err, ErrIgnoredEvent):
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "ignored", "reason": err.Error()})
	case errors.Is(err, ErrBadEvent):
		writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "error": err.Error()})
	case err != nil:
		s.opt.Logger.Error("lifecycle event not started", "error", err)
		w.Header().Set("Retry-After", "30")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "error", "error": "could not start the readiness check; retry"})
	default:
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted", "workflow_id": id})
	}
}
