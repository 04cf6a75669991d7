package testbed

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"
)

// SmokeIP is the container address the smoke run uses.
var SmokeIP = netip.MustParseAddr("198.18.0.2")

// Smoke checks a testbed end to end at the network level, the way a
// same-IP migration uses it: the client reaches a server in a container
// namespace on hostA through the switch; the namespace is pre-staged on
// hostB with the same IP and MAC while hostA keeps serving; the switch is
// pointed at hostB and hostA's namespace removed; new connections reach
// hostB. It reports each step to w and removes its namespaces.
func (tb *Testbed) Smoke(w io.Writer) (err error) {
	const name = "smoke"
	addr := netip.AddrPortFrom(SmokeIP, 8080).String()
	step := func(format string, a ...any) { fmt.Fprintf(w, "  - "+format+"\n", a...) }
	defer func() {
		for _, h := range tb.Hosts() {
			_ = tb.RemoveContainerNet(h, name)
		}
	}()

	serve := func(host string) (net.Listener, error) {
		l, err := tb.Listen(host+"/"+name, "tcp4", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s in %s/%s: %w", addr, host, name, err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "hello from %s\n", host)
				c.Close()
			}
		}()
		return l, nil
	}
	expect := func(host string) error {
		start := time.Now()
		got, err := askHello(tb, Client, addr)
		if err != nil {
			return fmt.Errorf("client -> %s: %w", addr, err)
		}
		if want := "hello from " + host; got != want {
			return fmt.Errorf("client -> %s: got %q, want %q", addr, got, want)
		}
		step("client connected to %s and was answered by %s (%v)", addr, host, time.Since(start).Round(time.Microsecond))
		return nil
	}

	ca, err := tb.AddContainerNet(HostA, name, SmokeIP, nil)
	if err != nil {
		return err
	}
	if err := tb.Steer(SmokeIP, ca.MAC, HostA); err != nil {
		return err
	}
	step("container namespace %s on hostA: %s %s, switch -> hostA", ca.Netns, ca.IP, ca.MAC)
	la, err := serve(HostA)
	if err != nil {
		return err
	}
	defer la.Close()
	if err := expect(HostA); err != nil {
		return err
	}

	cb, err := tb.AddContainerNet(HostB, name, SmokeIP, ca.MAC)
	if err != nil {
		return err
	}
	step("pre-staged %s on hostB with the same IP and MAC", cb.Netns)
	lb, err := serve(HostB)
	if err != nil {
		return err
	}
	defer lb.Close()
	if err := expect(HostA); err != nil {
		return fmt.Errorf("while hostB is pre-staged the switch must still send to hostA: %w", err)
	}

	start := time.Now()
	if err := tb.Steer(SmokeIP, ca.MAC, HostB); err != nil {
		return err
	}
	step("switch -> hostB in %v", time.Since(start).Round(time.Microsecond))
	if err := tb.RemoveContainerNet(HostA, name); err != nil {
		return err
	}
	step("removed the namespace on hostA")
	return expect(HostB)
}

func askHello(tb *Testbed, from, addr string) (string, error) {
	c, err := tb.Dial(from, "tcp4", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}
