package tclass_test

import (
	"os"
	"testing"

	"github.com/containerflow/containerflow/internal/tclass"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

// `cflow agent serve --link-rate` (started by the testbed, as on a real
// host) installs the classes on its uplink; a restarted agent finds them
// and brings them to its flags instead of stacking another qdisc; one
// started without the flag removes them.
func TestAgentLinkRateFlag(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbtest.Up(t, "l", testbed.Config{AgentBinary: self, LinkRate: 80e6})
	for _, h := range tb.Hosts() {
		ns, _ := tb.Netns(h)
		checkInstalled(t, ns, 80e6, 1)
	}
	ns, _ := tb.Netns(testbed.HostA)
	restart := func(tb *testbed.Testbed) {
		t.Helper()
		if err := tb.KillAgent(testbed.HostA); err != nil {
			t.Fatal(err)
		}
		if err := tb.StartAgent(self, testbed.HostA); err != nil {
			t.Fatal(err)
		}
	}
	restart(tb)
	checkInstalled(t, ns, 80e6, 1)

	faster := *tb
	faster.LinkRate = 120e6
	restart(&faster)
	checkInstalled(t, ns, 120e6, 1)

	off := *tb
	off.LinkRate = 0
	restart(&off)
	st, err := tclass.Read(ns, testbed.UplinkIf)
	if err != nil || st.Installed || st.HTBQdiscs != 0 {
		t.Fatalf("agent without --link-rate left %+v (%v)", st, err)
	}
	// hostB's, untouched by hostA's agent.
	nsB, _ := tb.Netns(testbed.HostB)
	checkInstalled(t, nsB, 80e6, 1)
}
