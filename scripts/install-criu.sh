#!/usr/bin/env bash
# install-criu.sh - make a CRIU >= 4.2 that passes `criu check` available.
#
# 1. If $CFLOW_CRIU is set, it must point to such a CRIU: it is checked and
#    nothing is installed.
# 2. If the system's `criu` (in PATH) is >= 4.2 and `criu check` passes,
#    nothing is installed.
# 3. Otherwise Debian testing's ("forky") criu and the libraries it needs
#    (including its own glibc) are unpacked into a private prefix,
#    /opt/containerflow/criu, and run through that prefix's dynamic loader by
#    the wrapper /opt/containerflow/criu/bin/criu. Nothing of the system
#    (apt configuration, /usr, /etc/apt) is changed. The downloaded .debs are
#    kept in /var/cache/containerflow/criu so that the prefix can be rebuilt
#    without network.
#
# The project's Go code looks for CRIU in this order: $CFLOW_CRIU,
# /opt/containerflow/criu/bin/criu, `criu` in PATH.
set -euo pipefail

readonly MIN_VERSION=4.2
readonly PREFIX=/opt/containerflow/criu
readonly CACHE=/var/cache/containerflow/criu
readonly WRAPPER=$PREFIX/bin/criu
readonly SUITE=forky
readonly KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# criu and every shared library it loads (the whole closure, glibc
# included), as packaged in Debian forky.
readonly PACKAGES=(criu libcompel1 libc6 libprotobuf-c1 libnl-3-200 libnet9
	libgnutls30t64 libnftables1 libbsd0 libuuid1 libnettle8t64 libhogweed6t64
	libgmp10 libidn2-0 libunistring5 libtasn1-6 libp11-kit0 libffi8 libmd0
	libjansson4 libmnl0 libnftnl11 libxtables12 libedit2 libtinfo6 libgcc-s1
	libzstd1 libcap2)
# Bump when the layout of the prefix or the wrapper changes: a prefix with
# another layout is rebuilt (from the cached .debs).
readonly LAYOUT=1

say() { printf 'criu: %s\n' "$*"; }
die() {
	printf 'criu: ERROR: %s\n' "$*" >&2
	exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo $0)"

# criu_version BINARY -> prints e.g. 4.2.1 (empty if it does not run).
criu_version() {
	"$1" --version 2>/dev/null | awk '/^Version:/ {print $2; exit}' || true
}

version_ok() {
	[[ -n $1 ]] && dpkg --compare-versions "$1" ge "$MIN_VERSION"
}

# check_out BINARY -> runs `BINARY check`, prints its output, and succeeds if
# it says "Looks good". CRIU logs a harmless "Can't setup RLIMIT_NOFILE"
# error on machines without CAP_SYS_RESOURCE, so the verdict line is what
# counts. The check runs in a throwaway network namespace with loopback up:
# CRIU's TCP-repair probe connects over loopback, which fails in a network
# namespace whose lo is down (e.g. under `unshare -n`).
check_out() {
	local out rc=0
	# shellcheck disable=SC2016 # $0 is expanded by the inner sh
	if out=$(unshare -n sh -c 'ip link set lo up && exec "$0" check' "$1" 2>&1) &&
		grep -q 'Looks good' <<<"$out"; then
		printf '%s\n' "$out"
		return 0
	fi
	out=$("$1" check 2>&1) || rc=$?
	printf '%s\n' "$out"
	[[ $rc -eq 0 ]] && grep -q 'Looks good' <<<"$out"
}

check_ok() { check_out "$1" >/dev/null; }

