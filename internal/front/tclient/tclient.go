// Package tclient builds the Temporal client every mageflow binary uses, so
// the CLI, the server and the worker agree on address, namespace, payload
// encryption and logging.
//
// Precedence: the standard TEMPORAL_* environment variables and the
// Temporal CLI's TOML profile (through envconfig: TEMPORAL_ADDRESS,
// TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*), then mageflow.yaml's
// temporal: section, then the defaults.
package tclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
)

// Options assembles client options; metrics may be nil. It writes the
// effective address and namespace back into cfg.
func Options(cfg *config.Config, logger *slog.Logger, dc converter.DataConverter, metrics client.MetricsHandler) (client.Options, error) {
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{})
	if err != nil {
		return opts, fmt.Errorf("read Temporal client settings from the environment: %w", err)
	}
	if opts.HostPort == "" {
		opts.HostPort = cfg.Temporal.Address
	}
	if opts.Namespace == "" {
		opts.Namespace = cfg.Temporal.Namespace
	}
	// What talks to Temporal through cfg (CheckAgents' DescribeTaskQueue,
	// Web UI links, list queries) must use the namespace the client uses:
	// with TEMPORAL_NAMESPACE set, the config's would be another one.
	cfg.Temporal.Address, cfg.Temporal.Namespace = opts.HostPort, opts.Namespace
	if logger != nil {
		opts.Logger = sdklog.NewStructuredLogger(logger)
	}
	if dc != nil {
		opts.DataConverter = dc
		// Error messages and stack traces are encrypted too: a build failure
		// can quote a log line.
		opts.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter: dc, EncodeCommonAttributes: true,
		})
	}
	if metrics != nil {
		opts.MetricsHandler = metrics
	}
	return opts, nil
}

// DataConverter returns the encrypting converter the config asks for, or nil
// when encryption is disabled.
func DataConverter(cfg *config.Config) (converter.DataConverter, *codec.Codec, error) {
	if cfg.Codec.Disabled {
		return nil, nil, nil
	}
	c, err := LoadCodec(cfg)
	if err != nil {
		return nil, nil, err
	}
	return codec.DataConverter(c), c, nil
}

// LoadCodec reads the payload key from key_env (if set and present) or the
// key file.
func LoadCodec(cfg *config.Config) (*codec.Codec, error) {
	c, err := codec.Load(cfg.Codec.KeyEnv, cfg.Codec.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("payload encryption key: %w (`mageflow dev` creates one; in production set codec.key_file or codec.key_env)", err)
	}
	return c, nil
}

// Dial connects and checks the server answers, with an error that says what
// to do when it does not.
func Dial(ctx context.Context, opts client.Options) (client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		hint := "start it with `make run` (dev server) or point TEMPORAL_ADDRESS / temporal.address at your cluster"
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection refused") {
			return nil, fmt.Errorf("no Temporal server answers at %s: %w; %s", opts.HostPort, err, hint)
		}
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w; %s", opts.HostPort, opts.Namespace, err, hint)
	}
	return c, nil
}
