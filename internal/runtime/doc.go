// Package runtime runs containers through runc and checkpoints and restores
// them with CRIU: directly over CRIU's RPC, each side prepared before the
// freeze (direct.go, post-copy in postcopy.go), or through runc checkpoint
// and restore (the baseline). Containers the direct engine restored are
// managed here rather than by runc (owned.go).
//
// A container's bundle is built by the project: its root is a small private
// directory whose /usr and /etc are the host's, bind-mounted read-only (and
// /bin, /sbin, /lib... the same way, or as the same symlinks on merged-/usr
// systems), and its /dev is a directory of the bundle with the usual device
// nodes (see writeDev). /tmp, /run, /var/tmp and /dev/shm are writable directories of
// the bundle (bundle/rw/*), bind-mounted in. So any program installed on
// the host runs in a container unchanged and cannot modify the host; what
// it writes lands in the bundle's rw directories, which a migration sends
// along with the checkpoint images (see RWDirs for why not tmpfs). The root
// directory itself stays writable because CRIU creates a temporary
// directory there.
//
// Every container gets its own network namespace by path (created by the
// caller with a fixed IP and MAC) and stdio as pipes, which a restore
// re-attaches (stdout and stderr to new pipes, stdin an empty one); the
// runtime copies them into a log file.
//
// The freezer is driven here rather than by CRIU: CRIU polls a cgroup-v1
// freezer in 100 ms steps, but skips the wait when the cgroup is already
// frozen, so Freeze (which polls every 200 µs) saves up to 100 ms of
// downtime per checkpoint.
package runtime
