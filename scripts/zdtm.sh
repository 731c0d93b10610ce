#!/usr/bin/env bash
# CRIU's zdtm suite as imgtool's peer suite: build zdtm's static tests from the CRIU source that get-criu.sh
# fetches, dump each listed test with zdtm.py (keeping the images), record CRIU's own crit output for every image,
# and find the restore truth by restoring each kept dump again in fresh namespaces. tests/test_zdtm.py reads it.
#
#   sudo scripts/zdtm.sh                    # CI subset (scripts/zdtm/ci.list, ~30 runs)
#   sudo scripts/zdtm.sh --subset full      # everything in scripts/zdtm/full.list (~100 runs)
#   IMGTOOL_REQUIRE_ZDTM=1 .venv/bin/python -m pytest tests/test_zdtm.py
#
# Options: --subset ci|full (default ci), --out DIR (default $CACHE/out), --force (redo cases already recorded).
# Env: IMGTOOL_ZDTM_CACHE (default ~/.cache/imgtool/zdtm/<criu-version>): src/ (unpacked, built CRIU tree),
#      venv/ (pyyaml, protobuf<5 for zdtm.py, pycriu and crit), bin/crit, out/.
#
# Output, per run (OUT/<name>-<flavour>/): images/ (the kept dump: zdtm's dump dir minus restore-side files),
# zdtm/ (dump.cropt, restore.cropt, zdtm's restore.log), crit-json/ and crit-json-raw/ (crit decode [--pretty]),
# side-files/ + side-files.list (the test's files at dump time), case.env (for scripts/zdtm/in-env.sh),
# truth.json, zdtm.log. OUT/index.json lists them all. Idempotent: a case with a truth.json is not run again.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ZDIR=$HERE/zdtm
BUILD_DEPS=(libseccomp-dev libbpf-dev libnl-route-3-dev libaio-dev python3-venv iproute2 util-linux iptables)
ZDTM_TIMEOUT=300

log() { printf 'zdtm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SUBSET=ci OUT='' FORCE=0
while (($#)); do
    case $1 in
        --subset) SUBSET=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --force) FORCE=1; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ -f $ZDIR/$SUBSET.list ]] || die "no list $ZDIR/$SUBSET.list (subsets: ci, full)"
((EUID == 0)) || die "run as root (zdtm and criu dump/restore need it)"

# -- building ----------------------------------------------------------------------------------------------------

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

# get-criu.sh fetches the tarball (and builds its own criu, used by other tests); same cache, same defaults.
find_tarball() {
    "$HERE/get-criu.sh" >/dev/null
    local cache=${IMGTOOL_CRIU_CACHE:-$HOME/.cache/imgtool/criu}
    compgen -G "$cache/src/criu_*.orig.tar.*" | sort -rV | head -n1
}

unpack() {
    local tarball=$1
    [[ -f $SRC/.imgtool-unpacked ]] && return 0
    log "unpacking $tarball"
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar -xf "$tarball" -C "$SRC" --strip-components=1
    touch "$SRC/.imgtool-unpacked"
}

# This machine has no CAP_SYS_RESOURCE: a test run as zdtm's unprivileged uid cannot get its rlimits restored,
# so every test runs as root (as if it had the 'suid' flag). The images then carry uid 0.
patch_zdtm() {
    local py=$SRC/test/zdtm.py
    grep -q 'imgtool: every test runs as root' "$py" && return 0
    sed -i "s/^\(\s*\)if not test_flag(self.__desc, 'suid'):$/\1if False:  # imgtool: every test runs as root/" "$py"
    grep -q 'imgtool: every test runs as root' "$py" || die "could not patch $py (zdtm.py changed?)"
}

build_criu() {
    [[ -x $SRC/criu/criu ]] && return 0
    log "building criu (log: $CACHE/build-criu.log)"
    make -C "$SRC" -j"$(nproc)" criu > "$CACHE/build-criu.log" 2>&1 \
        || { tail -n 30 "$CACHE/build-criu.log" >&2; die "make criu failed"; }
}

