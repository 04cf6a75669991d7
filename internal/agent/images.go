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

	"github.com/containerflow/containerflow/internal/image"
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

// imageInUse says whether a container uses an image. Containers do not
// run from images yet; the runtime integration answers here.
func (a *Agent) imageInUse(digest string) bool { return false }

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

// StageImage makes sure an image is here, fetching it from a peer agent
// when it is not: what a destination does before a migration.
func (a *Agent) StageImage(ctx context.Context, fromHost, digest string) (image.Image, error) {
	s, err := a.ImageStore()
	if err != nil {
		return image.Image{}, err
	}
	if img, err := s.Get(digest); err == nil {
		return img, nil
	}
	base, ok := a.cfg.Peers[fromHost]
	if !ok {
		return image.Image{}, fmt.Errorf("%w: unknown host %q", ErrBadRequest, fromHost)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := a.peerClient(base).ExportImage(ctx, digest, pw)
		pw.CloseWithError(err)
	}()
	img, err := a.LoadImage(ctx, pr)
	pr.Close()
	if err != nil {
		return image.Image{}, fmt.Errorf("staging image %s from %s: %w", digest, fromHost, err)
	}
	return img, nil
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
		img, err := a.LoadImage(r.Context(), r.Body)
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
	mux.Handle("DELETE /v1/images/{ref...}", a.auth(func(w http.ResponseWriter, r *http.Request) {
		if s := store(w); s != nil {
			img, err := s.Remove(r.PathValue("ref"), a.imageInUse)
			if err == nil {
				a.log.Info("image removed", "digest", img.Digest, "refs", img.Refs)
			}
			reply(w, img, imageErr(err))
		}
	}))
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
