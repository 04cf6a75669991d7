package cli

import (
	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/testbed"
)

// agentTLSClient is a client of host's agent over mutual TLS on the
// testbed's management network, as identity id, dialing from the switch
// namespace (the management bridge's own): what `--tls` makes the CLI use
// instead of the agents' unix sockets.
func agentTLSClient(tb *testbed.Testbed, host string, id *pki.Identity) (*agent.Client, error) {
	tok, err := tb.Token()
	if err != nil {
		return nil, err
	}
	ns, err := tb.Netns(testbed.Switch)
	if err != nil {
		return nil, err
	}
	return agent.NewClient(testbed.AgentTLSURL(host), agent.ClientOptions{Token: tok, Netns: ns, TLS: id.ClientConfig(host)}), nil
}
