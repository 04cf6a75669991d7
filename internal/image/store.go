package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sentinel errors; match them with errors.Is.
var (
	ErrNotFound  = errors.New("image not found")
	ErrInUse     = errors.New("image in use")
	ErrAmbiguous = errors.New("ambiguous image reference")
	ErrBadImage  = errors.New("not a valid image")
)

// Config is the part of the OCI image config a runtime needs.
type Config struct {
	Env        []string          `json:"env,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	User       string            `json:"user,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	StopSignal string            `json:"stop_signal,omitempty"`
}

// Command is what a container of this image runs: the entrypoint followed
// by args, or by the image's Cmd when args is empty (as docker run does).
func (c Config) Command(args []string) []string {
	if len(args) == 0 {
		args = c.Cmd
	}
	return append(append([]string(nil), c.Entrypoint...), args...)
}

// Image is one stored image.
type Image struct {
	Digest         string    `json:"digest"`          // config digest, the store's key
	ManifestDigest string    `json:"manifest_digest"` // of the manifest it was loaded with
	Refs           []string  `json:"refs"`
	Size           int64     `json:"size"`         // bytes of file content in the rootfs
	ArchiveSize    int64     `json:"archive_size"` // bytes Export writes
	Created        time.Time `json:"created"`      // from the image config
	Loaded         time.Time `json:"loaded"`
	OS             string    `json:"os,omitempty"`
	Architecture   string    `json:"architecture,omitempty"`
	Layers         int       `json:"layers"`
	Config         Config    `json:"config"`
}

// Store is a directory of images. Its methods are safe for concurrent use,
// also by several processes sharing the directory.
type Store struct {
	dir string
	mu  sync.Mutex // serialises this process; the flock serialises processes
}

// Open opens (creating it if needed) the store at dir and removes what
// interrupted loads and removals left in its tmp dir.
func Open(dir string) (*Store, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// 0700: the rootfs dirs hold image files with their setuid bits and
	// owners; other users must not reach them through the store.
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	s := &Store{dir: dir}
	if err := s.locked(func() error { return s.sweep() }); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// sweep removes temp dirs of loads and removals that no longer run: a
// running one in another process holds a flock on its dir's lock file.
func (s *Store) sweep() error {
	ents, err := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(s.dir, "tmp", e.Name())
		if busy(p) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("image store: removing stale %s: %w", p, err)
		}
	}
	return nil
}

