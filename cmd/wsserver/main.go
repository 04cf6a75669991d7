// Command wsserver is the experiment's WebSocket workload server as a
// standalone binary, for running it outside the testbed (the experiment
// itself runs the same code as `cflow workload ws-server`, so containers
// need no second binary). Flags are those of `cflow workload ws-server`.
//
// MPTCP is off because CRIU cannot dump MPTCP sockets, and Go 1.24+
// listeners would otherwise use it by default.

//go:debug multipathtcp=0
package main

import (
	"os"

	"github.com/containerflow/containerflow/internal/cli"
)

func main() {
	os.Args = append([]string{os.Args[0], "workload", "ws-server"}, os.Args[1:]...)
	os.Exit(cli.Execute())
}
