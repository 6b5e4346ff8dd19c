// Command mageflow-agent is a host's agent: it runs as root on an app
// server (or a balancer), polls the host's own task queue and runs only
// the host activities. It is small on purpose: see internal/front/agentapp.
//
//	mageflow-agent --host NAME [--group GROUP] [--serve-web] [--config FILE]
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mageflow/mageflow/internal/front/agentapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agentapp.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
