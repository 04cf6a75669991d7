package criu

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerflow/containerflow/internal/nsrun"
	"github.com/containerflow/containerflow/internal/testbed"
	"github.com/containerflow/containerflow/internal/testbed/tbtest"
)

const helperEnv = "CFLOW_CRIU_TEST_ECHO_TO"

// TestMain doubles as the process CRIU dumps: with helperEnv set, the test
// binary connects there and echoes lines back, nothing else.
func TestMain(m *testing.M) {
	if addr := os.Getenv(helperEnv); addr != "" {
		os.Exit(echoClient(addr))
	}
	os.Exit(m.Run())
}

func echoClient(addr string) int {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 1
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			return 1
		}
		if _, err := fmt.Fprintf(c, "echo:%s", line); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
			return 1
		}
	}
}

func findOrSkip(t *testing.T) Binary {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("CRIU needs root (CI runs as root)")
	}
	b, cands, err := Find(context.Background())
	if err != nil {
		// The bootstrap installs CRIU before tests run, so a missing CRIU
		// is a failed set-up, not a reason to skip.
		t.Fatalf("%v; looked at: %+v", err, cands)
	}
	return b
}

func TestCheckPasses(t *testing.T) {
	b := findOrSkip(t)
	if _, err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("criu %s at %s: criu check looks good", b.Version, b.Path)
}

// A process on hostA holds an established TCP connection to the client
// node through the switch. It is dumped with --tcp-established (which kills
// it and leaves hostA's kernel locked, dropping the peer's packets), bytes
// are sent to it while it does not exist, and after restore those bytes and
// new ones are echoed: the connection survived in both directions.
func TestDumpRestoreEstablishedTCP(t *testing.T) {
	b := findOrSkip(t)
	tb := tbtest.Up(t, "c", testbed.Config{})
	client, _ := testbed.Spec(testbed.Client)
	ln, err := tb.Listen(testbed.Client, "tcp4", client.DataIP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "helper.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	self, _ := os.Executable()
	helper := exec.Command(self)
	helper.Env = append(os.Environ(), helperEnv+"="+ln.Addr().String(), "GODEBUG=multipathtcp=0")
	helper.Stdout, helper.Stderr = logf, logf // a regular file: CRIU can dump it, pipes to us it could not restore
	helper.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	hostA, _ := tb.Netns(testbed.HostA)
	if err := nsrun.Start(hostA, helper); err != nil {
		t.Fatal(err)
	}
	pid := helper.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- helper.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("helper did not connect: %v", err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	roundTrip := func(msg string) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(conn, "%s\n", msg); err != nil {
			t.Fatalf("send %q: %v", msg, err)
		}
		expectEcho(t, rd, msg)
	}
	roundTrip("before-dump")

	imgs := filepath.Join(dir, "images")
	if err := os.Mkdir(imgs, 0o700); err != nil {
		t.Fatal(err)
	}
	dump := exec.Command(b.Path, "dump", "-t", strconv.Itoa(pid), "-D", imgs,
		"--tcp-established", "--network-lock", "nftables", "-v4", "-o", "dump.log")
	if out, err := nsrun.Output(hostA, dump); err != nil {
		t.Fatalf("criu dump: %v %s\n%s", err, out, tail(filepath.Join(imgs, "dump.log")))
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("dumped process still running")
	}

	// The process is gone; these bytes wait in the client's send queue and
	// are retransmitted until the restored socket acknowledges them.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "while-dumped\n"); err != nil {
		t.Fatalf("send while dumped: %v", err)
	}

	restore := exec.Command(b.Path, "restore", "-D", imgs, "--tcp-established", "--network-lock", "nftables",
		"-d", "--pidfile", filepath.Join(dir, "restored.pid"), "-v4", "-o", "restore.log")
	if out, err := nsrun.Output(hostA, restore); err != nil {
		t.Fatalf("criu restore: %v %s\n%s", err, out, tail(filepath.Join(imgs, "restore.log")))
	}
	pb, err := os.ReadFile(filepath.Join(dir, "restored.pid"))
	if err != nil {
		t.Fatal(err)
	}
	rpid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
	t.Cleanup(func() { _ = syscall.Kill(rpid, syscall.SIGKILL) })

	expectEcho(t, rd, "while-dumped")
	roundTrip("after-restore")
	roundTrip(strings.Repeat("x", 100000))
}

func expectEcho(t *testing.T, rd *bufio.Reader, msg string) {
	t.Helper()
	got, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("waiting for echo of %.20q: %v", msg, err)
	}
	if want := "echo:" + msg + "\n"; got != want {
		t.Fatalf("echo mismatch: got %.40q want %.40q", got, want)
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), 15)
}

// The cache is generated when missing or stale, reused when fresh, and
// CRIU then starts without probing the kernel ("Loaded kdat cache").
func TestKernelCache(t *testing.T) {
	b := findOrSkip(t)
	ctx := context.Background()
	var st syscall.Statfs_t
	if err := syscall.Statfs("/run", &st); err == nil && st.Type == 0x01021994 {
		t.Skip("/run is a tmpfs here: CRIU caches by itself")
	}
	real := kdatStamp
	kdatStamp = filepath.Join(t.TempDir(), "criu.kdat.stamp")
	defer func() { kdatStamp = real }()
	if got, err := EnsureKernelCache(ctx, b); err != nil || got != "regenerated" {
		t.Fatalf("first call: %q %v", got, err)
	}
	if got, err := EnsureKernelCache(ctx, b); err != nil || got != "fresh" {
		t.Fatalf("second call: %q %v", got, err)
	}
	dir := t.TempDir()
	out, _ := exec.Command(b.Path, "check", "-v4", "-o", filepath.Join(dir, "check.log")).CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(dir, "check.log"))
	if !strings.Contains(string(log), "Loaded kdat cache") {
		t.Fatalf("CRIU did not use the cache:\n%s\n%s", out, tail(filepath.Join(dir, "check.log")))
	}
}

func TestAppendedImage(t *testing.T) {
	for name, want := range map[string]bool{"pages-1.img": true, "pages-12.img": true, "pagemap-1.img": false, "core-1.img": false, "pages-1.img.tmp": false, "x/pages-1.img": false} {
		if AppendedImage(name) != want {
			t.Errorf("%s: want %v", name, want)
		}
	}
}
