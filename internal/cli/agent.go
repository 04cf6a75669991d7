package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/audit"
	"github.com/containerflow/containerflow/internal/controller"
	"github.com/containerflow/containerflow/internal/fleet"
	"github.com/containerflow/containerflow/internal/httpserve"
	"github.com/containerflow/containerflow/internal/pki"
	"github.com/containerflow/containerflow/internal/privfs"
	"github.com/containerflow/containerflow/internal/runtime"
	"github.com/containerflow/containerflow/internal/tclass"
	"github.com/containerflow/containerflow/internal/testbed"
)

func newAgentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Run the per-host agent that runs, checkpoints and migrates containers"}
	var (
		cfg       agent.Config
		listen    string
		socket    string
		peers     []string
		switchArg string
		tokenFile string
		noAuth    bool
		tlsDir    string
		insecure  bool
		plainL    string
		plainPeer []string
		privateFS bool
		keep      []string
		capMemory string
		advertise string
		linkRate  string
	)
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve the agent API (HTTP on --listen and/or a unix socket)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listen == "" && socket == "" {
				return errors.New("give --listen ADDR:PORT and/or --socket PATH")
			}
			if privateFS {
				if err := enterPrivateFS(cfg.StateDir, keep); err != nil {
					return err
				}
			}
			if tlsDir != "" {
				id, err := pki.Load(tlsDir, cfg.Name)
				if err != nil {
					return fmt.Errorf("--tls-dir: %w", err)
				}
				cfg.TLS = id
			} else if listen != "" && !insecure {
				return errors.New("--listen without --tls-dir serves plain HTTP: give --tls-dir DIR (see cflow certs), or --insecure explicitly")
			}
			if plainL != "" && !insecure {
				return errors.New("--insecure-listen needs --insecure")
			}
			if capMemory != "" {
				m, err := runtime.ParseBytes(capMemory)
				if err != nil {
					return fmt.Errorf("--capacity-memory: %w", err)
				}
				cfg.Capacity.MemoryBytes = m
			}
			if err := tclass.CheckDSCP(cfg.MigrationDSCP); err != nil {
				return fmt.Errorf("--migration-dscp: %w", err)
			}
			if linkRate != "" {
				r, err := testbed.ParseRate(linkRate)
				if err != nil {
					return fmt.Errorf("--link-rate %q: want a rate with tc's units, e.g. 100mbit or 1gbit", linkRate)
				}
				if r < tclass.MinRate {
					return fmt.Errorf("--link-rate %s: at least 1mbit", linkRate)
				}
				cfg.LinkRate = r
			}
			if cfg.Capacity.CPUs < 0 {
				return fmt.Errorf("--capacity-cpus %g: must not be negative", cfg.Capacity.CPUs)
			}
			var err error
			if cfg.Peers, err = parsePeers("--peer", peers, cfg.TLS != nil); err != nil {
				return err
			}
			if cfg.PlainPeers, err = parsePeers("--plain-peer", plainPeer, false); err != nil {
				return err
			}
			tok, err := loadToken(tokenFile, noAuth)
			if err != nil {
				return err
			}
			cfg.Token = tok
			st, err := steererFor(switchArg, cfg.TLS)
			if err != nil {
				return err
			}
			cfg.Steerer = st
			cfg.Log = slog.Default()
			if exe, err := os.Executable(); err == nil {
				if cfg.BinDir == "" {
					cfg.BinDir = filepath.Dir(exe)
				}
				if socket != "" {
					// CRIU calls back through this to let the agent take
					// an incoming container's address before it resumes.
					cfg.HookCommand, cfg.HookSocket = []string{exe, "agent", "hook"}, socket
				}
			}
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			defer a.Close()
			al, err := audit.Open(filepath.Join(cfg.StateDir, "audit.log"), 0)
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
					return err
				}
				// Before TLS: the mark is the TCP connection's.
				l = tclass.Listener(l, cfg.MigrationDSCP, peerAddrs(cfg.Peers, cfg.PlainPeers))
				if cfg.TLS != nil {
					l = tls.NewListener(l, cfg.TLS.ServerConfig())
				}
				ls = append(ls, l)
			}
			if plainL != "" {
				l, err := net.Listen("tcp", plainL)
				if err != nil {
					return err
				}
				ls = append(ls, tclass.Listener(l, cfg.MigrationDSCP, peerAddrs(cfg.Peers, cfg.PlainPeers)))
			}
			if socket != "" {
				_ = os.Remove(socket)
				l, err := net.Listen("unix", socket)
				if err != nil {
					return err
				}
				defer os.Remove(socket)
				_ = os.Chmod(socket, 0o600)
				ls = append(ls, l)
			}
			slog.Info("agent serving", "name", cfg.Name, "listen", listen, "tls", cfg.TLS != nil, "insecure_listen", plainL, "socket", socket, "peers", cfg.Peers, "audit", al.Path())
			if cs, ok := st.(*controller.Steerer); ok && listen != "" {
				// The fleet (cflow host, rebalance) learns this host from
				// its controller; repeated, so a controller that starts
				// later or lost its state learns it too.
				if advertise == "" {
					advertise = advertiseURL(listen, cfg.TLS != nil)
				}
				go fleet.Client{C: cs.Client}.RegisterLoop(cmd.Context(), cfg.Name, advertise, 30*time.Second, func(err error) {
					slog.Warn("could not register with the controller", "err", err)
				})
			}
			return httpserve.Serve(cmd.Context(), httpserve.New(al.Handler(a.Handler())), agentGrace, "agent", ls...)
		},
	}
	f := serve.Flags()
	f.StringVar(&cfg.Name, "name", "", "this host's name (required)")
	f.StringVar(&listen, "listen", "", "TCP address of the API, e.g. 198.19.0.11:7070")
	f.StringVar(&socket, "socket", "", "unix socket of the API")
	f.StringVar(&advertise, "advertise-url", "", "URL the controller's fleet calls this agent at (default: from --listen, https with --tls-dir)")
	f.StringVar(&cfg.StateDir, "state-dir", "", "directory for bundles, runc state, logs (required)")
	f.StringVar(&cfg.ImagesDir, "images-dir", "", "checkpoint image directory (default /dev/shm/containerflow/ID)")
	f.StringVar(&cfg.Uplink, "uplink", "eth0", "interface container macvlans attach to")
	f.IntVar(&cfg.PrefixLen, "prefix-len", 24, "prefix length of container addresses")
	f.StringVar(&cfg.NetnsPrefix, "netns-prefix", "", "prefix of container namespace names (required)")
	f.StringArrayVar(&peers, "peer", nil, "another host's agent, NAME=URL (https:// with --tls-dir; repeatable)")
	f.StringVar(&tlsDir, "tls-dir", "", "PKI directory (cflow certs) with ca.pem, NAME.pem, NAME-key.pem: --listen serves mutual TLS 1.3 and peers are called over it")
	f.BoolVar(&insecure, "insecure", false, "allow plain HTTP on TCP: --listen without --tls-dir, or --insecure-listen")
	f.StringVar(&plainL, "insecure-listen", "", "with --insecure and --tls-dir: a second, plain-HTTP TCP listener (for comparisons; migrations with transport plain use it)")
	f.StringArrayVar(&plainPeer, "plain-peer", nil, "another host's plain (--insecure-listen) agent, NAME=http://ADDR:PORT (repeatable)")
	f.StringVar(&switchArg, "switch", "", "how to steer traffic: bridge:TESTBED_PREFIX (the testbed's bridge); empty: do not steer")
	f.StringVar(&tokenFile, "token-file", "", "file with the bearer token for writes (or env CFLOW_TOKEN)")
	f.BoolVar(&noAuth, "no-auth", false, "accept writes without a token")
	f.BoolVar(&cfg.KeepImages, "keep-images", os.Getenv("CFLOW_KEEP_IMAGES") != "", "keep each migration's images and CRIU logs in the images dir (env CFLOW_KEEP_IMAGES)")
	f.BoolVar(&privateFS, "private-fs", false, "run in a mount namespace of its own with private /tmp, /var/tmp, /dev/shm, /run/netns and --state-dir (tmpfs; gone when the agent exits): the testbed's stand-in for a host of its own")
	f.Float64Var(&cfg.Capacity.CPUs, "capacity-cpus", 0, "CPUs this host offers its containers' requests (their --cpus), e.g. 1.5 (default: the machine's)")
	f.StringVar(&capMemory, "capacity-memory", "", "memory this host offers its containers' requests (their --memory), e.g. 8GiB (default: the machine's)")
	f.DurationVar(&cfg.UsageInterval, "usage-interval", agent.DefaultUsageInterval, "how often the containers' CPU and memory use is sampled")
	f.IntVar(&cfg.MigrationDSCP, "migration-dscp", tclass.DefaultDSCP, "DSCP of the connections to and from other agents (images, handoff, commit): 8 = CS1, lower effort; -1 = do not mark (docs/operations.md#migration-traffic-class)")
	f.StringVar(&linkRate, "link-rate", "", "the uplink's rate, e.g. 1gbit: schedule it with an HTB root qdisc, live traffic first and migration traffic (--migration-dscp) in a class of its own; default off")
	f.StringArrayVar(&keep, "private-fs-keep", nil, "with --private-fs: a path under a private directory that stays the machine's (repeatable)")
	_ = f.MarkHidden("private-fs")
	_ = f.MarkHidden("private-fs-keep")
	for _, req := range []string{"name", "state-dir", "netns-prefix"} {
		_ = serve.MarkFlagRequired(req)
	}
	hook := &cobra.Command{
		Use:                "hook --socket PATH --name NAME --nonce N",
		Short:              "Called by CRIU while restoring an incoming container: asks the agent to take its address",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := agent.HookMain(args); code != 0 {
				return errSilentf(cmd, "agent hook failed")
			}
			return nil
		},
	}
	cmd.AddCommand(serve, hook, newAgentMetricsCmd(g))
	return cmd
}