# --- 1. an explicitly chosen CRIU ---------------------------------------
if [[ -n ${CFLOW_CRIU:-} ]]; then
	[[ -x $CFLOW_CRIU ]] || die "CFLOW_CRIU=$CFLOW_CRIU is not an executable file"
	v=$(criu_version "$CFLOW_CRIU")
	version_ok "$v" || die "CFLOW_CRIU=$CFLOW_CRIU is version '${v:-unknown}', need >= $MIN_VERSION (unset CFLOW_CRIU to get a private CRIU installed)"
	check_ok "$CFLOW_CRIU" || die "CFLOW_CRIU=$CFLOW_CRIU: '$CFLOW_CRIU check' does not say 'Looks good'"
	say "using CFLOW_CRIU=$CFLOW_CRIU ($v)"
	exit 0
fi

# Serialise concurrent runs (e.g. `make test` and `make demo` at once).
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# --- fast path: the private prefix is already installed -----------------
stamp_want() { printf 'layout=%s packages=%s\n' "$LAYOUT" "${PACKAGES[*]}"; }
if [[ -x $WRAPPER && -f $PREFIX/.stamp ]] &&
	[[ $(sed -n '2,$p' "$PREFIX/.stamp") == "$(stamp_want)" ]]; then
	v=$(criu_version "$WRAPPER")
	if version_ok "$v" && check_ok "$WRAPPER"; then
		say "$WRAPPER ($v, private prefix, check: Looks good)"
		exit 0
	fi
	say "existing $PREFIX does not work (version '${v:-none}'); rebuilding it"
fi

# --- 2. a good system CRIU -----------------------------------------------
if sys=$(command -v criu) && [[ $sys != "$WRAPPER" ]]; then
	v=$(criu_version "$sys")
	if version_ok "$v" && check_ok "$sys"; then
		say "$sys ($v, system, check: Looks good)"
		exit 0
	fi
	say "system $sys is version '${v:-unknown}' or fails 'criu check'; installing a private CRIU $MIN_VERSION+"
else
	say "no criu in PATH; installing a private CRIU $MIN_VERSION+"
fi

# --- 3. private install ---------------------------------------------------
[[ $(dpkg --print-architecture) == amd64 ]] ||
	die "the private CRIU install supports amd64 only; install CRIU >= $MIN_VERSION yourself and set CFLOW_CRIU=/path/to/criu"
for tool in apt-get dpkg-deb flock; do
	command -v "$tool" >/dev/null || die "'$tool' is missing"
done
[[ -r $KEYRING ]] || die "$KEYRING is missing (apt-get install debian-archive-keyring)"
mkdir -p "$CACHE/debs" "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "${PREFIX%/*}"

# debian_uri CODENAME -> prints the URI of the machine's apt source that serves this
# release's suite (bookworm on Debian 12) with component main, read from
# /etc/apt/sources.list.d/*.sources (deb822) and the one-line format files
# /etc/apt/sources.list and /etc/apt/sources.list.d/*.list.
debian_uri() {
	local codename=$1 f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk -v want="$codename" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && suites ~ ("(^| )" want "/?( |$)") &&
				    comps ~ /(^| )main( |$)/ && enabled !~ /^(no|false|0)$/ && uris != "") {
					split(uris, u, " "); print u[1]; found = 1; exit
				}
				types = suites = comps = uris = enabled = ""; last = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]/ { # continuation of the previous field
				v = $0; gsub(/^[ \t]+|[ \t]+$/, "", v)
				if (last == "uris") uris = uris " " v
				else if (last == "suites") suites = suites " " v
				else if (last == "components") comps = comps " " v
				else if (last == "types") types = types " " v
				next
			}
			{
				i = index($0, ":"); if (i == 0) next
				k = tolower(substr($0, 1, i - 1)); v = substr($0, i + 1)
				gsub(/^[ \t]+|[ \t]+$/, "", v); gsub(/[ \t]+/, " ", v)
				last = k
				if (k == "types") types = v
				else if (k == "uris") uris = v
				else if (k == "suites") suites = v
				else if (k == "components") comps = v
				else if (k == "enabled") enabled = tolower(v)
			}
			END { if (!found) flush() }
		' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		awk -v want="$codename" '
			{ sub(/#.*/, "") }
			$1 != "deb" { next }
			{
				n = 2
				if ($2 ~ /^\[/) { # options: [a=b c=d]
					while (n <= NF && $n !~ /\]$/) n++
					n++
				}
				uri = $n; suite = $(n + 1)
				sub(/\/$/, "", suite)
				if (suite != want) next
				for (j = n + 2; j <= NF; j++) if ($j == "main") { print uri; exit }
			}
		' "$f"
	done
}

