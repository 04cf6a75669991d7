package drain

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/cnet"
	"github.com/containerflow/containerflow/internal/nsrun"
)

// A sender whose peer stops reading keeps bytes in its send queue;
// sock_diag must see them, and the wait must end once the peer reads.
func TestSendQueueDrainThroughSockDiag(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace (CI runs as root)")
	}
	ns := fmt.Sprintf("drn%d", os.Getpid())
	if err := nsrun.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsrun.Delete(ns) })
	if err := cnet.Quiet(ns); err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	var c net.Conn
	err := nsrun.Do(ns, func() (err error) {
		if l, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		c, err = net.Dial("tcp4", l.Addr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer c.Close()
	peer, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	// Fill the peer's receive buffer and our send queue: write until a
	// write blocks.
	_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			break
		}
	}
	queued, err := Unsent(ns)
	if err != nil {
		t.Fatal(err)
	}
	if queued == 0 {
		t.Fatal("sock_diag reports an empty send queue for a blocked sender")
	}
	left, err := Wait(context.Background(), ns, 50*time.Millisecond)
	if err != nil || left == 0 {
		t.Fatalf("nothing read yet, the wait must time out with bytes left: %d %v", left, err)
	}
	go io.Copy(io.Discard, peer) //nolint:errcheck // drains until closed
	start := time.Now()
	left, err = Wait(context.Background(), ns, 5*time.Second)
	if err != nil || left != 0 {
		t.Fatalf("after the peer read everything: %d bytes left, %v", left, err)
	}
	t.Logf("%d bytes drained in %v", queued, time.Since(start))
}
