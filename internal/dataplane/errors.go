package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Sentinel errors. Every error returned by this package that falls in one of
// these classes wraps the sentinel, so callers test with errors.Is and can
// map them to protocol errors (for HTTP: 400, 404, 409, 507).
var (
	// ErrInvalid reports bad input: a non-IPv4 address, a malformed MAC,
	// a port number out of range, an inconsistent entry. The message
	// names the offending field.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound reports that the entry to change or delete does not
	// exist.
	ErrNotFound = errors.New("not found")
	// ErrUnknownPort reports a switch port number that is not attached.
	ErrUnknownPort = errors.New("unknown port")
	// ErrPortInUse reports an attach to a port number or an interface that
	// is already taken by another attachment.
	ErrPortInUse = errors.New("port in use")
	// ErrTableFull reports that a table (or a service's member list) has
	// no room for another entry. Nothing was changed.
	ErrTableFull = errors.New("table full")
	// ErrClosed reports use of a Dataplane after Close or Destroy.
	ErrClosed = errors.New("dataplane closed")
)

// mapErr translates a map operation's error into the package's sentinels:
// a full hash map answers E2BIG (ENOSPC on some paths), a missing key
// ebpf.ErrKeyNotExist.
func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.E2BIG), errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("%s: %w: %w", op, ErrTableFull, err)
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
