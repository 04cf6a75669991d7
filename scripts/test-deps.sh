#!/usr/bin/env bash
# test-deps.sh - what `make test` needs beyond scripts/bootstrap.sh.
# Idempotent; once done it needs no network.
#
#   - busybox-static (installed): the base of the images tests build
#     locally (internal/image/imagetest), nothing is pulled from a registry
#   - Debian's nginx and its libraries, *downloaded, not installed*, into
#     /var/cache/containerflow/test-debs: a test unpacks them into an image
#     and runs stock nginx from it (a server that drops privileges), so
#     nothing on this machine starts or serves anything
set -euo pipefail

say() { printf 'test-deps: %s\n' "$*"; }
die() {
	printf 'test-deps: ERROR: %s\n' "$*" >&2
	exit 1
}
[[ $(id -u) -eq 0 ]] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive

if dpkg-query -W -f='${db:Status-Abbrev}' busybox-static 2>/dev/null | grep -q '^ii'; then
	say "busybox-static present"
else
	apt-get -q -o DPkg::Lock::Timeout=300 install -y --no-install-recommends busybox-static >/dev/null ||
		{ apt-get -q update >/dev/null && apt-get -q -o DPkg::Lock::Timeout=300 install -y --no-install-recommends busybox-static >/dev/null; } ||
		die "cannot install busybox-static"
	say "installed busybox-static"
fi

cache=/var/cache/containerflow/test-debs
readonly PKGS=(nginx nginx-common libc6 libgcc-s1 libcrypt1 libpcre2-8-0 libssl3 zlib1g)
mkdir -p "$cache"
have_all() {
	local p
	for p in "${PKGS[@]}"; do
		compgen -G "$cache/${p}_*.deb" >/dev/null || return 1
	done
}
if have_all; then
	say "debs for the nginx image present in $cache"
	exit 0
fi
download() { (cd "$cache" && apt-get -q -o APT::Sandbox::User=root download "${PKGS[@]}" >/dev/null); }
download || { apt-get -q update >/dev/null && download; } || die "cannot download ${PKGS[*]} into $cache"
have_all || die "downloaded, but some of ${PKGS[*]} are missing from $cache"
say "downloaded ${PKGS[*]} into $cache"
