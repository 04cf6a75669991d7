package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/audit"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/dataplane"
	"github.com/containerflow/containerflow/internal/fleet"
	"github.com/containerflow/containerflow/internal/httpserve"
	"github.com/containerflow/containerflow/internal/pki"
)

// bpffsRoot is where the switch pins its data plane by default.
const bpffsRoot = "/sys/fs/bpf"

func newSwitchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "switch",
		Short: "Run the eBPF switch and its controller API",
		Long: `The switch is an eBPF program on every switch port with match-action tables in
BPF maps; its controller serves them over HTTP JSON (the seed's endpoints and a
/v1 REST API). See docs/switch.md.`,
	}
	cmd.AddCommand(newSwitchServeCmd(), newSwitchDestroyCmd())
	return cmd
}

type switchFlags struct {
	name, pinPath, netns string
}

func (f *switchFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "switch", "switch name: names the default pin path and state file")
	cmd.Flags().StringVar(&f.pinPath, "pin-path", "", "bpffs directory for maps and links (default /sys/fs/bpf/containerflow/NAME; \"none\": do not pin, the switch stops with the process)")
	cmd.Flags().StringVar(&f.netns, "netns", "", "network namespace holding the ports (name under /run/netns or a path); default: this process's")
}

func (f *switchFlags) pin() string {
	switch f.pinPath {
	case "":
		return filepath.Join(bpffsRoot, "containerflow", f.name)
	case "none":
		return ""
	}
	return f.pinPath
}

func (f *switchFlags) netnsPath() string {
	if f.netns == "" || filepath.IsAbs(f.netns) {
		return f.netns
	}
	return filepath.Join("/run/netns", f.netns)
}

