package testbed

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
)

// Probes of link impairment with real packets between two nodes of the
// testbed over the data network; the tests and `cflow bench impair` use
// them to measure what an impairment really does.

const probePort = 9797

func (tb *Testbed) dataAddr(node string, port int) (*net.UDPAddr, error) {
	s, err := tb.Spec(node)
	if err != nil {
		return nil, err
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.DataIP, uint16(port))), nil
}

func (tb *Testbed) udp(node string, laddr *net.UDPAddr) (c *net.UDPConn, err error) {
	err = tb.Do(node, func() error {
		c, err = net.ListenUDP("udp4", laddr)
		return err
	})
	return c, err
}

// MeasureRTT sends n UDP probes, every interval, from one node to an echo
// in another and returns the round-trip times of those that came back.
func (tb *Testbed) MeasureRTT(from, to string, n int, interval time.Duration) ([]time.Duration, error) {
	dst, err := tb.dataAddr(to, probePort)
	if err != nil {
		return nil, err
	}
	echo, err := tb.udp(to, dst)
	if err != nil {
		return nil, err
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			k, a, err := echo.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDP(buf[:k], a)
		}
	}()
	src, err := tb.dataAddr(from, 0)
	if err != nil {
		return nil, err
	}
	c, err := tb.udp(from, src)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sent := make([]time.Time, n)
	rtts := make([]time.Duration, 0, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			if k >= 4 {
				if i := int(binary.BigEndian.Uint32(buf)); i < n {
					rtts = append(rtts, time.Since(sent[i]))
				}
			}
		}
	}()
	msg := make([]byte, 64)
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint32(msg, uint32(i))
		sent[i] = time.Now()
		if _, err := c.WriteToUDP(msg, dst); err != nil {
			return nil, err
		}
		time.Sleep(interval)
	}
	time.Sleep(time.Second) // the last probes' way back
	c.Close()
	<-done
	return rtts, nil
}

// MeasureLoss sends n numbered UDP datagrams of size bytes from one node to
// another at pps per second and reports which arrived.
func (tb *Testbed) MeasureLoss(from, to string, n, size, pps int) ([]bool, error) {
	if size < 8 {
		size = 8
	}
	dst, err := tb.dataAddr(to, probePort+1)
	if err != nil {
		return nil, err
	}
	rx, err := tb.udp(to, dst)
	if err != nil {
		return nil, err
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(8 << 20)
	got := make([]bool, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			k, err := rx.Read(buf)
			if err != nil {
				return
			}
			if i := int(binary.BigEndian.Uint32(buf)); k >= 4 && i < n {
				got[i] = true
			}
		}
	}()
	src, err := tb.dataAddr(from, 0)
	if err != nil {
		return nil, err
	}
	c, err := tb.udp(from, src)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msg := make([]byte, size)
	start := time.Now()
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := c.WriteToUDP(msg, dst); err != nil {
			return nil, err
		}
		// Paced against the start, so a late wake-up is made up.
		if d := time.Until(start.Add(time.Duration(i+1) * time.Second / time.Duration(pps))); d > 0 {
			time.Sleep(d)
		}
	}
	time.Sleep(time.Second)
	rx.Close()
	<-done
	return got, nil
}

// RateResult is what MeasureRate saw at the receiver.
type RateResult struct {
	Frames int
	// FrameBits is the rate in Ethernet frame bits (what an impairment's
	// rate limits): UDP payload plus 42 bytes of headers per frame.
	FrameBits float64
	// Goodput is the UDP payload rate in bits/s.
	Goodput float64
}

// MeasureRate sends full-size UDP datagrams at offered bits/s for dur and
// measures the rate at the receiver between its first and last frame.
func (tb *Testbed) MeasureRate(from, to string, offered float64, dur time.Duration) (RateResult, error) {
	const payload = 1472
	pps := int(offered / (8 * (payload + 42)))
	n := int(float64(pps) * dur.Seconds())
	dst, err := tb.dataAddr(to, probePort+2)
	if err != nil {
		return RateResult{}, err
	}
	rx, err := tb.udp(to, dst)
	if err != nil {
		return RateResult{}, err
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(8 << 20)
	var first, last time.Time
	frames := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
			last = time.Now()
			if frames == 0 {
				first = last
			}
			frames++
		}
	}()
	src, err := tb.dataAddr(from, 0)
	if err != nil {
		return RateResult{}, err
	}
	c, err := tb.udp(from, src)
	if err != nil {
		return RateResult{}, err
	}
	defer c.Close()
	msg := make([]byte, payload)
	start := time.Now()
	for i := 0; i < n; i++ {
		_, _ = c.WriteToUDP(msg, dst)
		if d := time.Until(start.Add(time.Duration(i+1) * time.Second / time.Duration(pps))); d > 0 {
			time.Sleep(d)
		}
	}
	time.Sleep(2 * time.Second) // the rate queue drains
	rx.Close()
	<-done
	if frames < 2 {
		return RateResult{}, fmt.Errorf("only %d frames arrived", frames)
	}
	secs := last.Sub(first).Seconds()
	// frames-1 intervals between the first and the last arrival.
	return RateResult{Frames: frames,
		FrameBits: float64(frames-1) * 8 * (payload + 42) / secs,
		Goodput:   float64(frames-1) * 8 * payload / secs}, nil
}

// Percentile of durations (p in 0..100), nearest rank.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

// PinNeighbours makes two nodes' ARP entries for each other on the data
// network permanent: ARP frames on an impaired link would take draws from
// its PRNG, and a drop pattern only repeats over the same frames.
func (tb *Testbed) PinNeighbours(a, b string) error {
	for _, p := range [][2]string{{a, b}, {b, a}} {
		peer, err := tb.Spec(p[1])
		if err != nil {
			return err
		}
		err = tb.Do(p[0], func() error {
			l, err := netlink.LinkByName(UplinkIf)
			if err != nil {
				return err
			}
			return netlink.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: peer.DataIP.AsSlice(), HardwareAddr: peer.MAC})
		})
		if err != nil {
			return fmt.Errorf("pin %s's neighbour %s: %w", p[0], p[1], err)
		}
	}
	return nil
}
