package transfer

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A file only ever appended to (CRIU's pages) arrives while it is still
// being written, in segments, and whole at the end: the receiver has its
// first chunks before the writer closes it. One truncated meanwhile is
// sent again from its start.
func TestFollowSendsAppendedFilesAsTheyGrow(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fr := startFollow(t, Tree{Name: "images", Dir: src, Appends: func(b string) bool { return strings.HasPrefix(b, "pages-") }}, dst)

	chunk := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 3<<20/2) }
	pages, err := os.OpenFile(filepath.Join(src, "pages-1.img"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer pages.Close()
	shrink, err := os.OpenFile(filepath.Join(src, "pages-2.img"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer shrink.Close()
	var want []byte
	for i := range 3 {
		if _, err := pages.Write(chunk(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, chunk(i)...)
		waitSize(t, filepath.Join(dst, "pages-1.img"), int64(len(want)))
	}
	if _, err := shrink.Write(chunk(3)); err != nil {
		t.Fatal(err)
	}
	waitSize(t, filepath.Join(dst, "pages-2.img"), int64(len(chunk(3))))
	if err := shrink.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := shrink.WriteAt([]byte("short"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pages.Write([]byte("tail")); err != nil { // under a segment's worth: sent by Finish
		t.Fatal(err)
	}
	want = append(want, "tail"...)
	fr.finish(t)
	for name, w := range map[string][]byte{"pages-1.img": want, "pages-2.img": []byte("short")} {
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(b, w) {
			t.Errorf("%s: got %d bytes (%v), want %d", name, len(b), err, len(w))
		}
	}
}

// waitSize waits until p holds n bytes: the receiver wrote what the
// sender had of it, while the writer still has it open.
func waitSize(t *testing.T, p string, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(p); err == nil && fi.Size() == n {
			return
		}
		if time.Now().After(deadline) {
			fi, err := os.Stat(p)
			t.Fatalf("%s never reached %d bytes while being written: %v %v", p, n, fi, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A segment must continue the file the stream made, exactly where it
// ends; anything else is refused, and a good one is summed with the rest.
func TestReceiveSegments(t *testing.T) {
	type entry struct {
		name, body string
		off        string // "" for a whole file
	}
	stream := func(manifest string, es ...entry) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, e := range es {
			h := &tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.body)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
			if e.off != "" {
				h.PAXRecords = map[string]string{offsetRecord: e.off}
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			io.WriteString(tw, e.body)
		}
		tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(manifest)), Typeflag: tar.TypeReg})
		io.WriteString(tw, manifest)
		tw.Close()
		return b.Bytes()
	}
	var whole sum
	io.WriteString(&whole, "abcdef")
	good := fmt.Sprintf("%s  images/a\n", whole)

	dst := t.TempDir()
	if _, err := Receive(bytes.NewReader(stream(good, entry{"images/a", "abc", ""}, entry{"images/a", "def", "3"})), map[string]string{"images": dst}); err != nil {
		t.Fatalf("a good segment: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a")); string(b) != "abcdef" {
		t.Fatalf("a good segment: %q", b)
	}
	for name, es := range map[string][]entry{
		"a segment of a file not sent": {{"images/a", "def", "3"}},
		"a segment past the end":       {{"images/a", "abc", ""}, {"images/a", "def", "4"}},
		"a segment inside the file":    {{"images/a", "abc", ""}, {"images/a", "def", "2"}},
		"a segment at 0":               {{"images/a", "", ""}, {"images/a", "abcdef", "0"}},
		"a segment with a bad offset":  {{"images/a", "abc", ""}, {"images/a", "def", "3x"}},
		"a segment summed wrong":       {{"images/a", "abc", ""}, {"images/a", "deF", "3"}},
	} {
		_, err := Receive(bytes.NewReader(stream(good, es...)), map[string]string{"images": t.TempDir()})
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: want ErrCorrupt, got %v", name, err)
		}
	}
}