func newSwitchServeCmd() *cobra.Command {
	var (
		sf        switchFlags
		cfgPath   string
		listen    string
		socket    string
		statePath string
		ports     []string
		attach    string
		tokenFile string
		noAuth    bool
		fsync     bool
		tlsDir    string
		insecure  bool
		plainL    string
		fleetPath string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Load (or take over) the switch data plane, attach its ports and serve the controller API",
		Example: `  cflow switch serve --config switch.yaml --token-file /etc/cflow/token --tls-dir /etc/containerflow/pki --listen :5443
  cflow switch serve --config switch.yaml --token-file /etc/cflow/token --tls-dir /etc/containerflow/pki --listen :5443 --insecure --insecure-listen :5000
  cflow switch serve --port 1=sw-hostA:hostA --port 2=sw-hostB:hostB --no-auth --insecure --listen 127.0.0.1:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := &controller.Config{}
			if cfgPath != "" {
				var err error
				if cfg, err = controller.LoadConfig(cfgPath); err != nil {
					return err
				}
			}
			for _, p := range ports {
				pc, err := controller.ParsePortFlag(p)
				if err != nil {
					return fmt.Errorf("--port: %w", err)
				}
				cfg.Ports = append(cfg.Ports, pc)
			}
			mode, err := parseAttach(attach)
			if err != nil {
				return err
			}
			tok, err := loadToken(tokenFile, noAuth)
			if err != nil {
				return err
			}
			if statePath == "" {
				statePath = filepath.Join("/var/lib/containerflow/switch", sf.name+".db")
			}
			pin := sf.pin()
			if pin != "" && strings.HasPrefix(pin, bpffsRoot+"/") {
				if err := dataplane.EnsureBPFFS(bpffsRoot); err != nil {
					return err
				}
			}
			if listen == "" && socket == "" {
				return errors.New("give --listen ADDR:PORT and/or --socket PATH")
			}
			var id *pki.Identity
			if tlsDir != "" {
				if id, err = pki.Load(tlsDir, pki.Controller); err != nil {
					return fmt.Errorf("--tls-dir: %w", err)
				}
			} else if listen != "" && !insecure {
				return errors.New("--listen without --tls-dir serves plain HTTP: give --tls-dir DIR (see cflow certs), or --insecure explicitly")
			}
			if plainL != "" && (!insecure || id == nil) {
				return errors.New("--insecure-listen needs --insecure and --tls-dir")
			}
			ctl, err := controller.New(controller.Options{Config: cfg, PinPath: pin, Netns: sf.netnsPath(),
				Attach: mode, StatePath: statePath, Fsync: fsync, Token: tok, NoAuth: noAuth, Logger: slog.Default()})
			if err != nil {
				return err
			}
			defer func() {
				if err := ctl.Close(); err != nil {
					slog.Error("close controller", "err", err)
				}
			}()
			if fleetPath == "" {
				fleetPath = strings.TrimSuffix(statePath, filepath.Ext(statePath)) + ".fleet.db"
			}
			fl, err := fleet.New(fleet.Options{StatePath: fleetPath, Log: slog.Default(), Dial: func(h fleet.Host) fleet.Agent {
				o := agent.ClientOptions{Token: tok}
				if id != nil {
					o.TLS = id.ClientConfig(h.Name)
				}
				return agent.NewClient(h.URL, o)
			}})
			if err != nil {
				return err
			}
			defer fl.Close()
			ctl.Mount(fl.Routes()...)
			var tcfg *tls.Config
			if id != nil {
				tcfg = id.ServerConfig()
			}
			var seed http.Handler
			if plainL != "" {
				seed = ctl.SeedHandler()
			}
			// Beside the state file: several controllers share its directory.
			auditPath := strings.TrimSuffix(statePath, filepath.Ext(statePath)) + ".audit.log"
			return serveHTTP(cmd.Context(), ctl.Handler(), listen, socket, auditPath, "switch controller", tcfg, seed, plainL)
		},
	}
	sf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "configuration file (YAML or JSON; the seed's controller config is accepted)")
	f.StringVar(&listen, "listen", ":5000", "TCP address of the API (\"\" for none)")
	f.StringVar(&socket, "socket", "", "unix socket of the API")
	f.StringVar(&statePath, "state", "", "bbolt file of the desired state (default /var/lib/containerflow/switch/NAME.db)")
	f.StringArrayVar(&ports, "port", nil, "switch port N=IFNAME[:NAME] (repeatable; added to the config's ports)")
	f.StringVar(&attach, "attach", "auto", "attachment: auto (TCX, else tc), tcx or tc")
	f.StringVar(&tokenFile, "token-file", "", "file with the bearer token writes need (or env CFLOW_TOKEN)")
	f.BoolVar(&noAuth, "no-auth", false, "accept writes without a token (needed by the seed's scripts, which send none)")
	f.StringVar(&tlsDir, "tls-dir", "", "PKI directory (cflow certs) with ca.pem, controller.pem, controller-key.pem: --listen serves mutual TLS 1.3")
	f.BoolVar(&insecure, "insecure", false, "allow plain HTTP on TCP: --listen without --tls-dir (the whole API), or --insecure-listen")
	f.StringVar(&plainL, "insecure-listen", "", "with --insecure and --tls-dir: a plain-HTTP listener serving only the seed's endpoints, for the seed's scripts (e.g. :5000)")
	f.StringVar(&fleetPath, "fleet-state", "", "bbolt file of the fleet's hosts and operations (default: beside --state, NAME.fleet.db)")
	f.BoolVar(&fsync, "fsync", false, "fsync the state file on every write (default: within 100 ms; a controller crash loses nothing either way)")
	return cmd
}

func parseAttach(s string) (dataplane.AttachMode, error) {
	switch s {
	case "auto", "":
		return dataplane.AttachAuto, nil
	case "tcx":
		return dataplane.AttachTCX, nil
	case "tc":
		return dataplane.AttachTC, nil
	}
	return 0, fmt.Errorf("--attach %q: want auto, tcx or tc", s)
}

// serveHTTP serves h on a TCP address (over TLS with tcfg) and/or a unix
// socket, and plain on plainListen, until ctx ends, recording writes in
// the audit log at auditPath.
func serveHTTP(ctx context.Context, h http.Handler, listen, socket, auditPath, what string, tcfg *tls.Config, plain http.Handler, plainListen string) error {
	al, err := audit.Open(auditPath, 0)
	if err != nil {
		return err
	}
	defer al.Close()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	if listen != "" {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", listen, err)
		}
		if tcfg != nil {
			l = tls.NewListener(l, tcfg)
		}
		ls = append(ls, l)
	}
	if plainListen != "" {
		l, err := net.Listen("tcp", plainListen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", plainListen, err)
		}
		// Its own server: the plain port serves the seed's endpoints only.
		go func() {
			if err := httpserve.Serve(ctx, httpserve.New(al.Handler(plain)), 10*time.Second, what+" (plain seed endpoints)", l); err != nil {
				slog.Warn(what+" plain listener", "err", err)
			}
		}()
	}
	if socket != "" {
		_ = os.Remove(socket)
		if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
			return err
		}
		l, err := net.Listen("unix", socket)
		if err != nil {
			return fmt.Errorf("listen %s: %w", socket, err)
		}
		_ = os.Chmod(socket, 0o600)
		ls = append(ls, l)
	}
	slog.Info(what+" serving", "listen", listen, "tls", tcfg != nil, "insecure_listen", plainListen, "socket", socket, "audit", al.Path())
	// Every switch write takes milliseconds: 10 s is for a large batch.
	return httpserve.Serve(ctx, httpserve.New(al.Handler(h)), 10*time.Second, what, ls...)
}

func newSwitchDestroyCmd() *cobra.Command {
	var sf switchFlags
	cmd := &cobra.Command{
		Use:   "destroy",
		Short: "Detach a pinned switch from its ports and remove its pins (stops forwarding)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pin := sf.pin()
			if pin == "" {
				return errors.New("nothing to destroy without a pin path")
			}
			if _, err := os.Stat(pin); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "no switch pinned at %s\n", pin)
				return nil
			}
			dp, err := dataplane.Load(dataplane.Options{PinPath: pin, Netns: sf.netnsPath(), Logger: slog.Default()})
			if err != nil {
				return err
			}
			if err := dp.Destroy(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "switch %s destroyed\n", pin)
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}