func parsePeers(flag string, peers []string, tlsOn bool) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range peers {
		name, url, ok := strings.Cut(p, "=")
		switch {
		case !ok || name == "" || !strings.HasPrefix(url, "http"):
			return nil, fmt.Errorf("%s %q: want NAME=http(s)://ADDR:PORT", flag, p)
		case strings.HasPrefix(url, "https://") && !tlsOn:
			return nil, fmt.Errorf("%s %q: https needs --tls-dir", flag, p)
		case tlsOn && !strings.HasPrefix(url, "https://") && flag == "--peer":
			return nil, fmt.Errorf("%s %q: with --tls-dir peers are https:// (plain peers are --plain-peer)", flag, p)
		}
		out[name] = url
	}
	return out, nil
}

func loadToken(file string, noAuth bool) (string, error) {
	if noAuth {
		return "", nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("CFLOW_TOKEN"); t != "" {
		return t, nil
	}
	return "", errors.New("no token: give --token-file, set CFLOW_TOKEN, or pass --no-auth explicitly")
}

// bridgeSteerer steers through an emulated testbed's bridge.
type bridgeSteerer struct{ tb *testbed.Testbed }

func (b bridgeSteerer) Steer(_ context.Context, ip netip.Addr, mac net.HardwareAddr, host string) error {
	return b.tb.Steer(ip, mac, host)
}

// steererFor turns --switch into a Steerer:
//   - bridge:PREFIX steers through the emulated testbed PREFIX directly
//     (its bridge, or its eBPF switch's pinned tables);
//   - http://ADDR:PORT or unix:///PATH steers through a switch controller's
//     API, one call per move. Its bearer token comes from a token_file=PATH
//     query parameter, else from env CFLOW_SWITCH_TOKEN_FILE,
//     CFLOW_SWITCH_TOKEN or CFLOW_TOKEN (the agent's own token); a
//     controller started with --no-auth needs none.
func steererFor(arg string, id *pki.Identity) (agent.Steerer, error) {
	switch {
	case arg == "":
		return nil, nil
	case strings.HasPrefix(arg, "bridge:"):
		tb, err := testbed.Open(strings.TrimPrefix(arg, "bridge:"))
		if err != nil {
			return nil, err
		}
		return bridgeSteerer{tb}, nil
	case strings.HasPrefix(arg, "http://"), strings.HasPrefix(arg, "https://"), strings.HasPrefix(arg, "unix://"):
		base, query, _ := strings.Cut(arg, "?")
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, fmt.Errorf("--switch %q: %w", arg, err)
		}
		tokFile := q.Get("token_file")
		if tokFile == "" {
			tokFile = os.Getenv("CFLOW_SWITCH_TOKEN_FILE")
		}
		tok := ""
		if tokFile != "" {
			b, err := os.ReadFile(tokFile)
			if err != nil {
				return nil, fmt.Errorf("--switch: token file: %w", err)
			}
			tok = strings.TrimSpace(string(b))
		} else if tok = os.Getenv("CFLOW_SWITCH_TOKEN"); tok == "" {
			tok = os.Getenv("CFLOW_TOKEN")
		}
		o := controller.ClientOptions{Token: tok, Timeout: 5 * time.Second}
		if strings.HasPrefix(base, "https://") {
			if id == nil {
				return nil, fmt.Errorf("--switch %q: https needs --tls-dir", arg)
			}
			o.TLS = id.ClientConfig(pki.Controller)
		}
		c := controller.NewClient(base, o)
		return &controller.Steerer{Client: c, RewriteMAC: true}, nil
	}
	return nil, fmt.Errorf("--switch %q: want bridge:PREFIX, https://ADDR:PORT[?token_file=PATH] (with --tls-dir), http://... or unix:///PATH", arg)
}

