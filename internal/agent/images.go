package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerflow/containerflow/internal/httpserve"
	"github.com/containerflow/containerflow/internal/image"
	"github.com/containerflow/containerflow/internal/runtime"
)

// imageStore is the agent's OCI image store, under StateDir/images
// (not Config.ImagesDir, which holds CRIU checkpoint images). It is
// opened on first use, so that an agent whose state dir cannot hold
// images still runs and migrates containers.
type imageStore struct {
	once sync.Once
	s    *image.Store
	err  error
}

// ImageStore returns the agent's image store.
func (a *Agent) ImageStore() (*image.Store, error) {
	a.images.once.Do(func() {
		a.images.s, a.images.err = image.Open(filepath.Join(a.cfg.StateDir, "images"))
	})
	return a.images.s, a.images.err
}

// imageInUse says whether a container here (running, stopped or
// arriving) runs from the image.
func (a *Agent) imageInUse(digest string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.containers {
		if e.info.ImageDigest == digest {
			return true
		}
	}
	return false
}

// imageErr maps the store's errors to the API's statuses.
func imageErr(err error) error {
	switch {
	case errors.Is(err, image.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, image.ErrInUse):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, image.ErrBadImage), errors.Is(err, image.ErrAmbiguous):
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return err
}

// LoadImage stores the image archive read from r (any format Store.Load
// takes, as a tar stream: a layout directory must be tarred).
func (a *Agent) LoadImage(ctx context.Context, r io.Reader) (image.Image, error) {
	s, err := a.ImageStore()
	if err != nil {
		return image.Image{}, err
	}
	// Load needs a file: a docker-archive is read in several passes.
	f, err := os.CreateTemp(a.cfg.StateDir, "image-upload-*.tar")
	if err != nil {
		return image.Image{}, err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return image.Image{}, fmt.Errorf("receiving image: %w", err)
	}
	img, err := s.Load(ctx, f.Name())
	if err != nil {
		// The temp file's name means nothing to the client.
		return image.Image{}, imageErr(renamed{strings.ReplaceAll(err.Error(), f.Name(), "uploaded archive"), err})
	}
	a.log.Info("image loaded", "digest", img.Digest, "refs", img.Refs, "size", img.Size)
	return img, nil
}

// renamed is an error with a new message that still matches its cause.
type renamed struct {
	msg string
	err error
}

func (e renamed) Error() string { return e.msg }
func (e renamed) Unwrap() error { return e.err }

// PushImage makes sure host `to` has the image, sending it from this
// agent's store when it has not: what a migration's source does before
// anything is frozen (pre-staging; a destination keeps it, by digest, for
// the next time). It returns the archive bytes sent, 0 if none were.
func (a *Agent) PushImage(ctx context.Context, to, digest string) (int64, error) {
	if _, ok := a.cfg.Peers[to]; !ok {
		return 0, fmt.Errorf("%w: unknown host %q", ErrBadRequest, to)
	}
	peer, err := a.peerClient(to, false)
	if err != nil {
		return 0, err
	}
	var apiErr *APIError
	if _, err := peer.Image(ctx, digest); err == nil {
		return 0, nil
	} else if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		return 0, fmt.Errorf("image %s on %s: %w", digest, to, err)
	}
	s, err := a.ImageStore()
	if err != nil {
		return 0, err
	}
	pr, pw := io.Pipe()
	sent := make(chan int64, 1)
	go func() {
		n, err := s.Export(ctx, digest, pw)
		sent <- n
		pw.CloseWithError(err)
	}()
	img, err := peer.LoadImage(ctx, pr)
	pr.CloseWithError(errors.New("the destination stopped reading"))
	n := <-sent
	if err != nil {
		return n, fmt.Errorf("pre-staging image %s on %s: %w", digest, to, err)
	}
	if img.Digest != digest {
		return n, fmt.Errorf("pre-staging image %s on %s: it stored %s", digest, to, img.Digest)
	}
	return n, nil
}

