// Command mageflow is the operator's entry point: `mageflow dev` runs the
// whole stack on one machine, `mageflow serve` the webhook/dashboard server,
// and `mageflow build` / `mageflow releases` start and list builds.
package main

import (
	"os"

	"github.com/mageflow/mageflow/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
