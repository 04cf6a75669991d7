package tclass_test

import (
	"os"
	"testing"

	"github.com/containerflow/containerflow/internal/cli"
)

// TestMain lets the testbed start this binary as the controller and the
// agents (real `cflow agent serve` processes, with their flags), and
// containers run it as their workload.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "agent" || os.Args[1] == "workload" || os.Args[1] == "switch") {
		os.Exit(cli.Execute())
	}
	os.Exit(m.Run())
}
