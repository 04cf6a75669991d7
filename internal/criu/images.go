package criu

import (
	"path"
	"strings"
)

// AppendedImage says CRIU writes an image file of this name only by
// appending to it: the pages images (pages-N.img), which a dump fills
// chunk by chunk, one page pipe's worth at a time (criu/mem.c's chunk
// mode, page_xfer writing in order), and never rewrites. A stream may
// send such a file as it grows (transfer.Tree.Appends).
func AppendedImage(base string) bool {
	ok, _ := path.Match("pages-*.img", base)
	return ok && !strings.Contains(base, "/")
}
