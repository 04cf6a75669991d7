// Command loadgen is the experiment's load generator as a standalone
// binary (the same code as `cflow loadgen`, whose flags it takes).
//
//go:debug multipathtcp=0
package main

import (
	"os"

	"github.com/containerflow/containerflow/internal/cli"
)

func main() {
	os.Args = append([]string{os.Args[0], "loadgen"}, os.Args[1:]...)
	os.Exit(cli.Execute())
}
