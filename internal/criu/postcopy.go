package criu

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PipeMaxSizeFile is the limit on how far CRIU may grow a pipe.
const PipeMaxSizeFile = "/proc/sys/fs/pipe-max-size"

// PostCopyPipeMax is the fs.pipe-max-size post-copy was verified with. On
// a host whose root lacks CAP_SYS_RESOURCE (this project's CI machines),
// CRIU's page server cannot grow its pipes past that limit and fails at
// the first page request with the default 1 MiB.
const PostCopyPipeMax = 256 << 20

// PostCopyReady says whether CRIU's lazy pages can work here, and if not
// what to change.
func PostCopyReady() error {
	b, err := os.ReadFile(PipeMaxSizeFile)
	if err != nil {
		return fmt.Errorf("post-copy: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("post-copy: %s: %v", PipeMaxSizeFile, err)
	}
	if n < PostCopyPipeMax {
		return fmt.Errorf("post-copy needs fs.pipe-max-size >= %d (it is %d): run scripts/bootstrap.sh or `sysctl -w fs.pipe-max-size=%d`",
			PostCopyPipeMax, n, PostCopyPipeMax)
	}
	if _, err := os.Stat("/proc/sys/vm/unprivileged_userfaultfd"); err != nil {
		return fmt.Errorf("post-copy needs userfaultfd, which this kernel lacks")
	}
	return nil
}
