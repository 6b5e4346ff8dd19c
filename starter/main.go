// Command mageflow is the operator's entry point. Its commands live in
// internal/cli; `mageflow help` lists them all.
package main

import (
	"os"

	"github.com/mageflow/mageflow/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
