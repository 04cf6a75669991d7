package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ResetTCPRepair takes every TCP socket of the container out of repair
// mode. CRIU puts the sockets it dumps into repair mode and takes them out
// again when a dump fails — unless CRIU itself is killed, which leaves
// them there: a socket in repair mode neither sends nor acknowledges, so
// the connection looks alive to the program and dead to its peer. Each
// socket is reached through a copy of the process's descriptor
// (pidfd_getfd); leaving repair mode on a socket that was not in it only
// sends a harmless window probe. It returns how many sockets it reset.
func (r *Runtime) ResetTCPRepair(ctx context.Context, name string) (int, error) {
	pids, err := r.Pids(ctx, name)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	seen := map[string]bool{} // a socket shared by processes is reset once
	for _, pid := range pids {
		k, err := resetProcess(pid, seen)
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

func resetProcess(pid int, seen map[string]bool) (int, error) {
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return 0, nil // the process exited
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, nil
	}
	defer unix.Close(pidfd)
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:") || seen[target] {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		seen[target] = true
		ok, err := resetSocket(pidfd, fd)
		if err != nil {
			return n, fmt.Errorf("pid %d fd %d: %w", pid, fd, err)
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// resetSocket reports whether fd (in the process behind pidfd) was an
// established TCP socket, now out of repair mode.
func resetSocket(pidfd, fd int) (bool, error) {
	s, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return false, nil // closed meanwhile
	}
	defer unix.Close(s)
	typ, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_STREAM {
		return false, nil
	}
	proto, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil || proto != unix.IPPROTO_TCP {
		return false, nil
	}
	info, err := unix.GetsockoptTCPInfo(s, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != unix.BPF_TCP_ESTABLISHED {
		return false, nil // only established sockets can be in repair here
	}
	if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		return false, fmt.Errorf("leave TCP repair: %w", err)
	}
	return true, nil
}
