package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/agent"
	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
	"github.com/containerflow/containerflow/internal/testprog"
)

// A container's memory never crosses the management network in clear
// over TLS, neither in the image stream (stop-and-copy) nor from the
// post-copy page server; over the plain listeners it does, which shows
// the capture would have seen it. The memory is testprog.Memory's: every
// page its own offset, 8 bytes little-endian, 512 times.
func TestMemoryNeverCrossesInClear(t *testing.T) {
	tbtest.RequireRoot(t, "the testbed, runc and CRIU")
	if err := criu.PostCopyReady(); err != nil {
		t.Skipf("post-copy unavailable: %v", err) // bootstrap.sh makes it available; CI runs it
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbtest.Up(t, "k", testbed.Config{AgentBinary: self, Insecure: true})
	tok, _ := tb.Token()
	ctx := context.Background()
	clients := map[string]*agent.Client{}
	for _, h := range []string{testbed.HostA, testbed.HostB} {
		clients[h] = agent.NewClient("unix://"+tb.AgentSocket(h), agent.ClientOptions{Token: tok})
	}
	const mib = 8
	if _, err := clients[testbed.HostA].Run(ctx, agent.ContainerSpec{Name: "mem", Args: append(testprog.Args(testprog.Memory), strconv.Itoa(mib))}); err != nil {
		t.Fatal(err)
	}
	ns, err := tb.Netns(testbed.HostA)
	if err != nil {
		t.Fatal(err)
	}
	// Every migration below starts or ends on hostA: its management link
	// carries all of them.
	capt := startCapture(t, ns, testbed.MgmtIf, mib<<20)

	from, to := testbed.HostA, testbed.HostB
	for _, c := range []struct {
		mode, transport string
	}{
		{"stop-and-copy", ""}, {"post-copy", ""},
		{"stop-and-copy", agent.TransportPlain}, {"post-copy", agent.TransportPlain},
	} {
		name := c.mode + " over " + map[string]string{"": "TLS", agent.TransportPlain: "plain HTTP"}[c.transport]
		capt.reset()
		res, err := clients[from].Migrate(ctx, "mem", agent.MigrateRequest{To: to, Mode: c.mode, Transport: c.transport})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Record.Mode != c.mode {
			t.Fatalf("%s: migrated %s", name, res.Record.Mode)
		}
		waitNoPagesPending(t, clients[to], "mem")
		time.Sleep(100 * time.Millisecond) // the last frames into the capture
		pages, frames, drops := capt.counts()
		t.Logf("%s: %d frames captured, %d dropped, %d page patterns in clear", name, frames, drops, pages)
		switch {
		case frames == 0:
			t.Fatalf("%s: nothing captured on %s", name, testbed.MgmtIf)
		case c.transport == "" && drops > 0:
			t.Fatalf("%s: the capture dropped %d frames: it cannot vouch that none carried a page", name, drops)
		case c.transport == "" && pages > 0:
			t.Errorf("%s: %d of the container's pages crossed in clear", name, pages)
		case c.transport == agent.TransportPlain && pages == 0:
			t.Errorf("%s: no page seen in clear: the capture does not see what it should", name)
		}
		from, to = to, from
	}
}

func waitNoPagesPending(t *testing.T, c *agent.Client, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := c.Get(context.Background(), name)
		if err == nil && !info.PagesPending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pages still pending: %+v %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// capture counts the frames on one interface of a namespace (both
// directions, AF_PACKET) and the runs of testprog.Memory's page pattern
// they carry in clear.
type capture struct {
	fd           int
	size         uint64 // the memory's size: page offsets below it count
	mu           sync.Mutex
	pages        int
	frames       atomic.Int64
	dropsAtReset uint32
	dropsTotal   uint32
}

func startCapture(t *testing.T, ns, ifname string, size uint64) *capture {
	t.Helper()
	c := &capture{size: size, fd: -1}
	proto := int(htons(unix.ETH_P_ALL))
	err := nsrun.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 256<<20); err != nil {
			return err
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256<<10) // GSO/GRO frames are up to 64 KiB and more
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return
			}
			c.frames.Add(1)
			if k := pagePatterns(buf[:n], c.size); k > 0 {
				c.mu.Lock()
				c.pages += k
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(c.fd)
	})
	return c
}

// reset starts a new count (frames already queued are counted again,
// which only makes the check stricter).
func (c *capture) reset() {
	c.mu.Lock()
	c.pages = 0
	c.mu.Unlock()
	c.frames.Store(0)
	c.dropsAtReset = c.drops()
}

// drops is the kernel's count of frames the socket lost, cumulative.
// PACKET_STATISTICS resets on every read, so it is accumulated here.
func (c *capture) drops() uint32 {
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return ^uint32(0) >> 1 // unknown: as bad as many
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropsTotal += st.Drops
	return c.dropsTotal
}

func (c *capture) counts() (pages int, frames int64, drops uint32) {
	d := c.drops() - c.dropsAtReset
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pages, c.frames.Load(), d
}

// pagePatterns counts the places in b holding 64 bytes of one of the
// memory's pages: an 8-byte page offset (not 0, below size) 8 times in a
// row. Ciphertext does not do that; a clear page does it 63 times over.
func pagePatterns(b []byte, size uint64) int {
	n := 0
	for i := 0; i+64 <= len(b); i++ {
		v := binary.LittleEndian.Uint64(b[i:])
		if v == 0 || v%4096 != 0 || v >= size {
			continue
		}
		run := 1
		for run < 8 && binary.LittleEndian.Uint64(b[i+8*run:]) == v {
			run++
		}
		if run == 8 {
			n++
			i += 63
		}
	}
	return n
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
