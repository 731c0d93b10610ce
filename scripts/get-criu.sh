#!/usr/bin/env bash
# Get a working CRIU (>= 4.1) for imgtool's real-CRIU tests; print the absolute path of its binary as the last
# line of stdout. Everything else goes to stderr.
#
# Debian bookworm's criu (3.17) fails `criu check` on current kernels (vDSO), so this builds upstream CRIU from
# the orig tarball of Debian sid's source package, fetched with `apt-get source` from the mirror this machine
# already uses (a private apt config under the cache dir: the system's sources and lists are left alone).
#
#   sudo scripts/get-criu.sh             # first run: apt installs + download + ~1 min build; then instant
#
# Env: IMGTOOL_CRIU_CACHE  cache dir (default ~/.cache/imgtool/criu): <version>/criu, src/*.orig.tar.*, build.log
#      IMGTOOL_DEBIAN_MIRROR  mirror URI (default: the first Debian URI in the machine's apt sources)
# Tests find the binary in the same cache (tests/realcriu.py), or take IMGTOOL_CRIU=/path/to/criu.
set -euo pipefail

CACHE=${IMGTOOL_CRIU_CACHE:-$HOME/.cache/imgtool/criu}
MIN_VERSION=4.1
# What `make criu` needs on Debian 12 (their -dev packages pull in the runtime libraries the binary links:
# libprotobuf-c1 libnl-3-200 libnet1 libcap2 libuuid1). Optional features (gnutls, libbsd, nftables,
# selinux, libbpf) are used when their -dev package happens to be installed, and are not needed here.
BUILD_DEPS=(build-essential pkg-config protobuf-compiler protobuf-c-compiler libprotobuf-dev libprotobuf-c-dev
            libnl-3-dev libnet1-dev libcap-dev uuid-dev xz-utils)

log() { printf 'get-criu: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The newest cached binary that runs, if any.
cached() {
    local bin
    while IFS= read -r bin; do
        if [[ -x $bin ]] && "$bin" --version >/dev/null 2>&1; then echo "$bin"; return 0; fi
    done < <(compgen -G "$CACHE/[0-9]*/criu" | sort -rV)
    return 1
}

install_deps() {
    local missing=() pkg
    for pkg in "${BUILD_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } \
        || die "apt-get install ${missing[*]} failed"
}

# The machine's own Debian mirror (deb822 debian.sources, else the one-line sources.list).
debian_mirror() {
    local uri=${IMGTOOL_DEBIAN_MIRROR:-}
    [[ -n $uri ]] || uri=$(awk 'tolower($1) == "uris:" && $2 !~ /security/ { print $2; exit }' \
        /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [[ -n $uri ]] || uri=$(awk '$1 == "deb" && !/security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' \
        /etc/apt/sources.list 2>/dev/null || true)
    [[ -n $uri ]] || die "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list (set IMGTOOL_DEBIAN_MIRROR)"
    echo "$uri"
}

# Download criu_<version>.orig.tar.* of sid's source package into $CACHE/src (kept for rebuilds).
fetch_tarball() {
    local apt="$CACHE/apt" mirror
    mirror=$(debian_mirror)
    mkdir -p "$CACHE/src" "$apt/sources.list.d" "$apt/lists/partial"
    printf 'Types: deb-src\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" > "$apt/sources.list.d/sid-src.sources"
    local opts=(-q -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/sources.list.d"
                -o "Dir::State::Lists=$apt/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
                -o APT::Sandbox::User=root)
    log "fetching criu's sid source package from $mirror"
    apt-get "${opts[@]}" update >&2 || die "apt-get update of deb-src $mirror sid failed"
    # Only the upstream tarball is needed (--tar-only); should the Debian part be fetched and 404, apt-get
    # fails, so its status is not the verdict: the tarball's presence is.
    (cd "$CACHE/src" && apt-get "${opts[@]}" source --download-only --tar-only criu >&2) || true
    rm -rf "$apt"    # sid's Sources index (~25 MB) is not needed any more
}

newest_tarball() { compgen -G "$CACHE/src/criu_*.orig.tar.*" | sort -rV | head -n1 || true; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9    # one build at a time (parallel CI jobs, pytest workers)

if bin=$(cached); then
    log "cached: $("$bin" --version | head -n1)"
    echo "$bin"; exit 0
fi

((EUID == 0)) || die "run as root: needs apt-get install, and criu check/dump/restore need root anyway"
install_deps
if bin=$(cached); then echo "$bin"; exit 0; fi    # it was only missing runtime libraries

tarball=$(newest_tarball)
[[ -n $tarball ]] || fetch_tarball
tarball=$(newest_tarball)
[[ -n $tarball ]] || die "apt-get source did not download criu_*.orig.tar.* (see above)"
version=${tarball##*/criu_}; version=${version%%.orig.tar.*}
[[ $(printf '%s\n' "$MIN_VERSION" "$version" | sort -V | head -n1) == "$MIN_VERSION" ]] \
    || die "sid has criu $version, need >= $MIN_VERSION"

build="$CACHE/build-$version"
rm -rf "$build" && mkdir -p "$build"
tar -xf "$tarball" -C "$build" --strip-components=1
log "building criu $version in $build (log: $CACHE/build.log)"
SECONDS=0
make -C "$build" -j"$(nproc)" criu > "$CACHE/build.log" 2>&1 \
    || { tail -n 40 "$CACHE/build.log" >&2; die "make criu failed; full log in $CACHE/build.log"; }
log "built in ${SECONDS}s"

new="$build/criu/criu"
"$new" --version >&2 || die "$new --version failed"
check=$("$new" check 2>&1) || true
grep -E '^(Warn|Error)' <<<"$check" >&2 || true
verdict=$(grep -E '^Looks good' <<<"$check" || true)
[[ -n $verdict ]] || { printf '%s\n' "$check" >&2; die "criu check failed: this kernel cannot checkpoint/restore"; }
log "criu check: $verdict"

mkdir -p "$CACHE/$version"
cp "$new" "$CACHE/$version/criu.tmp" && mv -f "$CACHE/$version/criu.tmp" "$CACHE/$version/criu"
rm -rf "$build"
echo "$CACHE/$version/criu"
