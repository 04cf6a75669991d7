#!/usr/bin/env bash
# bootstrap.sh - install and check what containerflow needs on this machine.
# Run by `make test` and `make demo` first. Idempotent; once everything is
# installed it needs no network and takes well under a second.
#
#   - Debian packages: runc, iproute2, nftables, procps,
#     debian-archive-keyring (only the missing ones are installed)
#   - the Go toolchain (must exist, >= the `go` line of go.mod)
#   - CRIU >= 4.2 (scripts/install-criu.sh)
#   - bpffs mounted at /sys/fs/bpf (the eBPF switch pins its maps there)
#   - /etc/criu/runc.conf with `network-lock nftables`
#   - on hosts whose root lacks CAP_SYS_RESOURCE: gcc, and the CRIU prlimit
#     shim built from scripts/criu-prlimit.c into /opt/containerflow/lib
#     (without it CRIU cannot dump processes of other users there)
#   - fs.pipe-max-size >= 256 MiB (CRIU's post-copy page server needs it on
#     hosts whose root lacks CAP_SYS_RESOURCE; only ever raised)
set -euo pipefail

say() { printf 'bootstrap: %s\n' "$*"; }
die() {
	printf 'bootstrap: ERROR: %s\n' "$*" >&2
	exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (containerflow creates network namespaces and runs runc/CRIU); try: sudo $0"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=${here%/*}

# --- Debian packages --------------------------------------------------------
# package:command pairs; a package counts as present if dpkg says it is
# installed and its command is in PATH.
WANT=(runc:runc iproute2:ip nftables:nft procps:ps debian-archive-keyring:)
# CAP_SYS_RESOURCE is bit 24 of the bounding set; without it the prlimit
# shim below is needed, and compiled here.
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (((16#$capbnd >> 24) & 1)); then
	need_shim=
else
	need_shim=1
	WANT+=(gcc:gcc libc6-dev:)
fi
readonly WANT
pkgs=()
for pc in "${WANT[@]}"; do pkgs+=("${pc%%:*}"); done
declare -A installed=()
while read -r p st; do
	[[ $st == ii ]] && installed[$p]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${pkgs[@]}" 2>/dev/null || true)
missing=()
for pc in "${WANT[@]}"; do
	p=${pc%%:*} c=${pc#*:}
	if [[ -z ${installed[$p]:-} ]] || { [[ -n $c ]] && ! command -v "$c" >/dev/null; }; then
		missing+=("$p")
	fi
done
if ((${#missing[@]} == 0)); then
	say "packages: ${pkgs[*]} present"
else
	say "packages: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	log=$(mktemp /tmp/containerflow-apt.XXXXXX.log)
	# apt_locked ARGS... runs apt-get, waiting (up to 5 min) while another
	# apt/dpkg holds its locks instead of failing at once.
	apt_locked() {
		local i
		for ((i = 0; i < 60; i++)); do
			apt-get -o DPkg::Lock::Timeout=300 -q "$@" >>"$log" 2>&1 && return 0
			grep -q 'Could not get lock' "$log" || return 1
			: >"$log"
			sleep 5
		done
		return 1
	}
	if ! { apt_locked update && apt_locked install -y --no-install-recommends "${missing[@]}"; }; then
		tail -n 20 "$log" >&2
		die "apt-get could not install ${missing[*]} (full log: $log); check network access to the Debian mirror and re-run"
	fi
	rm -f "$log"
	for pc in "${WANT[@]}"; do
		c=${pc#*:}
		[[ -z $c ]] || command -v "$c" >/dev/null || die "'$c' is still missing after installing ${pc%%:*}"
	done
	say "packages: installed ${missing[*]}"
fi

# --- Go toolchain -------------------------------------------------------------
gomod=$root/go.mod
[[ -f $gomod ]] || die "$gomod not found"
want=$(awk '$1 == "go" {print $2; exit}' "$gomod")
[[ -n $want ]] || die "no 'go' line in $gomod"
go=$(command -v go || true)
if [[ -z $go && -x /usr/local/go/bin/go ]]; then
	go=/usr/local/go/bin/go
fi
[[ -n $go ]] || die "Go toolchain not found (neither 'go' in PATH nor /usr/local/go/bin/go); install Go >= $want from https://go.dev/dl/ into /usr/local/go"
# GOTOOLCHAIN=local: never let `go` try to download a newer toolchain here.
have=$(cd / && GOTOOLCHAIN=local "$go" env GOVERSION 2>/dev/null) || have=""
have=${have#go}
have=${have%% *}
[[ -n $have ]] || die "'$go env GOVERSION' failed; is $go a working Go toolchain?"
dpkg --compare-versions "$have" ge "$want" ||
	die "Go $have at $go is too old: go.mod needs >= $want; install a newer Go into /usr/local/go"
if command -v go >/dev/null; then
	say "go: $go (go$have >= $want)"
else
	say "go: $go (go$have >= $want; not in PATH: add ${go%/go} to PATH)"
fi

# --- CRIU -----------------------------------------------------------------------
bash "$here/install-criu.sh"

# --- CRIU prlimit shim ------------------------------------------------------------
# See scripts/criu-prlimit.c. Rebuilt when its source changes.
shim=/opt/containerflow/lib/criu-prlimit.so
if [[ -n $need_shim ]]; then
	src=$here/criu-prlimit.c
	sum=$(sha256sum "$src" | cut -d' ' -f1)
	if [[ -f $shim && $(cat "$shim.sha256" 2>/dev/null) == "$sum" ]]; then
		say "criu prlimit shim: $shim (root lacks CAP_SYS_RESOURCE)"
	else
		mkdir -p "${shim%/*}"
		tmp=$(mktemp "$shim.XXXXXX")
		gcc -O2 -Wall -shared -fPIC -o "$tmp" "$src" -ldl || { rm -f "$tmp"; die "cannot build $shim from $src"; }
		chmod 0755 "$tmp"
		mv -f "$tmp" "$shim"
		echo "$sum" >"$shim.sha256"
		say "criu prlimit shim: built $shim (root lacks CAP_SYS_RESOURCE: CRIU needs it to dump processes of other users)"
	fi
else
	say "criu prlimit shim: not needed (root has CAP_SYS_RESOURCE)"
fi

# --- bpffs ------------------------------------------------------------------------
if awk '$2 == "/sys/fs/bpf" && $3 == "bpf" {f = 1} END {exit !f}' /proc/mounts; then
	say "bpffs: mounted at /sys/fs/bpf"
else
	mkdir -p /sys/fs/bpf 2>/dev/null || true
	mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)"
	say "bpffs: mounted bpf at /sys/fs/bpf"
fi

# --- fs.pipe-max-size ------------------------------------------------------------
# Post-copy (CRIU lazy pages): without CAP_SYS_RESOURCE, CRIU's page server
# cannot grow its pipes past this limit and fails at the first page request
# with the default of 1 MiB. Raised for the running kernel only (not
# persisted in /etc/sysctl.d: a reboot returns the machine to its own value,
# and the next bootstrap raises it again).
want_pipe=$((256 << 20))
have_pipe=$(cat /proc/sys/fs/pipe-max-size)
if ((have_pipe >= want_pipe)); then
	say "fs.pipe-max-size: $have_pipe"
else
	echo "$want_pipe" >/proc/sys/fs/pipe-max-size || die "cannot raise fs.pipe-max-size to $want_pipe (post-copy needs it)"
	say "fs.pipe-max-size: raised $have_pipe -> $want_pipe"
fi

# --- /etc/criu/runc.conf --------------------------------------------------------
# runc reads this CRIU configuration file for checkpoint/restore. iptables is
# not installed (and nftables locking is faster), so CRIU must lock the
# network with nftables. Other lines of an existing file are kept.
conf=/etc/criu/runc.conf
line='network-lock nftables'
nl_re='^[[:space:]]*(--)?network-lock([[:space:]=]|$)'
if [[ -f $conf ]] && [[ $(grep -Ec "$nl_re" "$conf") == 1 ]] &&
	grep -Eq "^[[:space:]]*${line}[[:space:]]*$" "$conf"; then
	say "criu config: $conf has '$line'"
else
	mkdir -p /etc/criu
	tmp=$(mktemp /etc/criu/.runc.conf.XXXXXX)
	if [[ -f $conf ]]; then
		grep -Ev "$nl_re" "$conf" >"$tmp" || true
		# keep a final newline before appending
		[[ ! -s $tmp || -z $(tail -c1 "$tmp") ]] || echo >>"$tmp"
	fi
	echo "$line" >>"$tmp"
	chmod 0644 "$tmp"
	mv "$tmp" "$conf"
	say "criu config: wrote '$line' to $conf"
fi

say "ok"