// busy says whether another process holds the lock of a temp dir.
func busy(tmp string) bool {
	f, err := os.Open(filepath.Join(tmp, ".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// tempDir makes a temp dir under the store and locks it against the sweep
// of another process's Open; release removes it.
func (s *Store) tempDir(kind string) (dir string, release func(), err error) {
	dir, err = os.MkdirTemp(filepath.Join(s.dir, "tmp"), kind+"-")
	if err != nil {
		return "", nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, func() {
		_ = os.RemoveAll(dir)
		f.Close()
	}, nil
}

// locked runs fn holding the store's process mutex and its file lock.
func (s *Store) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN) //nolint:errcheck // closing the file unlocks too
	return fn()
}

func (s *Store) imageDir(digest string) string {
	return filepath.Join(s.dir, "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// index maps refs to digests.
type index struct {
	Refs map[string]string `json:"refs"`
}

func (s *Store) readIndex() (index, error) {
	ix := index{Refs: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(s.dir, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return ix, nil
	}
	if err != nil {
		return ix, err
	}
	if err := json.Unmarshal(b, &ix); err != nil {
		return ix, fmt.Errorf("image store index: %w", err)
	}
	if ix.Refs == nil {
		ix.Refs = map[string]string{}
	}
	return ix, nil
}

func (s *Store) writeIndex(ix index) error {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, "index.json"), b)
}

// writeFileAtomic replaces path so that a reader (or a crash) sees the old
// or the new content, never a part.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// readImage reads an image's metadata and joins its refs from the index.
func (s *Store) readImage(digest string, ix index) (Image, error) {
	var img Image
	b, err := os.ReadFile(filepath.Join(s.imageDir(digest), "image.json"))
	if errors.Is(err, os.ErrNotExist) {
		return img, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return img, err
	}
	if err := json.Unmarshal(b, &img); err != nil {
		return img, fmt.Errorf("image %s metadata: %w", digest, err)
	}
	img.Refs = []string{}
	for r, d := range ix.Refs {
		if d == img.Digest {
			img.Refs = append(img.Refs, r)
		}
	}
	sort.Strings(img.Refs)
	img.ArchiveSize, err = s.exportSize(img)
	return img, err
}

func (s *Store) digests() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "sha256"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && isHex(e.Name()) && len(e.Name()) == 64 {
			out = append(out, "sha256:"+e.Name())
		}
	}
	return out, nil
}

// List returns every stored image, newest loaded first.
func (s *Store) List() ([]Image, error) {
	var out []Image
	err := s.locked(func() error {
		ix, err := s.readIndex()
		if err != nil {
			return err
		}
		ds, err := s.digests()
		if err != nil {
			return err
		}
		for _, d := range ds {
			img, err := s.readImage(d, ix)
			if err != nil {
				return err
			}
			out = append(out, img)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Loaded.After(out[j].Loaded) })
	return out, err
}

// Get returns the image named by a ref, a full digest (sha256:<hex> or
// <hex>), or a unique prefix of at least 12 hex digits of one.
func (s *Store) Get(refOrDigest string) (Image, error) {
	var img Image
	err := s.locked(func() error {
		ix, err := s.readIndex()
		if err != nil {
			return err
		}
		d, err := s.resolve(refOrDigest, ix)
		if err != nil {
			return err
		}
		img, err = s.readImage(d, ix)
		return err
	})
	return img, err
}

// RootfsLayers returns the read-only lower directory of an image's root
// filesystem, to be mounted with mounts.Overlay. Nothing may write to it.
func (s *Store) RootfsLayers(refOrDigest string) (lower string, err error) {
	img, err := s.Get(refOrDigest)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.imageDir(img.Digest), "rootfs"), nil
}

// resolve turns a ref, digest or digest prefix into a full digest.
func (s *Store) resolve(q string, ix index) (string, error) {
	if q == "" {
		return "", fmt.Errorf("%w: empty reference", ErrNotFound)
	}
	if d, ok := ix.Refs[q]; ok {
		return d, nil
	}
	// A ref given without a tag means :latest, as in docker and podman.
	if !strings.Contains(q[strings.LastIndex(q, "/")+1:], ":") {
		if d, ok := ix.Refs[q+":latest"]; ok {
			return d, nil
		}
	}
	hex := strings.TrimPrefix(q, "sha256:")
	if !isHex(hex) || len(hex) > 64 {
		return "", fmt.Errorf("%w: %q", ErrNotFound, q)
	}
	if len(hex) < 12 {
		return "", fmt.Errorf("%w: %q (a digest prefix needs at least 12 hex digits)", ErrNotFound, q)
	}
	ds, err := s.digests()
	if err != nil {
		return "", err
	}
	var found []string
	for _, d := range ds {
		if strings.HasPrefix(strings.TrimPrefix(d, "sha256:"), hex) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %q", ErrNotFound, q)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: %q matches %d images", ErrAmbiguous, q, len(found))
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Remove deletes an image and all its refs. inUse, when not nil, is asked
// (with the store locked, so no load or removal interleaves) whether a
// container uses the image's digest; if it does, Remove fails with
// ErrInUse and changes nothing.
func (s *Store) Remove(refOrDigest string, inUse func(digest string) bool) (Image, error) {
	var img Image
	err := s.locked(func() error {
		ix, err := s.readIndex()
		if err != nil {
			return err
		}
		d, err := s.resolve(refOrDigest, ix)
		if err != nil {
			return err
		}
		if img, err = s.readImage(d, ix); err != nil {
			return err
		}
		if inUse != nil && inUse(d) {
			return fmt.Errorf("%w: %s (%s) is used by a container; remove the container first", ErrInUse, refOrDigest, short(d))
		}
		// Renamed away first, so that a crash in the middle of a large
		// RemoveAll leaves no half image behind its digest.
		tmp, release, err := s.tempDir("rm")
		if err != nil {
			return err
		}
		defer release()
		if err := os.Rename(s.imageDir(d), filepath.Join(tmp, "image")); err != nil {
			return err
		}
		for r, rd := range ix.Refs {
			if rd == d {
				delete(ix.Refs, r)
			}
		}
		return s.writeIndex(ix)
	})
	return img, err
}

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}
