// Command mageflow-worker runs the control worker (every mageflow workflow
// and the central activities: git, builds, artifact store) or, with
// --agent --host NAME, a host agent. See internal/front/workerapp.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mageflow/mageflow/internal/front/workerapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := workerapp.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
