package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/dataplane"
	"github.com/containerflow/containerflow/internal/nsrun"
)

// Switch kinds.
const (
	// SwitchEBPF is the containerflow switch: the eBPF data plane on the
	// switch namespace's data ports, pinned in bpffs per testbed.
	SwitchEBPF = "ebpf"
	// SwitchBridge is a Linux bridge (br0) with static FDB entries.
	SwitchBridge = "bridge"
)

// ControllerPort is the seed's controller port: the testbed's controller
// serves plain HTTP there only when insecure (the seed's endpoints, for the
// seed's scripts) or when started without TLS (tests, --no-agents).
const ControllerPort = 5000

// ControllerTLSPort is where the controller serves mutual TLS.
const ControllerTLSPort = 5443

// bpffsRoot is the bpffs mount the testbed pins its switch under.
const bpffsRoot = "/sys/fs/bpf"

// ControllerURL is the switch controller's address on the management
// network, as agents reach it.
func ControllerURL() string { return fmt.Sprintf("http://%s:%d", SwitchMgmtIP, ControllerPort) }

// ControllerTLSURL is the controller's mutual-TLS address.
func ControllerTLSURL() string {
	return fmt.Sprintf("https://%s:%d", SwitchMgmtIP, ControllerTLSPort)
}

// ControllerAPIURL is where agents reach this testbed's controller.
func (tb *Testbed) ControllerAPIURL() string {
	if tb.TLS {
		return ControllerTLSURL()
	}
	return ControllerURL()
}

func pinPath(prefix string) string {
	return filepath.Join(bpffsRoot, "containerflow", "testbed-"+prefix)
}

// PinPath is the bpffs directory of the testbed's eBPF switch.
func (tb *Testbed) PinPath() string { return pinPath(tb.Prefix) }

// SwitchDir holds the controller's configuration, state, socket and log.
func (tb *Testbed) SwitchDir() string { return filepath.Join(tb.Dir(), Switch) }

// ControllerSocket is the controller's unix socket, reachable from outside
// the testbed's namespaces.
func (tb *Testbed) ControllerSocket() string { return filepath.Join(tb.SwitchDir(), "controller.sock") }

// ControllerConfig is the switch controller configuration of the default
// testbed (two hosts): see controllerConfig.
func ControllerConfig() *controller.Config { return controllerConfig(Nodes) }

// ControllerConfig is the switch controller configuration of the testbed:
// a data port per edge node, named after it (agents steer to a host by its
// name), and a forward + arp entry per node, which also keeps the nodes'
// addresses out of the controller's name registry.
func (tb *Testbed) ControllerConfig() *controller.Config { return controllerConfig(tb.Nodes()) }

func controllerConfig(nodes []NodeSpec) *controller.Config {
	cfg := &controller.Config{ContainerNet: DataNet.String()}
	for _, n := range nodes {
		p := controller.PortRef(n.Name)
		cfg.Ports = append(cfg.Ports, controller.PortConfig{Number: n.Port, Interface: n.DataPort(), Name: n.Name})
		cfg.Addresses = append(cfg.Addresses, controller.AddressConfig{IP: n.DataIP.String(),
			AddressSpec: controller.AddressSpec{Forward: &controller.ForwardSpec{Port: p}, ARP: &controller.ARPSpec{Port: p}}})
	}
	return cfg
}

// OpenDataplane takes over the testbed's pinned switch. Close the result
// when done: the switch keeps forwarding.
func (tb *Testbed) OpenDataplane() (*dataplane.Dataplane, error) {
	if tb.Switch != SwitchEBPF {
		return nil, fmt.Errorf("testbed %s uses a %s, not the eBPF switch", tb.Prefix, tb.Switch)
	}
	dp, err := dataplane.Load(dataplane.Options{PinPath: tb.PinPath(), Netns: nsrun.Path(tb.mustNetns(Switch))})
	if err != nil {
		return nil, fmt.Errorf("testbed %s switch: %w", tb.Prefix, err)
	}
	return dp, nil
}

