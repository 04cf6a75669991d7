package testbed

import (
	"os"
	"path/filepath"
	"time"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/pki"
)

// PKIDir holds the testbed's CA and the certificates of its agents, its
// controller and the CLI (root-only, 0700).
func (tb *Testbed) PKIDir() string { return filepath.Join(tb.Dir(), "pki") }

// ensurePKI creates the testbed's CA and one certificate per identity,
// each valid for its node's management address, unless they exist.
func (tb *Testbed) ensurePKI() error {
	dir := tb.PKIDir()
	if err := pki.InitCA(dir); err != nil {
		return err
	}
	ids := map[string][]string{pki.Controller: {SwitchMgmtIP.String()}, pki.CLI: nil}
	for _, h := range tb.Hosts() {
		s, _ := tb.Spec(h)
		ids[h] = []string{s.MgmtIP.String()}
	}
	for name, ips := range ids {
		if _, err := os.Stat(pki.CertPath(dir, name)); err == nil {
			continue
		}
		if _, _, err := pki.Issue(dir, name, ips); err != nil {
			return err
		}
	}
	return nil
}

// Identity loads one of the testbed's identities (a host, controller, cli).
func (tb *Testbed) Identity(name string) (*pki.Identity, error) {
	return pki.Load(tb.PKIDir(), name)
}

// ControllerTLSClient is a client of the controller over mutual TLS, as
// identity id, dialing from the client node's namespace (the management
// network's other end: the controller runs in the switch namespace).
func (tb *Testbed) ControllerTLSClient(id *pki.Identity) (*controller.Client, error) {
	tok, err := tb.Token()
	if err != nil {
		return nil, err
	}
	ns, err := tb.Netns(Client)
	if err != nil {
		return nil, err
	}
	return controller.NewClient(ControllerTLSURL(), controller.ClientOptions{Token: tok, Timeout: 5 * time.Second,
		TLS: id.ClientConfig(pki.Controller), Netns: ns}), nil
}
