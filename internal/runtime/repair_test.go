package runtime

import (
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A socket left in TCP repair mode (as by a CRIU killed mid-dump) sends
// nothing; resetSocket, reaching it through pidfd_getfd like it reaches a
// container's sockets, must bring it back.
func TestResetSocketLeavesRepairMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("TCP repair needs CAP_NET_ADMIN (CI runs as root)")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.SetsockoptInt(int(f.Fd()), unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		t.Fatal(err)
	}
	// In repair mode the program's writes fail (EINVAL: no repair queue
	// selected) and nothing reaches the peer.
	if _, err := c.Write([]byte("queued")); err == nil {
		t.Fatal("a write to a socket in repair mode succeeded")
	}
	buf := make([]byte, 16)

	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	ok, err := resetSocket(pidfd, int(f.Fd()))
	if err != nil || !ok {
		t.Fatalf("resetSocket: %v %v", ok, err)
	}
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := peer.Read(buf)
	if err != nil || string(buf[:n]) != "after" {
		t.Fatalf("after leaving repair mode the peer got %q, %v", buf[:n], err)
	}
	// A listening socket is not touched.
	lf, _ := l.(*net.TCPListener).File()
	defer lf.Close()
	if ok, err := resetSocket(pidfd, int(lf.Fd())); ok || err != nil {
		t.Fatalf("listener: %v %v", ok, err)
	}
}
