package drain

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/nsrun"
)

const tcpEstablished = 1

// Unsent sums the send queues (bytes written but not yet acknowledged)
// of the established TCP sockets in a namespace, read through sock_diag.
func Unsent(nsName string) (uint64, error) {
	var total uint64
	err := nsrun.Do(nsName, func() error {
		socks, err := netlink.SocketDiagTCP(unix.AF_INET)
		if err != nil {
			return err
		}
		for _, s := range socks {
			if s.State == tcpEstablished {
				total += uint64(s.WQueue)
			}
		}
		return nil
	})
	return total, err
}

// Wait polls the send queues every millisecond until they are empty
// or max has passed. It returns the bytes still queued (0 when drained).
func Wait(ctx context.Context, nsName string, max time.Duration) (uint64, error) {
	deadline := time.Now().Add(max)
	for {
		n, err := Unsent(nsName)
		if err != nil || n == 0 || time.Now().After(deadline) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