// peerAddrs are the addresses of the peers' URLs that are IP literals;
// connections from them are marked as migration traffic. A peer named by
// DNS is left out (resolving at start would pin a name that may move):
// its connections this agent dials are marked all the same.
func peerAddrs(maps ...map[string]string) []netip.Addr {
	var out []netip.Addr
	for _, m := range maps {
		for _, u := range m {
			pu, err := url.Parse(u)
			if err != nil {
				continue
			}
			if a, err := netip.ParseAddr(pu.Hostname()); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// advertiseURL is the agent's API as others reach it, from its listen
// address.
func advertiseURL(listen string, tls bool) string {
	if tls {
		return "https://" + listen
	}
	return "http://" + listen
}

// agentGrace is how long a stopping agent lets requests in flight finish:
// a migration (seconds; a post-copy one of a large container, tens of
// seconds) or an image upload. What still runs then is cut, see
// docs/security.md#hardening.
const agentGrace = 60 * time.Second

// enterPrivateFS moves the agent into its private view (package privfs).
// The directory of its own binary stays visible: containers get it at
// /opt/cflow/bin and CRIU runs `agent hook` from it, and a test binary
// lives under /tmp.
func enterPrivateFS(stateDir string, keep []string) error {
	if !filepath.IsAbs(stateDir) {
		return fmt.Errorf("--private-fs needs an absolute --state-dir, got %q", stateDir)
	}
	if err := privfs.Enter(); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return privfs.Setup(privfs.Config{Private: []string{stateDir}, Keep: append([]string{filepath.Dir(exe)}, keep...)})
}