// resolveImage turns the image a client named into the digest the
// container runs from, and fills what the client left out from the
// image's configuration, as docker run does: command, environment (the
// client's wins), working directory and user.
func (a *Agent) resolveImage(s *ContainerSpec) error {
	if s.Image == "" {
		return nil
	}
	st, err := a.ImageStore()
	if err != nil {
		return err
	}
	img, err := st.Get(s.Image)
	if err != nil {
		return fmt.Errorf("%w: image %q: %v", ErrBadRequest, s.Image, err)
	}
	s.ImageDigest = img.Digest
	c := img.Config
	s.Args = c.Command(s.Args)
	if len(s.Args) == 0 {
		return fmt.Errorf("%w: image %q has no entrypoint or command; give one", ErrBadRequest, s.Image)
	}
	s.Env = append(append([]string(nil), c.Env...), s.Env...)
	if s.Cwd == "" {
		s.Cwd = c.WorkingDir
	}
	if s.User == (runtime.User{}) && c.User != "" && c.User != "root" && c.User != "0" && c.User != "0:0" {
		u, err := runtime.ParseUser(c.User)
		if err != nil {
			return fmt.Errorf("%w: image %q runs as user %q; names are not resolved, give --user UID[:GID]", ErrBadRequest, s.Image, c.User)
		}
		s.User = u
	}
	return nil
}

// imageRoot is the unpacked tree of the container's image on this host;
// "" when the container has no image or the image is not here (validate
// says which).
func (a *Agent) imageRoot(s ContainerSpec) string {
	if s.ImageDigest == "" {
		return ""
	}
	st, err := a.ImageStore()
	if err != nil {
		return ""
	}
	lower, err := st.RootfsLayers(s.ImageDigest)
	if err != nil {
		return ""
	}
	return lower
}

// imageRoutes adds the image API. A ref holds slashes (registry/name:tag):
// clients escape it (%2F) or send the digest.
func (a *Agent) imageRoutes(mux *http.ServeMux) {
	store := func(w http.ResponseWriter) *image.Store {
		s, err := a.ImageStore()
		if err != nil {
			writeErr(w, err)
		}
		return s
	}
	mux.Handle("POST /v1/images", a.auth(func(w http.ResponseWriter, r *http.Request) {
		// A migration's source pre-stages its container's image here.
		if who := caller(r); r.TLS != nil && !a.isPeer(who) {
			if err := a.allowUser(r); err != nil {
				writeErr(w, err)
				return
			}
		}
		httpserve.IdleBody(w, r, StreamIdleTimeout)
		r.Body = http.MaxBytesReader(w, r.Body, MaxImageUpload)
		img, err := a.LoadImage(r.Context(), r.Body)
		if httpserve.IsTooLarge(err) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("image archive larger than %d bytes", MaxImageUpload)})
			return
		}
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, img)
	}))
	mux.HandleFunc("GET /v1/images", func(w http.ResponseWriter, r *http.Request) {
		if s := store(w); s != nil {
			l, err := s.List()
			if l == nil {
				l = []image.Image{}
			}
			reply(w, l, err)
		}
	})
	mux.HandleFunc("GET /v1/images/{ref...}", func(w http.ResponseWriter, r *http.Request) {
		if s := store(w); s != nil {
			img, err := s.Get(r.PathValue("ref"))
			reply(w, img, imageErr(err))
		}
	})
	mux.Handle("DELETE /v1/images/{ref...}", a.auth(a.user(func(w http.ResponseWriter, r *http.Request) {
		if s := store(w); s != nil {
			img, err := s.Remove(r.PathValue("ref"), a.imageInUse)
			if err == nil {
				a.log.Info("image removed", "digest", img.Digest, "refs", img.Refs)
			}
			reply(w, img, imageErr(err))
		}
	})))
	// For peer agents pre-staging an image: the archive Load takes, its
	// length announced so that a cut transfer shows as one.
	mux.HandleFunc("GET /v1/images/{digest}/export", func(w http.ResponseWriter, r *http.Request) {
		s := store(w)
		if s == nil {
			return
		}
		img, err := s.Get(r.PathValue("digest"))
		if err != nil {
			writeErr(w, imageErr(err))
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("Content-Length", strconv.FormatInt(img.ArchiveSize, 10))
		w.Header().Set("X-Image-Digest", img.Digest)
		if _, err := s.Export(r.Context(), img.Digest, w); err != nil {
			a.log.Warn("image export cut", "digest", img.Digest, "err", err)
		}
	})
}
