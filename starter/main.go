// Command mageflow is the operator's entry point. Its commands live in
// internal/front/cli; `mageflow help` lists them all.
package main

import (
	"os"

	"github.com/mageflow/mageflow/internal/front/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