# The private apt configuration: nothing under /etc/apt is read for sources
# (the system's proxy and other settings in apt.conf.d still apply).
apt_opts() {
	APT_OPTS=(
		-o "Dir::Etc::SourceList=$CACHE/apt/sources.list"
		-o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$CACHE/apt/lists"
		-o "Dir::Cache=$CACHE/apt/cache"
		-o "Dir::State::status=$CACHE/apt/status"
		-o Dir::Etc::Preferences=/dev/null
		-o Dir::Etc::PreferencesParts=/dev/null
		-o APT::Architecture=amd64
		-o APT::Architectures::=amd64
		-o Acquire::Languages=none
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::CNF::DefaultEnabled=false
		-o Acquire::Retries=3
		-o APT::Sandbox::User=root
		-q
	)
}

# All .debs are cached if the manifest (written after the last successful
# download) lists the current package set and every file in it exists.
cache_complete() {
	local m=$CACHE/debs/MANIFEST f
	[[ -f $m ]] || return 1
	[[ $(head -n1 "$m") == "packages=${PACKAGES[*]}" ]] || return 1
	while read -r f; do
		[[ -s $CACHE/debs/$f ]] || return 1
	done < <(sed -n '2,$p' "$m")
}

download() {
	local uri codename
	# shellcheck disable=SC1091
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	codename=${codename:-bookworm}
	uri=$(debian_uri "$codename" | head -n1)
	[[ -n $uri ]] || die "cannot find the Debian archive in the apt configuration: no enabled 'deb' entry for suite $codename with component main in /etc/apt/sources.list or /etc/apt/sources.list.d/. Install CRIU >= $MIN_VERSION yourself and set CFLOW_CRIU=/path/to/criu"
	say "downloading CRIU from $uri $SUITE (private apt configuration in $CACHE/apt)"
	printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$uri" "$SUITE" >"$CACHE/apt/sources.list"
	: >"$CACHE/apt/status"
	apt_opts
	local log=$CACHE/apt/last.log
	# apt-get update exits 0 even when it could not fetch the index (it only
	# warns), so its log is checked too.
	if ! apt-get "${APT_OPTS[@]}" update >"$log" 2>&1 ||
		grep -Eq '^(E: |W: Failed to fetch|W: Some index files failed)' "$log"; then
		grep -E '^(E|W|Err):|^  ' "$log" | head -n 6 >&2
		die "'apt-get update' for $uri $SUITE failed (log: $log). Check that this machine can reach $uri (network, proxy) and re-run; or install CRIU >= $MIN_VERSION yourself and set CFLOW_CRIU=/path/to/criu"
	fi
	local dl
	rm -rf "$CACHE"/debs.tmp.*
	dl=$(mktemp -d "$CACHE/debs.tmp.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$dl'" EXIT
	if ! (cd "$dl" && apt-get "${APT_OPTS[@]}" download "${PACKAGES[@]}") >>"$log" 2>&1; then
		grep -E '^(E|W|Err):|^  ' "$log" | head -n 6 >&2
		die "'apt-get download' of criu and its libraries from $uri $SUITE failed (log: $log). Check network access to $uri and re-run; or install CRIU >= $MIN_VERSION yourself and set CFLOW_CRIU=/path/to/criu"
	fi
	local p f files=()
	for p in "${PACKAGES[@]}"; do
		f=$(cd "$dl" && compgen -G "${p}_*.deb" | head -n1) ||
			die "'apt-get download' did not produce a .deb for $p (log: $log)"
		dpkg-deb --info "$dl/$f" >/dev/null 2>&1 || die "downloaded $f is corrupt; re-run to download it again"
		files+=("$f")
	done
	rm -f "$CACHE"/debs/*.deb "$CACHE/debs/MANIFEST"
	mv "$dl"/*.deb "$CACHE/debs/"
	rmdir "$dl"
	trap - EXIT
	{
		printf 'packages=%s\n' "${PACKAGES[*]}"
		printf '%s\n' "${files[@]}"
	} >"$CACHE/debs/MANIFEST.tmp"
	mv "$CACHE/debs/MANIFEST.tmp" "$CACHE/debs/MANIFEST"
	say "cached $(du -sh "$CACHE/debs" | cut -f1) of .debs in $CACHE/debs"
}

if cache_complete; then
	say "using cached .debs in $CACHE/debs (no network needed)"
else
	download
fi

# Extract into a temporary directory next to the prefix, check it works
# there, then swap it in with rename(2): an interrupted run leaves at worst a
# stale temporary directory (removed below), never a half-built prefix.
rm -rf "${PREFIX}.tmp."* "${PREFIX}.old."*
tmp=$(mktemp -d "${PREFIX}.tmp.XXXXXX")
# shellcheck disable=SC2064
trap "rm -rf '$tmp'" EXIT
while read -r f; do
	dpkg-deb -x "$CACHE/debs/$f" "$tmp" || die "cannot extract $CACHE/debs/$f (delete $CACHE/debs and re-run to download again)"
done < <(sed -n '2,$p' "$CACHE/debs/MANIFEST")

ldso=usr/lib64/ld-linux-x86-64.so.2
[[ -e $tmp/$ldso || -L $tmp/$ldso ]] || ldso=lib64/ld-linux-x86-64.so.2
[[ -e $tmp/$ldso ]] || die "the extracted libc6 has no ld-linux-x86-64.so.2"
[[ -x $tmp/usr/sbin/criu ]] || die "the extracted criu package has no usr/sbin/criu"

mkdir -p "$tmp/bin"
# The wrapper finds the prefix from its own location, so it works before and
# after the rename below. --library-path is not inherited by the programs
# CRIU starts, so those use the system's libraries as usual.
cat >"$tmp/bin/criu" <<EOF
#!/bin/sh
# containerflow: run Debian forky's CRIU with its own glibc and libraries.
p=\$(readlink -f -- "\$0") && p=\${p%/bin/*} || exit 127
exec "\$p/$ldso" --library-path "\$p/usr/lib/x86_64-linux-gnu:\$p/lib/x86_64-linux-gnu" "\$p/usr/sbin/criu" "\$@"
EOF
chmod 0755 "$tmp/bin/criu"

v=$(criu_version "$tmp/bin/criu")
version_ok "$v" || die "the private CRIU reports version '${v:-none}' (need >= $MIN_VERSION); output of '$tmp/bin/criu --version': $("$tmp/bin/criu" --version 2>&1 | head -n3)"
if ! out=$(check_out "$tmp/bin/criu"); then
	printf '%s\n' "$out" | tail -n 20 >&2
	die "the private CRIU $v fails 'criu check' on this kernel (see above); nothing was installed"
fi

# Stamp last: a prefix without a matching stamp is rebuilt by the next run.
{
	printf 'version=%s\n' "$v"
	stamp_want
} >"$tmp/.stamp"
chmod 0755 "$tmp"
if [[ -e $PREFIX ]]; then
	old=${PREFIX}.old.$$
	mv "$PREFIX" "$old"
	mv "$tmp" "$PREFIX"
	rm -rf "$old"
else
	mv "$tmp" "$PREFIX"
fi
trap - EXIT

v=$(criu_version "$WRAPPER")
if ! version_ok "$v" || ! check_ok "$WRAPPER"; then
	die "$WRAPPER does not work after installation"
fi
say "installed $WRAPPER ($v, private prefix, check: Looks good)"
