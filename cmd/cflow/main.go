// Command cflow is containerflow's single CLI: testbed, doctor and, in
// later steps, switch, agent, migrate, experiment and plot.
//
// MPTCP is off because CRIU cannot dump MPTCP sockets, and Go 1.24+
// listeners would otherwise use it by default.

//go:debug multipathtcp=0
package main

import (
	"os"

	"github.com/containerflow/containerflow/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
