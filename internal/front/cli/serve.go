package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/mageflow/mageflow/internal/build/catalog"
	"github.com/mageflow/mageflow/internal/build/release"
	"github.com/mageflow/mageflow/internal/build/store"
	"github.com/mageflow/mageflow/internal/front/server"
	"github.com/mageflow/mageflow/internal/front/sqspoll"
	"github.com/mageflow/mageflow/internal/front/start"
	"github.com/mageflow/mageflow/internal/platform/codec"
	"github.com/mageflow/mageflow/internal/platform/config"
	"github.com/mageflow/mageflow/internal/platform/secrets"
	"github.com/mageflow/mageflow/internal/platform/webhook"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := newFlags("serve", stderr)
	listen := e.fs.String("listen", "", "address to listen on (default server.listen, 127.0.0.1:8080)")
	if err := e.parse(args); err != nil {
		return err
	}
	cfg, err := e.config(true)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	logger := e.logger(stderr)
	c, cdc, err := dial(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	return Serve(ctx, cfg, c, cdc, logger, nil)
}

// Serve runs the HTTP server until ctx ends. ready, if not nil, receives the
// bound address once the server accepts connections.
func Serve(ctx context.Context, cfg *config.Config, c client.Client, cdc *codec.Codec, logger *slog.Logger, ready chan<- string) error {
	st, err := store.Configured(ctx, cfg.Artifacts)
	if err != nil {
		return err
	}
	h, err := NewHandler(cfg, c, cdc, st, logger)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	if q := cfg.Server.LifecycleSQS; q != nil {
		p, err := sqspoll.New(ctx, sqspoll.Config{QueueURL: q.QueueURL, Region: q.Region, Endpoint: q.Endpoint, VisibilityTimeout: q.VisibilityTimeout},
			&start.Fleet{Client: c, Config: cfg}, logger)
		if err != nil {
			return fmt.Errorf("server.lifecycle_sqs: %w", err)
		}
		go func() {
			if err := p.Run(ctx); err != nil {
				errc <- fmt.Errorf("lifecycle SQS poller: %w", err)
			}
		}()
		logger.Info("polling lifecycle events", "queue", q.QueueURL)
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another mageflow serve running? choose another with --listen or server.listen)", cfg.Server.Listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	logger.Info("mageflow server listening", "url", "http://"+ln.Addr().String(), "dashboard", cfg.Server.PublicURL+"/")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// NewHandler wires the server package to Temporal, the store and the config.
func NewHandler(cfg *config.Config, c client.Client, cdc *codec.Codec, st store.Store, logger *slog.Logger) (http.Handler, error) {
	area := secrets.Area{Dir: cfg.Secrets.Dir}
	var apps []server.App
	for _, name := range cfg.AppNames() {
		a := cfg.Apps[name]
		sa := server.App{Name: name, RepoURL: a.Repo, Branches: a.BranchEnvironments()}
		if a.Webhook != nil {
			ref := a.Webhook.Secret
			sa.Provider = webhook.Provider(a.Webhook.Provider)
			sa.Secret = func() ([]byte, error) { return area.Read(ref) }
		}
		apps = append(apps, sa)
	}
	var codecHandler http.Handler
	codecOrigins := codec.UIOrigins(cfg.Temporal.UIURL)
	if cdc != nil {
		codecHandler = codec.Handler(cdc, codecOrigins)
	}
	starter := &start.Builds{Client: c, Config: cfg}
	var auth server.Auth
	if ref := cfg.Server.Auth.Token; ref != "" {
		auth.Token = func() ([]byte, error) { return area.Read(ref) }
	}
	if ref := cfg.Server.Auth.BasicPassword; ref != "" {
		auth.BasicUser = cfg.Server.Auth.BasicUser
		auth.BasicPassword = func() ([]byte, error) { return area.Read(ref) }
	}
	var explicitOff bool
	auth.ProtectViews, explicitOff = cfg.Server.ViewsProtected()
	if explicitOff {
		logger.Warn("server.auth.protect_views is false on a listen address beyond loopback: anyone who reaches "+cfg.Server.Listen+
			" reads releases, commit messages, hosts and deployers; remove the key (protected by default) unless a proxy in front authenticates", "listen", cfg.Server.Listen)
	}
	auth.AllowSelfApproval = cfg.Server.Auth.AllowSelfApproval
	var lifecycleToken func() ([]byte, error)
	if ref := cfg.Server.LifecycleToken; ref != "" {
		lifecycleToken = func() ([]byte, error) { return area.Read(ref) }
	}
	return server.New(server.Options{
		Lifecycle:      &start.Fleet{Client: c, Config: cfg},
		LifecycleToken: lifecycleToken,
		Deploys:        start.Dashboard{C: &start.Deploys{Temporal: c, Config: cfg, Store: st}},
		HardenReports:  hardenReports{cfg: cfg, st: st},
		Auth:           auth,
		Apps:           apps,
		Builds:         buildsAdapter{starter},
		Releases:       releasesAdapter{st},
		Codec:          codecHandler,
		CodecOrigins:   codecOrigins,
		LoopbackOnly:   config.IsLoopbackListen(cfg.Server.Listen),
		Logger:         logger,
		MaxBody:        cfg.Server.MaxBody,
		WebhookMaxAge:  cfg.Server.WebhookMaxAge.Duration,
		UIBaseURL:      cfg.Temporal.UIURL,
		Namespace:      cfg.Temporal.Namespace,
		Ready: func(ctx context.Context) error {
			_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
			if err != nil {
				return fmt.Errorf("temporal unreachable: %w", err)
			}
			return nil
		},
	}), nil
}

type buildsAdapter struct{ s *start.Builds }

func (b buildsAdapter) StartBuild(ctx context.Context, req server.BuildRequest) (string, error) {
	run, err := b.s.Start(ctx, start.BuildRequest{
		App: req.App, Ref: req.Ref, Commit: req.Commit, Branch: req.Branch, Trigger: req.Trigger, DeliveryID: req.DeliveryID,
	})
	if err != nil {
		return "", err
	}
	return run.GetID(), nil
}

type releasesAdapter struct{ st store.Store }

func (r releasesAdapter) List(ctx context.Context, app string) ([]release.Meta, error) {
	return catalog.List(ctx, r.st, app)
}
