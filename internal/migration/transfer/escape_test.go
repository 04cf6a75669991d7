package transfer

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// streamOf builds a stream by hand, as a hostile or broken source could.
func streamOf(t testing.TB, hs []*tar.Header, bodies map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		b := ""
		if h.Typeflag == tar.TypeReg {
			b = bodies[h.Name]
			h.Size = int64(len(b))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestReceiveStaysInside: a symlink in the stream (to an absolute path, or
// climbing with ..) must not carry later entries, or their owner, mode and
// times, out of the destination.
func TestReceiveStaysInside(t *testing.T) {
	cases := map[string]func(outside string) []*tar.Header{
		"file through absolute symlink": func(outside string) []*tar.Header {
			return []*tar.Header{
				{Name: "rw/abs", Typeflag: tar.TypeSymlink, Linkname: outside, Mode: 0o777},
				{Name: "rw/abs/victim", Typeflag: tar.TypeReg, Mode: 0o666},
			}
		},
		"file through relative symlink": func(string) []*tar.Header {
			return []*tar.Header{
				{Name: "rw/rel", Typeflag: tar.TypeSymlink, Linkname: "../../../outside", Mode: 0o777},
				{Name: "rw/rel/victim", Typeflag: tar.TypeReg, Mode: 0o666},
			}
		},
		"file over a symlink": func(outside string) []*tar.Header {
			return []*tar.Header{
				{Name: "rw/v", Typeflag: tar.TypeSymlink, Linkname: filepath.Join(outside, "victim"), Mode: 0o777},
				{Name: "rw/v", Typeflag: tar.TypeReg, Mode: 0o666},
			}
		},
		"directory over a symlink": func(outside string) []*tar.Header {
			return []*tar.Header{
				{Name: "rw/d", Typeflag: tar.TypeSymlink, Linkname: outside, Mode: 0o777},
				{Name: "rw/d/", Typeflag: tar.TypeDir, Mode: 0o777, Uid: 4242},
			}
		},
		"directory replaced by a symlink": func(outside string) []*tar.Header {
			return []*tar.Header{
				{Name: "rw/e/", Typeflag: tar.TypeDir, Mode: 0o777, Uid: 4242},
				{Name: "rw/e", Typeflag: tar.TypeSymlink, Linkname: outside, Mode: 0o777},
			}
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("untouched"), 0o644); err != nil {
				t.Fatal(err)
			}
			hs := append([]*tar.Header{{Name: "rw/", Typeflag: tar.TypeDir, Mode: 0o755}}, mk(outside)...)
			stream := streamOf(t, hs, map[string]string{"rw/abs/victim": "pwned", "rw/rel/victim": "pwned", "rw/v": "pwned"})
			dst := filepath.Join(base, "a", "dst")
			_, err := Receive(bytes.NewReader(stream), map[string]string{"images": filepath.Join(dst, "i"), "rw": filepath.Join(dst, "r")})
			t.Logf("Receive: %v", err)
			if b, _ := os.ReadFile(victim); string(b) != "untouched" {
				t.Errorf("wrote outside the destination: %q", b)
			}
			fi, err := os.Stat(outside)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o755 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
				t.Errorf("changed a directory outside: %v uid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("created files outside: %v", ents)
			}
		})
	}
}
