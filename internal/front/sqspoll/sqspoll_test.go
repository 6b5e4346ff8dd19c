package sqspoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/mageflow/mageflow/internal/front/server"
)

// scriptedHandler answers Handle from a per-body script: the i-th delivery
// of a body gets script[body][i] (the last entry repeats).
type scriptedHandler struct {
	mu     sync.Mutex
	script map[string][]error
	calls  map[string]int
	onCall func(body string, n int)
}

func (h *scriptedHandler) Handle(ctx context.Context, body []byte) (string, error) {
	h.mu.Lock()
	b := string(body)
	h.calls[b]++
	n := h.calls[b]
	steps := h.script[b]
	onCall := h.onCall
	h.mu.Unlock()
	if onCall != nil {
		onCall(b, n)
	}
	if len(steps) == 0 {
		return "", fmt.Errorf("test handler has no script for body %q", b)
	}
	err := steps[min(n, len(steps))-1]
	if err != nil {
		return "", err
	}
	return "readiness-" + b, nil
}

func (h *scriptedHandler) count(body string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[body]
}

func newHandler(script map[string][]error) *scriptedHandler {
	return &scriptedHandler{script: script, calls: map[string]int{}}
}

// newPoller builds a Poller through New, so the real SDK client (its
// serialisation, signing and checksum validation) talks to the fake.
func newPoller(t *testing.T, f *fakeSQS, cfg Config, h server.Lifecycle) *Poller {
	t.Helper()
	if cfg.QueueURL == "" {
		cfg.QueueURL = f.url
	}
	cfg.Region = "eu-west-1"
	cfg.Endpoint = f.srv.URL
	cfg.Credentials = credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")
	p, err := New(context.Background(), cfg, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// start runs p in the background; the returned stop cancels it and returns
// Run's error.
func start(t *testing.T, p *Poller) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10 s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHandledMessageIsDeleted(t *testing.T) {
	f := newFakeSQS(t, 30*time.Second)
	id := f.send("launch-i-1")
	h := newHandler(map[string][]error{"launch-i-1": {nil}})
	stop := start(t, newPoller(t, f, Config{WaitSeconds: 1}, h))

	eventually(t, "the message to be deleted", func() bool { return f.message(id).deleted })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := h.count("launch-i-1"); n != 1 {
		t.Errorf("Handle called %d times, want 1", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastWait != 1 || f.lastMaxMessages != DefaultMaxMessages || f.lastVis != 0 {
		t.Errorf("ReceiveMessage sent wait=%d max=%d visibility=%d, want 1, %d, 0 (queue default)", f.lastWait, f.lastMaxMessages, f.lastVis, DefaultMaxMessages)
	}
	if len(f.lastSystemAttributes) != 1 || f.lastSystemAttributes[0] != "ApproximateReceiveCount" {
		t.Errorf("ReceiveMessage asked for system attributes %v, want [ApproximateReceiveCount]", f.lastSystemAttributes)
	}
}

func TestIgnoredAndMalformedMessagesAreDeleted(t *testing.T) {
	f := newFakeSQS(t, 30*time.Second)
	ignored := f.send("test-notification")
	bad := f.send("not-json")
	h := newHandler(map[string][]error{
		"test-notification": {fmt.Errorf("%w: autoscaling:TEST_NOTIFICATION", server.ErrIgnoredEvent)},
		"not-json":          {fmt.Errorf("%w: invalid character", server.ErrBadEvent)},
	})
	stop := start(t, newPoller(t, f, Config{WaitSeconds: 1}, h))

	eventually(t, "both messages to be deleted", func() bool { return f.message(ignored).deleted && f.message(bad).deleted })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, id := range []string{ignored, bad} {
		if m := f.message(id); m.receiveCount != 1 {
			t.Errorf("%s received %d times, want once (deleted on first delivery)", id, m.receiveCount)
		}
	}
}

func TestTransientFailureIsRedeliveredAfterVisibilityTimeout(t *testing.T) {
	f := newFakeSQS(t, 30*time.Second)
	id := f.send("launch-i-2")
	h := newHandler(map[string][]error{"launch-i-2": {errors.New("temporal: connection refused"), nil}})
	var deletedAtFirstRetry bool
	h.onCall = func(_ string, n int) {
		if n == 2 {
			deletedAtFirstRetry = f.message(id).deleted
		}
	}
	// A 1 s visibility timeout, sent with the receive, overrides the queue's
	// 30 s: the only way the message comes back within the test is if the
	// poller passed it and did not delete the message.
	stop := start(t, newPoller(t, f, Config{WaitSeconds: 1, VisibilityTimeout: 1}, h))

	eventually(t, "the redelivered message to be deleted", func() bool { return f.message(id).deleted })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if deletedAtFirstRetry {
		t.Error("the message was deleted after the failed Handle")
	}
	m := f.message(id)
	if m.receiveCount != 2 || h.count("launch-i-2") != 2 {
		t.Errorf("received %d times, handled %d times; want 2 and 2", m.receiveCount, h.count("launch-i-2"))
	}
	if want := id + "-receipt-2"; m.deletedByHand != want {
		t.Errorf("deleted with receipt handle %q, want the redelivery's %q", m.deletedByHand, want)
	}
}

func TestCancelStopsLongPollPromptly(t *testing.T) {
	f := newFakeSQS(t, 30*time.Second)
	stop := start(t, newPoller(t, f, Config{WaitSeconds: 20}, newHandler(nil)))
	eventually(t, "a long poll to be in progress", func() bool { _, _, receiving := f.stats(); return receiving == 1 })

	// stop fails if Run outlives its context by 10 s; the long poll alone
	// would hold it for 20 s.
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestReceiveErrorsBackOffAndResetAfterSuccess(t *testing.T) {
	f := newFakeSQS(t, 30*time.Second)
	f.failReceives = 4
	id := f.send("launch-i-3")
	h := newHandler(map[string][]error{"launch-i-3": {nil}})
	// After the message is handled, two more failures: their backoff must
	// start again from the minimum.
	h.onCall = func(string, int) {
		f.mu.Lock()
		f.failReceives = 2
		f.mu.Unlock()
	}
	p := newPoller(t, f, Config{WaitSeconds: 1, MinBackoff: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, h)

	// The poller stops itself at the sixth wait; the timeout only catches a
	// poller that never waits that often.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var waits []time.Duration
	p.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		if len(waits) == 6 {
			cancel()
		}
		return ctx.Err()
	}
	if err := p.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(waits) != 6 {
		t.Fatalf("Run waited %d times before its 10 s deadline, want 6 (one per failed receive): %v", len(waits), waits)
	}
	if !f.message(id).deleted {
		t.Error("the message was not handled once the queue recovered")
	}
	receives, _, _ := f.stats()
	if receives != 7 {
		t.Errorf("%d receives, want 7 (4 failed, 1 with the message, 2 failed)", receives)
	}
	// The n-th consecutive failure waits between half and all of
	// min·2^(n-1), capped at max.
	ceil := []time.Duration{100, 200, 400, 500, 100, 200}
	for i, w := range waits {
		c := ceil[i] * time.Millisecond
		if w < c/2 || w > c {
			t.Errorf("wait %d = %s, want within [%s, %s]; all waits %v", i+1, w, c/2, c, waits)
		}
	}
}

func TestMisconfiguredQueueFailsAtStart(t *testing.T) {
	f := newFakeSQS(t, 30*time.Second)
	p := newPoller(t, f, Config{QueueURL: f.srv.URL + "/123456789012/no-such-queue", WaitSeconds: 1}, newHandler(nil))
	p.sleep = func(context.Context, time.Duration) error {
		t.Error("Run backed off on an error that retrying cannot fix")
		return errors.New("stop")
	}
	err := p.Run(context.Background())
	var qdne *types.QueueDoesNotExist
	if !errors.As(err, &qdne) || !strings.Contains(err.Error(), "server.lifecycle_sqs.queue_url") {
		t.Fatalf("Run = %v, want a wrapped *types.QueueDoesNotExist naming server.lifecycle_sqs.queue_url", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	h := newHandler(nil)
	for name, cfg := range map[string]Config{
		"no queue URL":       {},
		"relative URL":       {QueueURL: "lifecycle"},
		"wait over 20 s":     {QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q", WaitSeconds: 21},
		"batch over 10":      {QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q", MaxMessages: 11},
		"negative vis":       {QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q", VisibilityTimeout: -1},
		"max under min wait": {QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q", MinBackoff: time.Minute, MaxBackoff: time.Second},
	} {
		if _, err := New(context.Background(), cfg, h, nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := New(context.Background(), Config{QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/q"}, nil, nil); err == nil {
		t.Error("New accepted a nil handler")
	}
}

func TestRegionComesFromQueueURLWhenUnset(t *testing.T) {
	// Isolate the SDK's configuration chain from the machine running the test.
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	creds := credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")

	p, err := New(context.Background(), Config{QueueURL: "https://sqs.ap-southeast-2.amazonaws.com/123456789012/lifecycle", Credentials: creds}, newHandler(nil), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got := p.client.Options().Region; got != "ap-southeast-2" {
		t.Errorf("region = %q, want ap-southeast-2 from the queue URL", got)
	}
	_, err = New(context.Background(), Config{QueueURL: "http://localhost:9324/000000000000/lifecycle", Credentials: creds}, newHandler(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("New with no region anywhere = %v, want an error asking for one", err)
	}
}

func TestBackoffStaysWithinBounds(t *testing.T) {
	lo, hi := time.Second, time.Minute
	for n := 1; n <= 200; n++ {
		c := min(lo<<min(n-1, 6), hi)
		for range 20 {
			if d := backoff(lo, hi, n); d < c/2 || d > c {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, c/2, c)
			}
		}
	}
}
