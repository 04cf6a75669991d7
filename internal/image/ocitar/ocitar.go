// Package ocitar writes an OCI image layout directory as the tar stream that
// image.Store.Load and the agent's image upload take.
package ocitar

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// TarLayout writes the directories and regular files under dir (all an
// OCI layout directory has) as a tar stream, the form Load and the agent's
// upload take.
func TarLayout(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: an OCI layout holds only files and directories", p)
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil || fi.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