// setupDataplane loads the switch program into the switch namespace,
// pinned per testbed, attaches the data ports and programs the nodes'
// addresses. Close leaves it forwarding.
func (tb *Testbed) setupDataplane() error {
	if err := dataplane.EnsureBPFFS(bpffsRoot); err != nil {
		return err
	}
	dp, err := tb.OpenDataplane()
	if err != nil {
		return err
	}
	defer dp.Close()
	for _, n := range tb.Nodes() {
		if err := dp.AttachPort(n.Port, n.DataPort()); err != nil {
			return fmt.Errorf("switch port %d: %w", n.Port, err)
		}
	}
	for _, n := range tb.Nodes() {
		if err := dp.SetAddress(n.DataIP, dataplane.AddressEntry{
			Forward: &dataplane.Forward{Port: n.Port},
			ARP:     &dataplane.ARP{Port: n.Port},
		}); err != nil {
			return fmt.Errorf("switch entry of %s: %w", n.Name, err)
		}
	}
	return nil
}

// StartController runs `BIN switch serve` in the switch namespace: it takes
// over the pinned data plane and serves the API on the management network
// (ControllerURL) and on ControllerSocket, with the testbed's token. It
// waits until the controller answers.
func (tb *Testbed) StartController(bin string) error {
	if tb.Switch != SwitchEBPF {
		return fmt.Errorf("testbed %s: no controller for a %s", tb.Prefix, tb.Switch)
	}
	if err := tb.ensureToken(); err != nil {
		return err
	}
	dir := tb.SwitchDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfgYAML, err := yaml.Marshal(tb.ControllerConfig())
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "switch.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o644); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "controller.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "switch", "serve", "--name", "testbed-"+tb.Prefix, "--config", cfgPath,
		"--pin-path", tb.PinPath(), "--state", filepath.Join(dir, "state.db"), "--socket", tb.ControllerSocket())
	cmd.Args = append(cmd.Args, tb.authArgs()...)
	plain := strings.TrimPrefix(ControllerURL(), "http://")
	switch {
	case tb.TLS:
		if err := tb.ensurePKI(); err != nil {
			return err
		}
		cmd.Args = append(cmd.Args, "--tls-dir", tb.PKIDir(), "--listen", strings.TrimPrefix(ControllerTLSURL(), "https://"))
		if tb.Insecure {
			cmd.Args = append(cmd.Args, "--insecure", "--insecure-listen", plain)
		}
	default:
		cmd.Args = append(cmd.Args, "--insecure", "--listen", plain)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = nsrun.Start(tb.mustNetns(Switch), cmd)
	logf.Close()
	if err != nil {
		return fmt.Errorf("start switch controller: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reap it if we outlive it
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := tb.ControllerClient().WaitReady(ctx); err != nil {
		return fmt.Errorf("switch controller did not come up (see %s): %w", logPath, err)
	}
	return nil
}

// ControllerClient returns a client of the testbed's switch controller,
// over its unix socket, with the testbed's token.
func (tb *Testbed) ControllerClient() *controller.Client {
	tok, _ := tb.Token()
	return controller.NewClient("unix://"+tb.ControllerSocket(), controller.ClientOptions{Token: tok, Timeout: 5 * time.Second})
}

// controllerRunning reports whether the controller's socket accepts
// connections.
func (tb *Testbed) controllerRunning() bool {
	c, err := net.DialTimeout("unix", tb.ControllerSocket(), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// steerEBPF moves ip to the host's port: through the controller when it
// runs, so that its desired state follows, else directly in the pinned
// tables (a controller started later re-applies its own state).
func (tb *Testbed) steerEBPF(ip netip.Addr, mac net.HardwareAddr, host NodeSpec) error {
	if tb.controllerRunning() {
		st := &controller.Steerer{Client: tb.ControllerClient(), RewriteMAC: true}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return st.Steer(ctx, ip, mac, host.Name)
	}
	dp, err := tb.OpenDataplane()
	if err != nil {
		return err
	}
	defer dp.Close()
	if err := dp.MoveAddress(ip, host.Port, mac); err != nil {
		return fmt.Errorf("steer %s to %s: %w", ip, host.Name, err)
	}
	return nil
}

// removePins removes the testbed's pinned switch. Called by Down once the
// switch namespace (and with it every port) is gone, so nothing is left
// attached and the maps are freed with their last pin.
func removePins(prefix string) error {
	p := pinPath(prefix)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove switch pins %s: %w", p, err)
	}
	return nil
}