# zdtm's library, its helpers, and the binaries of the listed tests only (zdtm.py would build each on demand).
build_tests() {
    local names
    mapfile -t names < <(list_cases | awk '{ print $1 }' | sort -u)
    log "building zdtm lib, helpers and ${#names[@]} static tests (log: $CACHE/build-zdtm.log)"
    { make -C "$SRC/test" umount2 zdtm_ct zdtm_mount_cgroups \
        && make -C "$SRC/test/zdtm/lib" -j"$(nproc)" \
        && make -C "$SRC/test/zdtm/static" -j"$(nproc)" "${names[@]}"; } >> "$CACHE/build-zdtm.log" 2>&1 \
        || { tail -n 30 "$CACHE/build-zdtm.log" >&2; die "building zdtm failed"; }
}

# A private venv for zdtm.py, pycriu and crit: pyyaml and a protobuf runtime matching Debian's protoc 3.21.
make_venv() {
    [[ -x $VENV/bin/python && -f $VENV/.imgtool-ok ]] && return 0
    log "creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'protobuf>=4.21,<5' pyyaml >&2
    touch "$VENV/.imgtool-ok"
}

# CRIU's lib/pycriu with images/*.proto compiled in (what `make lib` would do), and crit run from the source.
build_pycriu() {
    local py=$SRC/lib/pycriu
    [[ -f $py/images/pb.py && -x $CACHE/bin/crit ]] && return 0
    log "building pycriu and crit"
    local protos=() p m
    for p in "$SRC"/images/*.proto; do [[ ${p##*/} == rpc.proto ]] || protos+=("$p"); done
    protoc -I="$SRC/images" -I=/usr/include --python_out="$py/images" "${protos[@]}"
    protoc -I="$SRC/images" --python_out="$py" "$SRC/images/rpc.proto"
    "$VENV/bin/python" "$SRC/scripts/magic-gen.py" "$SRC/criu/include/magic.h" "$py/images/magic.py"
    {
        echo "# Autogenerated. Do not edit!"
        for p in "${protos[@]}"; do
            m=${p##*/}; m=${m%.proto}; m=${m//-/_}_pb2
            [[ $m == opts_pb2 ]] || echo "from .$m import *"
        done
    } > "$py/images/pb.py"
    echo "__version__ = '$VERSION'" > "$py/version.py"
    echo "__version__ = '$VERSION'" > "$SRC/crit/crit/version.py"
    mkdir -p "$CACHE/bin"
    printf '#!/bin/sh\nPYTHONPATH=%s:%s exec %s -m crit "$@"\n' "$SRC/lib" "$SRC/crit" "$VENV/bin/python" \
        > "$CACHE/bin/crit"
    chmod +x "$CACHE/bin/crit"
    "$CACHE/bin/crit" --help >/dev/null || die "crit does not run"
}

# -- running one test --------------------------------------------------------------------------------------------

list_cases() { grep -vE '^\s*(#|$)' "$ZDIR/$SUBSET.list"; }

# zdtm.py run of one test and flavour, images kept; the post-dump hook stages the test's side files.
run_zdtm() {
    local name=$1 flavour=$2 dir=$3 static=$SRC/test/zdtm/static
    rm -rf "$SRC/test/dump/zdtm/static/$name"
    make --no-print-directory -C "$static" "$name.cleanout" >/dev/null 2>&1 || true
    mkdir -p "$dir/.stage"
    find "$static" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort > "$dir/.stage/before.list"
    (cd "$SRC/test" && PATH="$VENV/bin:$PATH" IMGTOOL_ZDTM_STAGE="$dir/.stage" IMGTOOL_ZDTM_STATIC="$static" \
        timeout "$ZDTM_TIMEOUT" ./zdtm.py run -t "zdtm/static/$name" -f "$flavour" --keep-img always \
        --ignore-taint --pycriu-search-path "$SRC/lib" --crit-bin "$CACHE/bin/crit" \
        --script "$ZDIR/post-dump.sh") < /dev/null > "$dir/zdtm.log" 2>&1
}

