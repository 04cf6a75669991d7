// Package imagetest builds OCI images on the local machine for tests, with
// go-containerregistry: nothing is pulled. Other packages' tests (runtime,
// agent, e2e) use BuildBusybox to get an image a container can run.
package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/containerflow/containerflow/internal/image/ocitar"
)

// Epoch is the time stamped on every built file and image, so that a
// build is reproducible and two builds give the same digest.
var Epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// File is one entry of a layer. Type is a tar type flag (default: a
// regular file, or a directory when Name ends in "/"); Link is the target
// of a symlink or hard link; Mode defaults to 0644 (0755 for directories).
type File struct {
	Name     string
	Type     byte
	Body     string
	Link     string
	Mode     int64
	UID, GID int
	Devmajor int64
	Devminor int64
	Xattrs   map[string]string
}

// Dir, Reg, Symlink, Hardlink and Whiteout are shorthands for layer entries.
func Dir(name string, mode int64) File   { return File{Name: name, Type: tar.TypeDir, Mode: mode} }
func Reg(name, body string) File         { return File{Name: name, Body: body} }
func Symlink(name, target string) File   { return File{Name: name, Type: tar.TypeSymlink, Link: target} }
func Hardlink(name, target string) File  { return File{Name: name, Type: tar.TypeLink, Link: target} }
func Whiteout(name string) File          { return Reg(path.Join(path.Dir(name), ".wh."+path.Base(name)), "") }
func OpaqueWhiteout(dir string) File     { return Reg(path.Join(dir, ".wh..wh..opq"), "") }
func Owned(f File, uid, gid int) File    { f.UID, f.GID = uid, gid; return f }
func WithMode(f File, mode int64) File   { f.Mode = mode; return f }
func WithXattr(f File, k, v string) File { f.Xattrs = map[string]string{k: v}; return f }
func CharDev(name string, maj, min int64) File {
	return File{Name: name, Type: tar.TypeChar, Mode: 0o666, Devmajor: maj, Devminor: min}
}

// LayerTar returns the tar stream of a layer.
func LayerTar(t testing.TB, files ...File) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Typeflag: f.Type, Linkname: f.Link, Mode: f.Mode, Uid: f.UID, Gid: f.GID,
			ModTime: Epoch, Devmajor: f.Devmajor, Devminor: f.Devminor, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			if strings.HasSuffix(f.Name, "/") {
				h.Typeflag = tar.TypeDir
			}
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		for k, v := range f.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer builds an OCI layer (gzip-compressed) from entries.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	b := LayerTar(t, files...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Image stacks layers (the first is the bottom) under cfg, as an OCI
// image for this machine's platform.
func Image(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.Created = v1.Time{Time: Epoch}
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// WriteLayout writes img as an OCI layout directory, named ref (as the
// org.opencontainers.image.ref.name annotation) unless ref is "".
func WriteLayout(t testing.TB, img v1.Image, dir, ref string) {
	t.Helper()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var opts []layout.Option
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
	}
	if err := lp.AppendImage(img, opts...); err != nil {
		t.Fatal(err)
	}
}

// WriteOCIArchive writes img as an OCI archive, what `skopeo copy
// oci-archive:PATH:REF` and `podman save --format oci-archive` make.
func WriteOCIArchive(t testing.TB, img v1.Image, file, ref string) {
	t.Helper()
	dir := t.TempDir()
	WriteLayout(t, img, dir, ref)
	if err := TarDir(dir, file); err != nil {
		t.Fatal(err)
	}
}

// WriteDockerArchive writes img as `docker save` does, tagged ref.
func WriteDockerArchive(t testing.TB, img v1.Image, file, ref string) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		t.Fatal(err)
	}
}

// TarDir writes dir (an OCI layout, or any tree of directories and
// regular files) into a tar file.
func TarDir(dir, file string) error {
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := ocitar.TarLayout(dir, out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// BusyboxRef is the ref BuildBusybox gives its image.
const BusyboxRef = "cflow.test/busybox:latest"

// BusyboxApplets get a /bin symlink to busybox in BuildBusybox's image.
var BusyboxApplets = []string{"sh", "ls", "cat", "echo", "sleep", "env", "id", "ps", "mkdir", "rm", "touch",
	"true", "false", "date", "grep", "hostname", "ip", "nc", "wget", "head", "tail", "wc", "stat", "readlink"}

// Busybox returns a two-layer image: Debian's static busybox with its
// applet symlinks and a minimal /etc below, and the extra files above.
// extraFiles maps a path in the image (e.g. /opt/cflow/bin/cflow) to a
// host file copied there with its mode.
//
// The image has no libc and no dynamic loader: a host binary added
// through extraFiles must be statically linked, or it fails to start
// with "not found". A plain `go build` of cflow is dynamically linked
// (cgo); build the copy for the image with CGO_ENABLED=0. Busybox is
// taken from the host (Debian package busybox-static, itself static);
// scripts/test-deps.sh installs it.
func Busybox(t testing.TB, extraFiles map[string]string) v1.Image {
	t.Helper()
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		if bb, err = exec.LookPath("busybox"); err != nil {
			t.Fatal("needs a static busybox: run scripts/test-deps.sh (make test does), or apt-get install busybox-static")
		}
	}
	body, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	base := []File{
		Dir("bin/", 0o755), Dir("dev/", 0o755), Dir("etc/", 0o755), Dir("proc/", 0o555), Dir("sys/", 0o555),
		Dir("root/", 0o700), Dir("tmp/", 0o1777), Dir("run/", 0o755), Dir("var/", 0o755), Dir("var/tmp/", 0o1777),
		WithMode(Reg("bin/busybox", string(body)), 0o755),
		Reg("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		Reg("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
		Reg("etc/hostname", "busybox\n"),
	}
	for _, a := range BusyboxApplets {
		base = append(base, Symlink("bin/"+a, "busybox"))
	}
	layers := []v1.Layer{Layer(t, base...)}
	if len(extraFiles) > 0 {
		var extra []File
		dirs := map[string]bool{}
		var keys []string
		for k := range extraFiles {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, dst := range keys {
			fi, err := os.Stat(extraFiles[dst])
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(extraFiles[dst])
			if err != nil {
				t.Fatal(err)
			}
			rel := strings.TrimPrefix(path.Clean("/"+dst), "/")
			for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
				dirs[d] = true
				extra = append(extra, Dir(d+"/", 0o755))
			}
			extra = append(extra, WithMode(Reg(rel, string(b)), int64(fi.Mode().Perm())))
		}
		// Parents before children, as tar tools write them.
		sort.SliceStable(extra, func(i, j int) bool { return extra[i].Name < extra[j].Name })
		layers = append(layers, Layer(t, extra...))
	}
	return Image(t, v1.Config{
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:        []string{"/bin/sh"},
		WorkingDir: "/",
	}, layers...)
}

// BuildBusybox writes Busybox(t, extraFiles) as an OCI archive named
// BusyboxRef into dir and returns its path, ready for Store.Load or
// `cflow image load`.
func BuildBusybox(t testing.TB, dir string, extraFiles map[string]string) string {
	t.Helper()
	file := filepath.Join(dir, "busybox.oci.tar")
	WriteOCIArchive(t, Busybox(t, extraFiles), file, BusyboxRef)
	return file
}
