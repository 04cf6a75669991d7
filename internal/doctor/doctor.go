package doctor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/containerflow/containerflow/internal/criu"
	"github.com/containerflow/containerflow/internal/nsrun"
)

// Check is one probe.
type Check struct {
	Name     string
	Required bool // a failure makes the whole doctor fail
	Fix      string
	Run      func(ctx context.Context) (detail string, err error)
}

// Result is the outcome of one Check.
type Result struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
}

const bootstrapFix = "run `make test` or `sudo scripts/bootstrap.sh` (installs it)"

// Checks returns the probes in the order they are reported.
func Checks() []Check {
	return []Check{
		{Name: "root privileges", Required: true, Fix: "run as root (sudo cflow doctor)", Run: checkRoot},
		{Name: "network namespaces, veth, macvlan", Required: true, Fix: "enable CONFIG_NET_NS, CONFIG_VETH, CONFIG_MACVLAN in the kernel", Run: checkNetLinks},
		{Name: "TCP repair mode", Required: true, Fix: "enable CONFIG_CHECKPOINT_RESTORE in the kernel", Run: checkTCPRepair},
		{Name: "userfaultfd", Required: false, Fix: "enable CONFIG_USERFAULTFD (only CRIU lazy pages need it)", Run: checkUserfaultfd},
		{Name: "eBPF tc program + TCX attach", Required: true, Fix: "kernel >= 6.6 with CONFIG_BPF_SYSCALL and CONFIG_NET_CLS_BPF", Run: checkTCX},
		{Name: "bpffs at /sys/fs/bpf", Required: true, Fix: "mount -t bpf bpf /sys/fs/bpf (scripts/bootstrap.sh does it)", Run: checkBPFFS},
		{Name: "nftables", Required: true, Fix: bootstrapFix + "; package nftables", Run: checkNftables},
		{Name: "iproute2", Required: true, Fix: bootstrapFix + "; package iproute2", Run: checkCommand("ip", "-V")},
		{Name: "runc", Required: true, Fix: bootstrapFix + "; package runc", Run: checkCommand("runc", "--version")},
		{Name: "CRIU >= 4.2", Required: true, Fix: bootstrapFix + ", or set CFLOW_CRIU=/path/to/criu", Run: checkCRIUVersion},
		{Name: "post-copy (fs.pipe-max-size)", Required: false, Fix: bootstrapFix + " (raises it to 256 MiB); without it migrations are stop-and-copy only", Run: checkPostCopy},
		{Name: "checkpoint of non-root processes", Required: false, Fix: bootstrapFix + " (builds the CRIU prlimit shim); without it only containers whose processes all run as root can migrate", Run: checkOtherUsers},
		{Name: "criu check", Required: true, Fix: "see the output above; CRIU needs root and a kernel with CONFIG_CHECKPOINT_RESTORE", Run: checkCRIU},
	}
}

// Run executes every check.
func Run(ctx context.Context) []Result {
	var out []Result
	for _, c := range Checks() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		detail, err := c.Run(cctx)
		cancel()
		r := Result{Name: c.Name, OK: err == nil, Required: c.Required, Detail: detail}
		if err != nil {
			r.Detail = err.Error()
			r.Fix = c.Fix
		}
		out = append(out, r)
	}
	return out
}

// Print writes one line per result and returns whether every required
// check passed.
func Print(w io.Writer, rs []Result) bool {
	ok := true
	for _, r := range rs {
		mark := "ok  "
		switch {
		case !r.OK && r.Required:
			mark, ok = "FAIL", false
		case !r.OK:
			mark = "warn"
		}
		fmt.Fprintf(w, "[%s] %-34s %s\n", mark, r.Name, oneLine(r.Detail))
		if !r.OK {
			fmt.Fprintf(w, "       fix: %s\n", r.Fix)
		}
	}
	return ok
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func checkRoot(context.Context) (string, error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("running as uid %d", os.Geteuid())
	}
	return "running as root", nil
}

