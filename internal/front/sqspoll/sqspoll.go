// Package sqspoll feeds Auto Scaling lifecycle events from an SQS queue to
// the same server.Lifecycle handler that backs POST /hooks/aws-lifecycle.
//
// A queue is the delivery path for operators who cannot expose mageflow to
// EventBridge API destinations: EventBridge (or a lifecycle hook's own
// notification target) writes to SQS, and `mageflow serve` long-polls it
// from inside the private network.
//
// Delivery is at least once on both sides. A message is deleted only once
// its event is settled: the readiness run was started (or joined), or the
// event can never start one (ignored or malformed). Any other failure, such
// as Temporal being unreachable, leaves the message in the queue so SQS hands
// it out again after its visibility timeout; the duplicate start joins the
// run already begun, because the readiness workflow ID is derived from the
// instance and its lifecycle token.
package sqspoll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/mageflow/mageflow/internal/front/server"
	"github.com/mageflow/mageflow/internal/platform/units"
)

// Defaults and limits from the SQS ReceiveMessage API reference.
const (
	DefaultWaitSeconds   = 20 // the longest long poll SQS allows: fewest empty receives
	DefaultMaxMessages   = 10 // the most one ReceiveMessage returns
	maxVisibilitySeconds = 12 * 60 * 60

	// DefaultHandleTimeout bounds one Handle call, as the HTTP endpoint does:
	// starting a workflow is one Temporal RPC, and a call that hangs longer
	// would outlive the message's visibility timeout anyway.
	DefaultHandleTimeout = 10 * time.Second
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait after a failed
	// receive; the cap keeps recovery within a minute of the queue coming
	// back while costing at most one request a minute while it is down.
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute

	// deleteTimeout bounds a DeleteMessage, which runs even after Run's
	// context ends so that an event already started is not redelivered.
	deleteTimeout = 5 * time.Second
)

// Config locates the queue and tunes the poll. Zero values take defaults.
type Config struct {
	// QueueURL is the queue's URL as SQS prints it,
	// https://sqs.<region>.amazonaws.com/<account>/<name>. Required.
	QueueURL string
	// Region of the queue; when empty, the SDK's chain (AWS_REGION,
	// ~/.aws/config) is used, then the region in an AWS queue URL.
	Region string
	// Endpoint overrides the SQS endpoint (LocalStack, ElasticMQ, a VPC
	// endpoint URL); empty means the region's public endpoint.
	Endpoint string
	// WaitSeconds is the long-poll wait, 1..20 (default 20).
	WaitSeconds int32
	// MaxMessages is the batch size of one receive, 1..10 (default 10).
	MaxMessages int32
	// VisibilityTimeout, in seconds, overrides the queue's own for received
	// messages: how long a message whose start failed stays hidden before it
	// is retried. 0 keeps the queue's setting.
	VisibilityTimeout int32
	// HandleTimeout bounds one Handle call (default 10 s).
	HandleTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential wait after a
	// failed receive (defaults 1 s and 1 min).
	MinBackoff, MaxBackoff time.Duration
	// Credentials overrides the SDK's default credential chain; nil keeps it.
	Credentials aws.CredentialsProvider
}

// Poller long-polls an SQS queue of EventBridge lifecycle events and hands
// each body to a server.Lifecycle.
type Poller struct {
	client  *sqs.Client
	cfg     Config
	handler server.Lifecycle
	log     *slog.Logger
	// sleep waits d or until ctx ends; tests replace it to observe backoff
	// without waiting for it.
	sleep func(ctx context.Context, d time.Duration) error
}

// New checks cfg, loads the AWS configuration and builds the SQS client. It
// makes no request: a wrong queue URL or missing permission shows up on the
// first receive, which Run reports.
func New(ctx context.Context, cfg Config, h server.Lifecycle, logger *slog.Logger) (*Poller, error) {
	if h == nil {
		return nil, errors.New("sqspoll: no lifecycle handler: declare groups: so that lifecycle events have somewhere to go")
	}
	if logger == nil {
		logger = slog.Default()
	}
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("sqspoll: load AWS configuration: %w (check AWS_PROFILE and ~/.aws/config)", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = regionFromQueueURL(cfg.QueueURL)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("sqspoll: no AWS region for the lifecycle queue: set server.lifecycle_sqs.region or AWS_REGION")
	}
	client := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &Poller{client: client, cfg: cfg, handler: h, log: logger.With("queue", cfg.QueueURL), sleep: sleepCtx}, nil
}

// withDefaults validates cfg against the SQS limits and fills its zero values.
func withDefaults(cfg Config) (Config, error) {
	u, err := url.Parse(cfg.QueueURL)
	if cfg.QueueURL == "" || err != nil || u.Scheme == "" || u.Host == "" {
		return cfg, fmt.Errorf("sqspoll: queue URL %q is not a URL: set server.lifecycle_sqs.queue_url to the queue's URL (aws sqs get-queue-url --queue-name NAME)", cfg.QueueURL)
	}
	if cfg.WaitSeconds == 0 {
		cfg.WaitSeconds = DefaultWaitSeconds
	}
	if cfg.WaitSeconds < 1 || cfg.WaitSeconds > 20 {
		return cfg, fmt.Errorf("sqspoll: wait of %d s is outside SQS's 1..20 s long-poll range", cfg.WaitSeconds)
	}
	if cfg.MaxMessages == 0 {
		cfg.MaxMessages = DefaultMaxMessages
	}
	if cfg.MaxMessages < 1 || cfg.MaxMessages > 10 {
		return cfg, fmt.Errorf("sqspoll: batch of %d messages is outside SQS's 1..10 range", cfg.MaxMessages)
	}
	if cfg.VisibilityTimeout < 0 || cfg.VisibilityTimeout > maxVisibilitySeconds {
		return cfg, fmt.Errorf("sqspoll: visibility timeout of %d s is outside SQS's 0..43200 s range", cfg.VisibilityTimeout)
	}
	if cfg.HandleTimeout <= 0 {
		cfg.HandleTimeout = DefaultHandleTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		return cfg, fmt.Errorf("sqspoll: maximum backoff %s is below the minimum %s", cfg.MaxBackoff, cfg.MinBackoff)
	}
	return cfg, nil
}

