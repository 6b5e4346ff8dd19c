package start

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Starts whose workflow id comes from stable input and whose conflict
// policy is USE_EXISTING (a build per commit, a readiness per lifecycle
// action) are idempotent: asking again can only join or return the run the
// first request created. Such a start is retried when the server did not
// answer in time or shed the request, which is what a burst of pushes does
// to a loaded cluster: 44 of 1,000 build starts timed out on the cluster in
// the scale benchmark before this (docs/benchmarks.md).
const (
	startRetryFirst = 200 * time.Millisecond
	startRetryMax   = 5 * time.Second
	// startRetryBudget bounds the retries of one start when the caller's
	// context has no earlier deadline.
	startRetryBudget = 2 * time.Minute
)

// transientStartError reports whether err means "the server may not have
// seen or finished the request; asking again is safe for an idempotent
// start": a timeout of the call itself, an unavailable or overloaded
// frontend. Anything else (a bad request, a permission, an unknown
// namespace) is returned at once.
func transientStartError(err error) bool {
	var unavailable *serviceerror.Unavailable
	var exhausted *serviceerror.ResourceExhausted
	var deadline *serviceerror.DeadlineExceeded
	if errors.As(err, &unavailable) || errors.As(err, &exhausted) || errors.As(err, &deadline) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

// retryIdempotentStart calls start until it succeeds, fails with a
// non-transient error, or the caller's context (or startRetryBudget) ends;
// it then returns the last error. retries counts the calls after the first.
func retryIdempotentStart[T any](ctx context.Context, start func(context.Context) (T, error)) (v T, retries int, err error) {
	budget, cancel := context.WithTimeout(ctx, startRetryBudget)
	defer cancel()
	wait := startRetryFirst
	for {
		v, err = start(budget)
		if err == nil || !transientStartError(err) || ctx.Err() != nil {
			return v, retries, err
		}
		t := time.NewTimer(wait)
		select {
		case <-budget.Done():
			t.Stop()
			return v, retries, err
		case <-t.C:
		}
		retries++
		wait = min(2*wait, startRetryMax)
	}
}