func checkNetLinks(context.Context) (string, error) {
	err := nsrun.DoNew(func() error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}, PeerName: "probe1"}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("create veth: %w", err)
		}
		parent, err := netlink.LinkByName("probe0")
		if err != nil {
			return err
		}
		mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "probe2", ParentIndex: parent.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE}
		if err := netlink.LinkAdd(mv); err != nil {
			return fmt.Errorf("create macvlan: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return "created a namespace, a veth pair and a macvlan", nil
}

func checkTCPRepair(context.Context) (string, error) {
	err := nsrun.DoNew(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, 1); err != nil {
			return fmt.Errorf("setsockopt TCP_REPAIR: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return "a socket entered TCP_REPAIR", nil
}

func checkUserfaultfd(context.Context) (string, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if errno != 0 {
		return "", fmt.Errorf("userfaultfd(): %w", errno)
	}
	unix.Close(int(fd))
	return "userfaultfd() works", nil
}

func checkTCX(context.Context) (string, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return "", fmt.Errorf("load tc program: %w", err)
	}
	defer prog.Close()
	err = nsrun.DoNew(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: lo.Attrs().Index, Program: prog, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return fmt.Errorf("attach TCX: %w", err)
		}
		return l.Close()
	})
	if err != nil {
		return "", err
	}
	info, _ := prog.Info()
	jit := ""
	if info != nil {
		if _, ok := info.JitedSize(); ok == nil {
			jit = ", JIT on"
		}
	}
	return "loaded a tc program and attached it with TCX" + jit, nil
}

func checkBPFFS(context.Context) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil {
		return "", fmt.Errorf("statfs /sys/fs/bpf: %w", err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return "", fmt.Errorf("/sys/fs/bpf is not a bpf filesystem")
	}
	return "mounted", nil
}

func checkNftables(ctx context.Context) (string, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return "", err
	}
	err := nsrun.DoNew(func() error {
		out, err := exec.CommandContext(ctx, "nft", "add", "table", "inet", "cflow_probe").CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft add table: %w: %s", err, out)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return "created an nftables table (CRIU's network lock uses nftables)", nil
}

func checkCommand(name string, args ...string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("%s not found in PATH", name)
		}
		out, err := exec.CommandContext(ctx, p, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", p, strings.Join(args, " "), err)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return p + ": " + first, nil
	}
}

func checkCRIUVersion(ctx context.Context) (string, error) {
	b, cands, err := criu.Find(ctx)
	if err != nil {
		var why []string
		for _, c := range cands {
			why = append(why, fmt.Sprintf("%s: %v", c.Path, c.Err))
		}
		return "", fmt.Errorf("%w [%s]", err, strings.Join(why, "; "))
	}
	return fmt.Sprintf("%s (%s)", b.Path, b.Version), nil
}

func checkPostCopy(context.Context) (string, error) {
	if err := criu.PostCopyReady(); err != nil {
		return "", err
	}
	b, _ := os.ReadFile(criu.PipeMaxSizeFile)
	return "fs.pipe-max-size " + strings.TrimSpace(string(b)), nil
}

// checkOtherUsers: CRIU reads every task's resource limits, which the
// kernel allows for another user's process only with CAP_SYS_RESOURCE.
// Where root lacks it, the prlimit shim stands in (see criu.PrlimitShim).
func checkOtherUsers(ctx context.Context) (string, error) {
	ok, err := criu.HasSysResource()
	if err != nil {
		return "", err
	}
	if ok {
		return "root has CAP_SYS_RESOURCE", nil
	}
	b, _, err := criu.Find(ctx)
	if err != nil {
		return "", err
	}
	if b.Preload == "" {
		return "", fmt.Errorf("root lacks CAP_SYS_RESOURCE and %s is missing: CRIU fails on any process not run by root (\"Can't get rlimit 0: Operation not permitted\")", criu.PrlimitShim)
	}
	if out, err := b.Command("--version").CombinedOutput(); err != nil {
		return "", fmt.Errorf("CRIU with %s preloaded does not start: %v: %s", b.Preload, err, oneLine(string(out)))
	}
	return "root lacks CAP_SYS_RESOURCE; CRIU runs with " + b.Preload, nil
}

func checkCRIU(ctx context.Context) (string, error) {
	b, _, err := criu.Find(ctx)
	if err != nil {
		return "", err
	}
	return b.Check(ctx)
}