// regionFromQueueURL reads the region out of an AWS queue URL
// (https://sqs.eu-west-1.amazonaws.com/…), so the URL alone is enough
// configuration; other hosts yield "".
func regionFromQueueURL(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return ""
	}
	labels := strings.Split(u.Hostname(), ".")
	if len(labels) >= 4 && labels[0] == "sqs" && labels[2] == "amazonaws" {
		return labels[1]
	}
	return ""
}

// Run polls until ctx ends, then returns nil. Messages received but not yet
// handled when ctx ends stay in the queue and are redelivered.
//
// Receive failures are logged and retried after a jittered exponential
// backoff, except that a failure before the first successful receive which
// no retry can fix (no such queue, access denied, bad credentials) is
// returned, so that a misconfigured `mageflow serve` stops at start-up
// rather than logging the same error forever.
func (p *Poller) Run(ctx context.Context) error {
	p.log.Info("polling SQS for lifecycle events", "wait_seconds", p.cfg.WaitSeconds, "max_messages", p.cfg.MaxMessages)
	failures := 0
	received := false
	for ctx.Err() == nil {
		msgs, err := p.receive(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			if !received && permanent(err) {
				return fmt.Errorf("sqspoll: receive from %s: %w (check server.lifecycle_sqs.queue_url, its region, and that mageflow's role may sqs:ReceiveMessage and sqs:DeleteMessage)", p.cfg.QueueURL, err)
			}
			failures++
			wait := backoff(p.cfg.MinBackoff, p.cfg.MaxBackoff, failures)
			p.log.Warn("SQS receive failed; retrying", "error", err, "failures", failures, "retry_in", wait)
			if p.sleep(ctx, wait) != nil {
				break
			}
			continue
		}
		received = true
		failures = 0
		for _, m := range msgs {
			if ctx.Err() != nil {
				break
			}
			p.process(ctx, m)
		}
	}
	p.log.Info("stopped polling SQS for lifecycle events")
	return nil
}

// receive long-polls one batch. SDK retries are off for this call: the loop
// in Run is the retry, and stacking the SDK's own backoff beneath it would
// hide failures for up to a minute and drain the client's retry quota that
// DeleteMessage relies on.
func (p *Poller) receive(ctx context.Context) ([]types.Message, error) {
	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(p.cfg.QueueURL),
		MaxNumberOfMessages:         p.cfg.MaxMessages,
		WaitTimeSeconds:             p.cfg.WaitSeconds,
		VisibilityTimeout:           p.cfg.VisibilityTimeout,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	}
	out, err := p.client.ReceiveMessage(ctx, in, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		return nil, err
	}
	return out.Messages, nil
}

// process hands one message to the handler and deletes it unless the
// failure is one a later delivery could fix.
func (p *Poller) process(ctx context.Context, m types.Message) {
	log := p.log.With("message_id", aws.ToString(m.MessageId), "receive_count", m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	hctx, cancel := context.WithTimeout(ctx, p.cfg.HandleTimeout)
	id, err := p.handler.Handle(hctx, []byte(aws.ToString(m.Body)))
	cancel()
	switch {
	case err == nil:
		log.Info("lifecycle event started its readiness run", "workflow_id", id)
	case errors.Is(err, server.ErrIgnoredEvent):
		log.Info("lifecycle queue message ignored", "reason", err)
	case errors.Is(err, server.ErrBadEvent):
		// Poison: no redelivery can parse it, so keeping it would only
		// block the queue's receive count until a dead-letter queue took it.
		log.Error("malformed lifecycle event dropped", "error", err, "body", units.Truncate(aws.ToString(m.Body), 512))
	default:
		log.Error("lifecycle event not started; SQS will redeliver it after the visibility timeout", "error", err)
		return
	}
	// The event is settled: delete it even if ctx has just ended, or it
	// would come back as a (harmless but noisy) duplicate.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	if _, err := p.client.DeleteMessage(dctx, &sqs.DeleteMessageInput{
		QueueUrl:      aws.String(p.cfg.QueueURL),
		ReceiptHandle: m.ReceiptHandle,
	}); err != nil {
		log.Warn("could not delete a handled lifecycle message; it will be delivered again and join the same run", "error", err)
	}
}

// permanent reports receive errors that come from configuration, which
// retrying cannot fix.
func permanent(err error) bool {
	var qdne *types.QueueDoesNotExist
	if errors.As(err, &qdne) {
		return true
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",
		"AccessDenied", "AccessDeniedException", "InvalidAddress", "InvalidSecurity",
		"UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch":
		return true
	}
	return false
}

// backoff is the wait after the n-th consecutive failure (n ≥ 1): min·2^(n-1)
// capped at max, then jittered down to between half and all of it, so that
// several servers polling one queue do not retry in lockstep.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		if d > hi/2 {
			d = hi
			break
		}
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleepCtx waits d or until ctx ends, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
