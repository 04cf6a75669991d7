package transfer

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Compression of the stream on the wire. Checkpoint images are mostly
// memory pages: worth compressing only where the link, not the CPU, is
// the bottleneck (the seed's experiments compared rsync with and without
// -z on a shaped path). zstd's fastest level keeps up with a 2-core host
// at hundreds of MB/s; docs/migration.md has the measurements.
const (
	CompressNone = ""
	CompressZstd = "zstd"
)

// CheckCompression refuses names this side cannot read or write.
func CheckCompression(c string) error {
	switch c {
	case CompressNone, "none", CompressZstd:
		return nil
	}
	return fmt.Errorf("compression %q: none or zstd", c)
}

func compressor(c string, w io.Writer) (io.WriteCloser, error) {
	if err := CheckCompression(c); err != nil {
		return nil, err
	}
	if c != CompressZstd {
		return nil, nil
	}
	// One goroutine: the encoder shares the host with CRIU, which the
	// frozen window waits for.
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
}

// NewReceiver returns the reader Receive takes for a body sent with
// compression c, and a function to release it.
func NewReceiver(body io.Reader, c string) (io.Reader, func(), error) {
	if err := CheckCompression(c); err != nil {
		return nil, nil, err
	}
	if c != CompressZstd {
		return body, func() {}, nil
	}
	d, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, nil, err
	}
	return d, d.Close, nil
}

type countingWriter struct {
	w io.Writer
	n interface{ Add(int64) int64 }
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