# Copy the kept dump (the dir with dump.log) to DIR/images, minus what zdtm's own restore wrote into it.
keep_images() {
    local name=$1 dir=$2 kept
    kept=$(compgen -G "$SRC/test/dump/zdtm/static/$name/*/1/dump.log" | head -n1 || true)
    [[ -n $kept ]] || return 1
    kept=${kept%/dump.log}
    mkdir -p "$dir/images" "$dir/zdtm"
    cp -a "$kept/." "$dir/images/"
    local f
    for f in restore.log stats-restore dump.cropt restore.cropt; do
        [[ -e $dir/images/$f ]] && mv "$dir/images/$f" "$dir/zdtm/"
    done
    rm -f "$dir/images/"*.strace
    if [[ -d $dir/.stage/files ]]; then mv "$dir/.stage/files" "$dir/side-files"; fi
    for f in side-files.list dir-modes; do
        if [[ -f $dir/.stage/$f ]]; then mv "$dir/.stage/$f" "$dir/"; fi
    done
    return 0
}

# crit decode [--pretty] of every image crit can decode, through crit's own decode() in one process (byte for
# byte what `crit decode [--pretty] -i IMG -o OUT` writes); those it cannot are listed in crit-failed.txt.
crit_decode() {
    local dir=$1
    PYTHONPATH="$SRC/lib:$SRC/crit" "$VENV/bin/python" "$ZDIR/crit-decode-all.py" "$dir/images" "$dir"
}

# The restore options zdtm used (zdtm/restore.cropt minus log, images dir, verbosity), one a line, and case.env:
# where the zdtm tree is and, for ns/uns, the root and dev dirs the restore expects (see zdtm/in-env.sh).
restore_setup() {
    local dir=$1 flavour=$2
    "$VENV/bin/python" - "$dir" "$flavour" "$SRC/test" <<'EOF'
import os, shlex, sys
dirname, flavour, testdir = sys.argv[1:]
cropt = os.path.join(dirname, "zdtm", "restore.cropt")
words = open(cropt).read().split() if os.path.exists(cropt) else []
opts, skip = [], False
for w in words:
    if skip:
        skip = False
    elif w in ("--log-file", "--images-dir", "-o", "-D"):
        skip = True
    elif not w.startswith("--verbosity"):
        opts.append(w)
root = opts[opts.index("--root") + 1] if "--root" in opts else ""
dev = os.path.join(os.path.dirname(os.path.dirname(root)), "dev") if root else ""
with open(os.path.join(dirname, "restore-options"), "w") as f:
    f.writelines(o + "\n" for o in opts)
with open(os.path.join(dirname, "case.env"), "w") as f:
    for k, v in (("ZDTM_TEST_DIR", testdir), ("FLAVOUR", flavour), ("NS_ROOT", root), ("NS_DEV", dev)):
        f.write(f"{k}={shlex.quote(v)}\n")
EOF
}

# Restore the kept dump again, in fresh namespaces with the side files back: the restore truth.
truth_restore() {
    local dir=$1 opts
    mapfile -t opts < "$dir/restore-options"
    rm -rf "$dir/truth-work"
    "$ZDIR/in-env.sh" "$dir" -- "$ZDIR/restore-once.sh" "$CRIU" "$dir/images" "$dir/truth-work" "${opts[@]}" \
        < /dev/null > "$dir/truth-restore.out" 2>&1
}

write_truth() {
    local dir=$1 name=$2 flavour=$3 dump_ok=$4 restore_ok=$5 zdtm_rc=$6
    "$VENV/bin/python" - "$dir" "$name" "$flavour" "$dump_ok" "$restore_ok" "$zdtm_rc" <<'EOF'
import json, os, sys
d, name, flavour, dump_ok, restore_ok, zdtm_rc = sys.argv[1:]
def tail(path, n=8):
    try:
        return "\n".join(open(path, errors="replace").read().splitlines()[-n:])
    except OSError:
        return ""
opts_file = os.path.join(d, "restore-options")
zlog = tail(os.path.join(d, "zdtm.log"), 400).splitlines()
truth = {
    "test": name, "flavour": flavour,
    "dump_ok": dump_ok == "1", "restore_ok": restore_ok == "1",
    "restore_options": open(opts_file).read().split("\n")[:-1] if os.path.exists(opts_file) else [],
    "restore_log_tail": tail(os.path.join(d, "truth-work", "restore.log")),
    "restore_result": tail(os.path.join(d, "truth-restore.out"), 1),
    "dump_log_tail": "" if dump_ok == "1" else tail(os.path.join(d, "images", "dump.log")),
    "zdtm_exit": int(zdtm_rc),
    "zdtm_verdict": next((l.strip("# ").strip() for l in reversed(zlog) if " PASS" in l or " FAIL" in l
                          or "Skipping" in l or "skip" in l.lower()), ""),
}
json.dump(truth, open(os.path.join(d, "truth.json"), "w"), indent=1)
EOF
}

