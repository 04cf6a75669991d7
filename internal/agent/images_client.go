package agent

import (
	"context"
	"fmt"
	"io"
	"net/url"

	"github.com/containerflow/containerflow/internal/image"
)

// LoadImage uploads an image archive (docker-archive or OCI archive, as a
// tar stream) and returns the stored image.
func (c *Client) LoadImage(ctx context.Context, archive io.Reader) (image.Image, error) {
	var img image.Image
	err := c.doStream(ctx, "/v1/images", archive, &img)
	return img, err
}

// Images lists the agent's images.
func (c *Client) Images(ctx context.Context) ([]image.Image, error) {
	var out []image.Image
	err := c.do(ctx, "GET", "/v1/images", nil, &out)
	return out, err
}

// Image returns one image by ref, digest or digest prefix.
func (c *Client) Image(ctx context.Context, ref string) (image.Image, error) {
	var img image.Image
	err := c.do(ctx, "GET", "/v1/images/"+url.PathEscape(ref), nil, &img)
	return img, err
}

// RemoveImage deletes an image and its refs; the agent refuses while a
// container uses it.
func (c *Client) RemoveImage(ctx context.Context, ref string) (image.Image, error) {
	var img image.Image
	err := c.do(ctx, "DELETE", "/v1/images/"+url.PathEscape(ref), nil, &img)
	return img, err
}

// ExportImage writes an image's archive (what LoadImage takes) to w and
// returns its length; a transfer cut short is an error.
func (c *Client) ExportImage(ctx context.Context, ref string, w io.Writer) (int64, error) {
	resp, err := c.request(ctx, "GET", "/v1/images/"+url.PathEscape(ref)+"/export", nil)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode >= 300 {
		return 0, decodeResp(resp, nil)
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("image export cut after %d of %d bytes", n, resp.ContentLength)
	}
	return n, err
}
