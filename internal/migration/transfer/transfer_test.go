package transfer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTreesRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeTree(t, filepath.Join(src, "img"), map[string]string{"pages-1.img": "pages", "core-1.img": "core"})
	writeTree(t, filepath.Join(src, "rw"), map[string]string{"tmp/state.db": "hello", "run/app/pid": "42"})
	if err := os.Mkdir(filepath.Join(src, "rw", "var-tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "rw", "var-tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("state.db", filepath.Join(src, "rw", "tmp", "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := Send([]Tree{{Name: "images", Dir: filepath.Join(src, "img")}, {Name: "rw", Dir: filepath.Join(src, "rw")}}, &buf)
	if err != nil || n != int64(len("pagescorehello42")) {
		t.Fatalf("send: %d %v", n, err)
	}
	dst := t.TempDir()
	dests := map[string]string{"images": filepath.Join(dst, "i"), "rw": filepath.Join(dst, "r")}
	if _, err := Receive(bytes.NewReader(buf.Bytes()), dests); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"i/pages-1.img": "pages", "r/tmp/state.db": "hello", "r/run/app/pid": "42"} {
		if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "r/tmp/link")); err != nil || l != "state.db" {
		t.Errorf("symlink: %q %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "r/var-tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("sticky dir lost: %v %v", fi.Mode(), err)
	}

	// Every kind of damage is refused.
	data := buf.Bytes()
	for name, damaged := range map[string][]byte{
		"truncated":    data[:len(data)/2],
		"no manifest":  data[:bytes.Index(data, []byte(manifestName))-100],
		"flipped byte": flip(data, bytes.Index(data, []byte("hello"))),
	} {
		_, err := Receive(bytes.NewReader(damaged), map[string]string{"images": t.TempDir(), "rw": t.TempDir()})
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: want ErrCorrupt, got %v", name, err)
		}
	}
	// A stream with an unknown top-level tree is refused too.
	_, err = Receive(bytes.NewReader(buf.Bytes()), map[string]string{"images": t.TempDir()})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("unknown tree: want ErrCorrupt, got %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0xff
	return c
}

// Files written while the stream runs — some rewritten after they were
// sent, one still open when the writer is "done" — arrive as the writer
// left them, and the manifest checks the last version of each.
func TestFollowSendsFilesAsTheyAreWritten(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fr := startFollow(t, Tree{Name: "images", Dir: src}, dst)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("core-1.img", "core v1")
	write("pages-1.img", strings.Repeat("p", 1<<20))
	time.Sleep(20 * time.Millisecond) // let the follower send them
	write("core-1.img", "core v2, longer")
	open, err := os.OpenFile(filepath.Join(src, "inventory.img"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.WriteString("inventory"); err != nil { // never closed before Finish
		t.Fatal(err)
	}
	fr.finish(t)
	for name, want := range map[string]string{"core-1.img": "core v2, longer", "inventory.img": "inventory", "pages-1.img": strings.Repeat("p", 1<<20)} {
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: got %d bytes (%v), want %d", name, len(b), err, len(want))
		}
	}
}

// followRun is a Follower sending tree into a Receive into dst.
type followRun struct {
	s        *Sender
	f        *Follower
	pw       *io.PipeWriter
	ran, got chan error
}

func startFollow(t *testing.T, tree Tree, dst string) *followRun {
	t.Helper()
	pr, pw := io.Pipe()
	fr := &followRun{s: NewSender(pw), pw: pw, ran: make(chan error, 1), got: make(chan error, 1)}
	go func() {
		_, err := Receive(pr, map[string]string{tree.Name: dst})
		pr.CloseWithError(err)
		fr.got <- err
	}()
	var err error
	if fr.f, err = fr.s.Follow(tree); err != nil {
		t.Fatal(err)
	}
	go func() { fr.ran <- fr.f.Run() }()
	return fr
}

// finish says the writer is done, sends the rest and the manifest, and
// waits for the receiver to have verified it all.
func (fr *followRun) finish(t *testing.T) {
	t.Helper()
	fr.f.Stop()
	if err := <-fr.ran; err != nil {
		t.Fatal(err)
	}
	if err := fr.f.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := fr.s.Close(); err != nil {
		t.Fatal(err)
	}
	fr.pw.Close()
	if err := <-fr.got; err != nil {
		t.Fatal(err)
	}
}

// A stream finished normally arrives whole, compressed or not; a
// cancelled one is refused by the receiver for want of its manifest.
func TestStreamFinishAndCancel(t *testing.T) {
	for _, c := range []struct {
		cancel   bool
		compress string
	}{{false, CompressNone}, {true, CompressNone}, {false, CompressZstd}, {true, CompressZstd}} {
		rw, images, dst := t.TempDir(), t.TempDir(), t.TempDir()
		writeTree(t, rw, map[string]string{"tmp/state": "s"})
		var recvErr error
		st, err := StartStream([]Tree{{Name: "rw", Dir: rw}}, Tree{Name: "images", Dir: images}, c.compress, nil, func(body io.Reader) error {
			r, done, err := NewReceiver(body, c.compress)
			if err != nil {
				return err
			}
			defer done()
			_, recvErr = Receive(r, map[string]string{"rw": filepath.Join(dst, "rw"), "images": filepath.Join(dst, "images")})
			return recvErr
		})
		if err != nil {
			t.Fatal(err)
		}
		writeTree(t, images, map[string]string{"core-1.img": "core", "pages-1.img": strings.Repeat("p", 1<<16)})
		if c.cancel {
			st.Cancel(errors.New("checkpoint failed"))
			if recvErr == nil {
				t.Errorf("%+v: a cancelled stream was accepted", c)
			}
			continue
		}
		if err := st.Finish(); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"rw/tmp/state": "s", "images/core-1.img": "core", "images/pages-1.img": strings.Repeat("p", 1<<16)} {
			if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
				t.Errorf("%+v %s: %d bytes, %v", c, name, len(b), err)
			}
		}
		// 64 KiB of one byte: compressed, far less crosses.
		if wire := st.WireBytes(); c.compress == CompressZstd && wire > 8<<10 || c.compress == CompressNone && wire < 64<<10 {
			t.Errorf("%+v: %d bytes on the wire", c, wire)
		}
	}
	if _, err := StartStream(nil, Tree{Name: "images", Dir: t.TempDir()}, "gzip", nil, func(io.Reader) error { return nil }); err == nil {
		t.Error("an unknown compression was accepted")
	}
}
