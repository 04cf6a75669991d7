package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/containerflow/containerflow/internal/image"
	"github.com/containerflow/containerflow/internal/image/ocitar"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Load, list and remove OCI images on the testbed's hosts"}
	var host string
	load := &cobra.Command{
		Use:   "load FILE|DIR --host H",
		Short: "Load an image archive (docker save, podman save, skopeo oci-archive) or an OCI layout directory",
		Long: `Uploads an image to host H's agent, which verifies every blob, flattens the
layers into one read-only root filesystem and names the image by its config
digest. FILE is a docker-archive or an OCI archive (gzipped or not); DIR is an
OCI image layout, sent as an OCI archive. Make one with, for example:

  podman save --format oci-archive -o app.tar localhost/app:1
  docker save -o app.tar app:1
  skopeo copy docker-daemon:app:1 oci-archive:app.tar:app:1`,
		Example: `  cflow image load app.tar --host hostA`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hostClient(g, host)
			if err != nil {
				return err
			}
			body, err := openArchive(args[0])
			if err != nil {
				return err
			}
			defer body.Close()
			img, err := c.LoadImage(cmd.Context(), body)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "loaded %s on %s: %s (%s)\n", strings.Join(img.Refs, ", "), host, img.Digest, humanBytes(img.Size))
			return nil
		},
	}
	load.Flags().StringVar(&host, "host", "", "host to load the image on (hostA, hostB, ...)")
	_ = load.MarkFlagRequired("host")

	var (
		lsHost string
		asJSON bool
	)
	ls := &cobra.Command{
		Use: "ls [--host H]", Short: "List images, on every host unless --host is given", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := agents(g)
			if err != nil {
				return err
			}
			hosts := hostsOf(cs)
			if lsHost != "" {
				if _, ok := cs[lsHost]; !ok {
					return fmt.Errorf("unknown host %q (hosts: %s)", lsHost, strings.Join(hosts, ", "))
				}
				hosts = []string{lsHost}
			}
			type row struct {
				Host string `json:"host"`
				image.Image
			}
			var all []row
			for _, h := range hosts {
				l, err := cs[h].Images(cmd.Context())
				if err != nil {
					return fmt.Errorf("%s: %w", h, err)
				}
				for _, img := range l {
					all = append(all, row{h, img})
				}
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(all)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REF\tDIGEST\tHOST\tSIZE\tCREATED")
			for _, r := range all {
				refs := r.Refs
				if len(refs) == 0 {
					refs = []string{"<none>"}
				}
				for _, ref := range refs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ref, shortDigest(r.Digest), r.Host, humanBytes(r.Size), r.Created.Format(time.DateOnly))
				}
			}
			return tw.Flush()
		},
	}
	ls.Flags().StringVar(&lsHost, "host", "", "list only this host's images")
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var rmHost string
	rm := &cobra.Command{
		Use: "rm REF|DIGEST --host H", Short: "Remove an image (refused while a container uses it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hostClient(g, rmHost)
			if err != nil {
				return err
			}
			img, err := c.RemoveImage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s from %s\n", img.Digest, rmHost)
			return nil
		},
	}
	rm.Flags().StringVar(&rmHost, "host", "", "host to remove the image from")
	_ = rm.MarkFlagRequired("host")
	cmd.AddCommand(load, ls, rm)
	return cmd
}

// openArchive opens an archive file, or tars a layout directory on the
// fly (the agent takes a directory as an OCI archive).
func openArchive(p string) (io.ReadCloser, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return os.Open(p)
	}
	if _, err := os.Stat(filepath.Join(p, "oci-layout")); err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout directory (no oci-layout file)", p)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ocitar.TarLayout(p, pw)) }()
	return pr, nil
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
