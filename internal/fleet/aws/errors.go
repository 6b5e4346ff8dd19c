package aws

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"

	"github.com/mageflow/mageflow/internal/fleet"
)

// retryableCodes are Auto Scaling and EC2 faults that describe a passing
// state of the group rather than a wrong request. The SDK does not retry most
// of them (they are 400s), and should not: they last seconds to minutes, which
// is the job of the caller's (Temporal's) slower backoff.
var retryableCodes = map[string]bool{
	"ScalingActivityInProgress": true, // another scaling activity on the group
	"ResourceContention":        true, // concurrent updates of the group
	"InstanceRefreshInProgress": true, // an AWS instance refresh owns the group
	"InternalFailure":           true,
	"InternalError":             true,
	"ServiceUnavailable":        true,
	"Unavailable":               true,
}

// permanentHints tells the operator what to do about common permanent faults.
var permanentHints = map[string]string{
	"AccessDenied":          "grant the mageflow role this Auto Scaling/EC2 action",
	"UnauthorizedOperation": "grant the mageflow role this EC2 action",
	"ExpiredToken":          "refresh the AWS credentials mageflow runs with",
	"InvalidClientTokenId":  "check the AWS credentials mageflow runs with",
	"AlreadyExists":         "the resource exists already; pick another name",
	"LimitExceeded":         "an account quota is reached; raise it or remove unused resources",
	"ServiceLinkedRoleFailure": "create the Auto Scaling service-linked role " +
		"(AWSServiceRoleForAutoScaling) in this account",
}

// classify wraps an SDK error into a *fleet.Error whose class tells the
// caller whether to retry. It runs after the SDK's own retryer has given up,
// so a throttling code here means throttling outlasted the quick retries.
func classify(op, subject string, err error) error {
	if err == nil {
		return nil
	}
	fe := &fleet.Error{Op: op, Subject: subject, Err: err}
	var apiErr smithy.APIError
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The caller stopped waiting; its own context decides what happens
		// next, so no class is added.
		fe.Code = "Canceled"
	case errors.As(err, &apiErr):
		fe.Code = apiErr.ErrorCode()
		fe.Hint, fe.Class = classifyCode(fe.Code, apiErr.ErrorMessage())
	default:
		// No API answer at all: the endpoint could not be reached or the
		// response could not be read after the SDK's retries. The request
		// may or may not have been applied; every operation here is safe to
		// repeat, so let the caller retry later.
		fe.Code = "Transport"
		fe.Class = fleet.ErrRetryable
	}
	return fe
}

// classifyCode maps an AWS error code and message to a fleet class and hint.
func classifyCode(code, msg string) (hint string, class error) {
	lmsg := strings.ToLower(msg)
	switch {
	case retryableCodes[code]:
		return "", fleet.ErrRetryable
	case isThrottle(code):
		return "", fleet.ErrRetryable
	case code == "ValidationError" && strings.Contains(lmsg, "no active lifecycle action"):
		return "", fleet.ErrNoActiveAction
	case code == "ValidationError" && (strings.Contains(lmsg, "not found") || strings.Contains(lmsg, "no managed instance")):
		return "", fleet.ErrNotFound
	case strings.Contains(code, ".NotFound"): // EC2: InvalidInstanceID.NotFound, InvalidAMIID.NotFound…
		return "", fleet.ErrNotFound
	case code == "ValidationError":
		return "the request was refused as invalid; check the group's min/max/desired and the names passed", nil
	}
	if h, ok := permanentHints[code]; ok {
		return h, nil
	}
	return "see the AWS error code in the message", nil
}

func isThrottle(code string) bool {
	_, ok := retry.DefaultThrottleErrorCodes[code]
	return ok && code != "LimitExceededException"
}
