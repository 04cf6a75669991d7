package testbed

import (
	"fmt"
	"strings"
)

// Migration networks (Config.MigrationNet, `testbed up --migration-net`).
const (
	MigrationNetMgmt = "mgmt"
	MigrationNetData = "data"
)

// ValidateMigrationNet checks a migration network name; "" is the default.
func ValidateMigrationNet(n string) error {
	switch n {
	case "", MigrationNetMgmt, MigrationNetData:
		return nil
	}
	return fmt.Errorf("%w: %q (want %s or %s)", ErrBadMigNet, n, MigrationNetMgmt, MigrationNetData)
}

// MigratesOverData reports whether the agents call each other on the
// data network.
func (tb *Testbed) MigratesOverData() bool { return tb.MigrationNet == MigrationNetData }

// AgentDataTLSURL is a host agent's mutual-TLS address on the data
// network (a testbed with MigrationNet data). The certificate it shows is
// checked against the host's name, not the address, so the same one
// serves on both networks.
func AgentDataTLSURL(host string) string {
	return agentURL(host, "https", true, AgentPort)
}

// AgentDataPlainURL is the plain listener of an insecure testbed's agent
// on the data network.
func AgentDataPlainURL(host string) string {
	return agentURL(host, "http", true, AgentPlainPort)
}

// agentDataURL is an agent without TLS on the data network.
func agentDataURL(host string) string {
	return agentURL(host, "http", true, AgentPort)
}

// listenArgs are an agent's listener flags. On the management network
// only by default; with migration over data, on every address of the
// host's namespace (its management and data addresses, nothing else: the
// namespace has no other), and the controller's fleet is told the
// management URL (--advertise-url), so it calls the agent where it always
// did.
func (tb *Testbed) listenArgs(h string) []string {
	hostPort := func(u string) string { return u[strings.Index(u, "//")+2:] }
	anyAddr := func(port int) string { return fmt.Sprintf("0.0.0.0:%d", port) }
	var args []string
	switch {
	case tb.TLS && tb.MigratesOverData():
		args = []string{"--tls-dir", tb.PKIDir(), "--listen", anyAddr(AgentPort), "--advertise-url", AgentTLSURL(h)}
		if tb.Insecure {
			args = append(args, "--insecure", "--insecure-listen", anyAddr(AgentPlainPort))
		}
	case tb.TLS:
		args = []string{"--tls-dir", tb.PKIDir(), "--listen", hostPort(AgentTLSURL(h))}
		if tb.Insecure {
			args = append(args, "--insecure", "--insecure-listen", hostPort(AgentPlainURL(h)))
		}
	case tb.MigratesOverData():
		args = []string{"--insecure", "--listen", anyAddr(AgentPort), "--advertise-url", AgentURL(h)}
	default:
		args = []string{"--insecure", "--listen", hostPort(AgentURL(h))}
	}
	return args
}

// peerArgs are an agent's --peer (and --plain-peer) flags: every other
// host, on the migration network.
func (tb *Testbed) peerArgs(h string) []string {
	var args []string
	for _, p := range tb.Hosts() {
		if p == h {
			continue
		}
		data := tb.MigratesOverData()
		switch {
		case tb.TLS && data:
			args = append(args, "--peer", p+"="+AgentDataTLSURL(p))
			if tb.Insecure {
				args = append(args, "--plain-peer", p+"="+AgentDataPlainURL(p))
			}
		case tb.TLS:
			args = append(args, "--peer", p+"="+AgentTLSURL(p))
			if tb.Insecure {
				args = append(args, "--plain-peer", p+"="+AgentPlainURL(p))
			}
		case data:
			args = append(args, "--peer", p+"="+agentDataURL(p))
		default:
			args = append(args, "--peer", p+"="+AgentURL(p))
		}
	}
	return args
}

// linkRateArgs pass the testbed's link rate to an agent.
func (tb *Testbed) linkRateArgs() []string {
	if tb.LinkRate == 0 {
		return nil
	}
	return []string{"--link-rate", FormatRate(tb.LinkRate)}
}
