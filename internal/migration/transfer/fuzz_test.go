package transfer

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzReceive feeds Receive arbitrary streams, seeded with a real one from
// Send and with hostile ones. It must not panic, and must not create,
// write, chmod or chown anything outside its destinations: a directory
// next to them, which the seeds' symlinks point at, must stay as it was.
func FuzzReceive(f *testing.F) {
	top := f.TempDir()
	outside := filepath.Join(top, "outside")
	victim := filepath.Join(outside, "victim")
	if err := os.Mkdir(outside, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(victim, []byte("untouched"), 0o644); err != nil {
		f.Fatal(err)
	}
	before := snapshot(f, outside)

	f.Add(realStream(f))
	rw := &tar.Header{Name: "rw/", Typeflag: tar.TypeDir, Mode: 0o755}
	for _, hs := range [][]*tar.Header{
		{rw, {Name: "rw/abs", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "rw/abs/victim", Typeflag: tar.TypeReg, Mode: 0o666}},
		{rw, {Name: "rw/rel", Typeflag: tar.TypeSymlink, Linkname: "../../../outside"}, {Name: "rw/rel/new", Typeflag: tar.TypeReg, Mode: 0o666}},
		{rw, {Name: "rw/v", Typeflag: tar.TypeSymlink, Linkname: victim}, {Name: "rw/v", Typeflag: tar.TypeReg, Mode: 0o666}},
		{rw, {Name: "rw/d", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "rw/d/", Typeflag: tar.TypeDir, Mode: 0o777, Uid: 7}},
		{rw, {Name: "rw/e/", Typeflag: tar.TypeDir, Mode: 0o777}, {Name: "rw/e", Typeflag: tar.TypeSymlink, Linkname: outside}},
		{{Name: "images/../rw/x", Typeflag: tar.TypeReg}},
		{{Name: "rw/wh", Typeflag: tar.TypeChar, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}}},
	} {
		f.Add(streamOf(f, hs, map[string]string{"rw/abs/victim": "pwned", "rw/rel/new": "pwned", "rw/v": "pwned"}))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		it, err := os.MkdirTemp(top, "it")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(it)
		dst := filepath.Join(it, "dst")
		_, _ = Receive(bytes.NewReader(data), map[string]string{"images": filepath.Join(dst, "i"), "rw": filepath.Join(dst, "r")})
		if got := snapshot(t, outside); got != before {
			t.Fatalf("Receive changed a directory outside its destinations:\n%s\nwas\n%s", got, before)
		}
		for dir, allowed := range map[string][]string{top: nil, it: {"dst"}, dst: {"i", "r"}} {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if dir == top && (e.Name() == "outside" || e.Name() == filepath.Base(it)) {
					continue
				}
				ok := false
				for _, a := range allowed {
					ok = ok || e.Name() == a
				}
				if !ok {
					t.Fatalf("Receive made %s outside its destinations", filepath.Join(dir, e.Name()))
				}
			}
		}
	})
}

// FuzzReceiveEntries fuzzes the structure rather than the bytes: random
// bytes rarely make a tar header with a valid checksum, so most of them
// never get past the tar reader. Each line of the input is one entry,
// "TYPE NAME [LINK-OR-CONTENT]" (d directory, l symlink, f file, c
// whiteout), made into a well-formed stream.
func FuzzReceiveEntries(f *testing.F) {
	top := f.TempDir()
	outside := filepath.Join(top, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("untouched"), 0o644); err != nil {
		f.Fatal(err)
	}
	before := snapshot(f, outside)
	for _, seed := range []string{
		"d rw/\nl rw/abs " + outside + "\nf rw/abs/victim pwned",
		"d rw/\nl rw/rel ../../../outside\nd rw/rel/\nf rw/rel/x y",
		"d rw/\nd rw/e/\nl rw/e " + outside,
		"d images/\nf images/pages-1.img pages\nd rw/\nl rw/v " + outside + "/victim\nf rw/v x\nc rw/v",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		var hs []*tar.Header
		bodies := map[string]string{}
		for _, line := range strings.Split(spec, "\n") {
			typ, rest, _ := strings.Cut(line, " ")
			name, arg, _ := strings.Cut(rest, " ")
			h := &tar.Header{Name: name, Mode: 0o777, Format: tar.FormatPAX}
			switch typ {
			case "d":
				h.Typeflag = tar.TypeDir
			case "l":
				h.Typeflag, h.Linkname = tar.TypeSymlink, arg
			case "f":
				h.Typeflag = tar.TypeReg
				bodies[name] = arg
			case "c":
				h.Typeflag = tar.TypeChar
			default:
				continue
			}
			hs = append(hs, h)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hs {
			b := ""
			if h.Typeflag == tar.TypeReg {
				b = bodies[h.Name]
				h.Size = int64(len(b))
			}
			if tw.WriteHeader(h) != nil {
				return
			}
			_, _ = tw.Write([]byte(b))
		}
		_ = tw.Close()
		it, err := os.MkdirTemp(top, "it")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(it)
		dst := filepath.Join(it, "dst")
		_, _ = Receive(&buf, map[string]string{"images": filepath.Join(dst, "i"), "rw": filepath.Join(dst, "r")})
		if got := snapshot(t, outside); got != before {
			t.Fatalf("Receive changed a directory outside its destinations:\n%s\nwas\n%s", got, before)
		}
		if ents, _ := os.ReadDir(it); len(ents) > 1 {
			t.Fatalf("Receive made %v beside its destinations", ents)
		}
	})
}

// snapshot describes a directory and its entries: names, types, modes,
// owners, sizes, mtimes, contents.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var b bytes.Buffer
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			b.WriteString(p + ": " + err.Error() + "\n")
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		var content []byte
		if fi.Mode().IsRegular() {
			content, _ = os.ReadFile(p)
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + fi.ModTime().String() + " " + strconv.Itoa(int(st.Uid)) + " " + string(content) + "\n")
		return nil
	})
	return b.String()
}

// realStream is what a migration sends: CRIU's images and a writable layer
// with subdirectories, a symlink, a sticky directory, an overlay whiteout
// and xattrs.
func realStream(t testing.TB) []byte {
	src := t.TempDir()
	for name, body := range map[string]string{"img/pages-1.img": "pages", "img/core-1.img": "core", "rw/tmp/state.db": "hello", "rw/run/app/pid": "42"} {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("state.db", filepath.Join(src, "rw/tmp/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "rw/var-tmp"), 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(src, "rw/var-tmp"), 0o777|os.ModeSticky)
	if os.Geteuid() == 0 {
		_ = unix.Mknod(filepath.Join(src, "rw/tmp/gone"), unix.S_IFCHR, 0)
	}
	_ = unix.Setxattr(filepath.Join(src, "rw/tmp/state.db"), "user.app", []byte("v"), 0)
	var buf bytes.Buffer
	if _, err := Send([]Tree{{Name: "images", Dir: filepath.Join(src, "img")}, {Name: "rw", Dir: filepath.Join(src, "rw")}}, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