run_case() {
    local name=$1 flavour=$2 dir=$OUT/$1-$2 zdtm_rc=0 dump_ok=0 restore_ok=0
    if [[ -f $dir/truth.json && $FORCE == 0 ]]; then return 0; fi
    rm -rf "$dir" && mkdir -p "$dir"
    SECONDS=0
    run_zdtm "$name" "$flavour" "$dir" || zdtm_rc=$?
    if keep_images "$name" "$dir" && grep -q 'Dumping finished successfully' "$dir/images/dump.log"; then
        dump_ok=1
        crit_decode "$dir"
        restore_setup "$dir" "$flavour"
        truth_restore "$dir" && restore_ok=1
    fi
    rm -rf "$dir/.stage" "$SRC/test/dump/zdtm/static/$name"
    write_truth "$dir" "$name" "$flavour" "$dump_ok" "$restore_ok" "$zdtm_rc"
    log "$name-$flavour: zdtm exit $zdtm_rc, dump_ok $dump_ok, restore_ok $restore_ok (${SECONDS}s)"
}

write_index() {
    "$VENV/bin/python" - "$OUT" "$CRIU" "$VERSION" "$SRC" "$ZDIR/$SUBSET.list" <<'EOF'
import json, os, sys
out, criu, version, src, listfile = sys.argv[1:]
wanted = [l.split() for l in open(listfile) if l.strip() and not l.lstrip().startswith("#")]
cases = []
for name, flavour in wanted:
    p = os.path.join(out, f"{name}-{flavour}", "truth.json")
    if os.path.exists(p):
        t = json.load(open(p))
        cases.append({"case": f"{name}-{flavour}", **{k: t[k] for k in ("test", "flavour", "dump_ok", "restore_ok")}})
index = {"criu_version": version, "criu": criu, "crit": os.path.join(os.path.dirname(src), "bin", "crit"),
         "zdtm_src": src, "in_env": os.path.join(os.path.dirname(os.path.abspath(listfile)), "in-env.sh"),
         "subset": os.path.basename(listfile)[:-5], "cases": cases,
         "dumped": sum(c["dump_ok"] for c in cases), "restored": sum(c["restore_ok"] for c in cases)}
json.dump(index, open(os.path.join(out, "index.json"), "w"), indent=1)
print(f"{len(cases)} runs, {index['dumped']} dumped, {index['restored']} restored OK")
EOF
}

# -- main ----------------------------------------------------------------------------------------------------------

install_deps
TARBALL=$(find_tarball)
[[ -n $TARBALL ]] || die "no CRIU tarball (scripts/get-criu.sh failed?)"
VERSION=${TARBALL##*/criu_}; VERSION=${VERSION%%.orig.tar.*}
CACHE=${IMGTOOL_ZDTM_CACHE:-$HOME/.cache/imgtool/zdtm/$VERSION}
SRC=$CACHE/src VENV=$CACHE/venv
OUT=${OUT:-$CACHE/out}
CRIU=$SRC/criu/criu
mkdir -p "$CACHE" "$OUT"
exec 9>"$CACHE/.lock"
flock 9    # one run at a time: zdtm tests share the source tree

start=$(date +%s)
unpack "$TARBALL"
patch_zdtm
build_criu
make_venv
build_pycriu
build_tests
log "build steps took $(($(date +%s) - start))s"

start=$(date +%s)
while read -r name flavour; do
    run_case "$name" "$flavour"
done < <(list_cases)
log "runs took $(($(date +%s) - start))s"
write_index >&2
log "output in $OUT (index.json)"
