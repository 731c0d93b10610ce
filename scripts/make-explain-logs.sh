#!/usr/bin/env bash
# Make real CRIU logs (criu -v4 -o LOG) of the failures `imgtool explain` must recognise, for its tests.
#
#   sudo scripts/make-explain-logs.sh [CASE...]      # default: every case; needs root and a real criu
#
# Cases (programs in tests/programs/explain/CASE.c, logs in tests/logs/explain/CASE.log; CASES.md there lists the
# commands, the first errors and the advice):
#   ghost-limit nested-pidns unsupported-fd half-closed-unix pidfd-outside dev-console tty-inherit tcp-established
# Extra logs made on the way (same programs): ext-unix-sk (half-closed-unix without --ext-unix-sk),
# tty-no-shell-job (tty-inherit dumped without --shell-job), dev-console-no-mapping and dev-console-autodetected
# (restores of dev-console dumped with an external mount), version-mismatch (a restore of images whose
# inventory.img says img_version 3: a doctored image, as no other CRIU version is at hand).
# Each case also runs the fix its advice names where that is cheap, and prints "check ... exit N": those logs
# stay in the work dir.
#
# Every program runs detached from this script's terminal (its own session, stdin /dev/null, no inherited fds
# but 0-2, cwd and output in $WORK/CASE), prints "dump PID" (the process to dump) and "READY", and waits. After
# the case, every process it started (and any criu restored) is killed; the programs reap their own children.
# criu resolves a relative -o against the images dir, so every path given to it is absolute.
#
# Env: IMGTOOL_CRIU          the criu binary (default: what scripts/get-criu.sh prints)
#      IMGTOOL_EXPLAIN_WORK  work dir, emptied per case (default /tmp/imgtool-explain)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$REPO/tests/programs/explain
OUT=$REPO/tests/logs/explain
WORK=${IMGTOOL_EXPLAIN_WORK:-/tmp/imgtool-explain}
ALL_CASES=(ghost-limit nested-pidns unsupported-fd half-closed-unix pidfd-outside dev-console tty-inherit
           tcp-established)

log() { printf 'make-explain-logs: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

((EUID == 0)) || die "run as root (criu dump/restore need it)"
CRIU=${IMGTOOL_CRIU:-$("$REPO/scripts/get-criu.sh" | tail -n1)}
[[ -x $CRIU ]] || die "no criu binary: $CRIU"
mkdir -p "$WORK/bin" "$OUT"

SUMMARY=()     # per log kept and per check: name <TAB> exit code <TAB> command <TAB> first real error
STARTED=()     # pids of the programs started (children of this script)
RESTORED=()    # pidfiles of trees restored by checks

# All descendants of PID, deepest first.
descendants() {
    local child
    for child in $(pgrep -P "$1" || true); do
        descendants "$child"
        echo "$child"
    done
}

# Kill PID's tree (children first, so that the programs reap them) and reap PID itself.
kill_tree() {
    local pid=$1 p
    for p in $(descendants "$pid"); do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

kill_restored() {
    local f pid p
    for f in "${RESTORED[@]}"; do
        [[ -s $f ]] || continue
        pid=$(<"$f")
        for p in $(descendants "$pid") "$pid"; do kill -KILL "$p" 2>/dev/null || true; done
        rm -f "$f"
    done
    RESTORED=()
}

cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do kill_tree "$pid"; done
    STARTED=()
    kill_restored
}
trap cleanup EXIT

build() {
    local name=$1
    shift
    cc -O1 -Wall "$@" -o "$WORK/bin/$name" "$SRC/$name.c" || die "cc $name.c failed"
}

# start CASE PROGRAM [ARGS...]: run the program detached, wait for READY; sets LAUNCHED (the subshell that is
# the program's parent) and DUMP_PID.
start() {
    local case=$1 prog=$2 i
    shift 2
    local out=$WORK/$case/$prog.out
    : >"$out"
    (
        cd "$WORK/$case"
        for f in /proc/$BASHPID/fd/*; do    # close every inherited fd but 0-2
            n=${f##*/}
            ((n > 2)) && eval "exec $n>&-"
        done
        # not exec'ed: this subshell reaps the program and says nothing (stderr /dev/null) when it was killed
        setsid "$WORK/bin/$prog" "$@" </dev/null >>"$out" 2>&1
    ) 2>/dev/null &
    LAUNCHED=$!
    STARTED+=("$LAUNCHED")
    for ((i = 0; i < 100; i++)); do
        grep -qx READY "$out" && break
        kill -0 "$LAUNCHED" 2>/dev/null || die "$prog exited before READY: $(cat "$out")"
        sleep 0.1
    done
    grep -qx READY "$out" || die "$prog not READY after 10 s: $(cat "$out")"
    DUMP_PID=$(awk '$1 == "dump" { print $2 }' "$out")
    [[ -n $DUMP_PID ]] || die "$prog did not say which pid to dump"
}

# stop: kill what start started last.
stop() {
    kill_tree "$LAUNCHED"
    local keep=() pid
    for pid in "${STARTED[@]}"; do [[ $pid == "$LAUNCHED" ]] || keep+=("$pid"); done
    STARTED=("${keep[@]}")
}

first_error() {
    grep -E '(^|[ :])Error \(' "$1" | grep -v "rlimit: Can't setup RLIMIT_NOFILE" | head -n1 || true
}

# run_criu LOG ARGS...: criu ARGS -v4 -o LOG (stdin /dev/null, its stdout/stderr to LOG.stderr); sets RC, CMD.
run_criu() {
    local logf=$1
    shift
    CMD="criu $* -v4 -o $logf </dev/null"
    RC=0
    "$CRIU" "$@" -v4 -o "$logf" </dev/null >"$logf.stderr" 2>&1 || RC=$?
}

# keep NAME LOG: copy LOG to tests/logs/explain/NAME.log and note it; the command must have failed.
keep() {
    local name=$1 logf=$2
    ((RC != 0)) || log "warning: $name: criu exited 0 ($CMD)"
    install -m 0644 "$logf" "$OUT/$name.log"    # criu writes its logs 0600
    SUMMARY+=("$name"$'\t'"$RC"$'\t'"$CMD"$'\t'"$(first_error "$logf")")
    log "$name: exit $RC: $(first_error "$logf")"
}

# check WHAT LOG: report the exit code of a run of the advised fix (expected: 0).
check() {
    SUMMARY+=("check $1"$'\t'"$RC"$'\t'"$CMD"$'\t'"$(first_error "$2")")
    log "check $1: exit $RC"
}

# A failed dump leaves the tree running; a successful one kills it, and restore needs its pids free again
# (reaped: a killed restored task is reaped by PID 1, which may take a while).
wait_gone() {
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -e /proc/$1 ]] || return 0
        sleep 0.1
    done
    die "pid $1 still exists"
}

case_ghost-limit() {
    local d=$WORK/ghost-limit
    build ghost-limit
    start ghost-limit ghost-limit "$d/ghost.dat"
    mkdir -p "$d/img" "$d/img-fixed"
    run_criu "$d/dump.log" dump -t "$DUMP_PID" -D "$d/img"
    keep ghost-limit "$d/dump.log"
    run_criu "$d/dump-fixed.log" dump -t "$DUMP_PID" -D "$d/img-fixed" --ghost-limit 4M
    check "ghost-limit: dump --ghost-limit 4M" "$d/dump-fixed.log"
    stop
    # version-mismatch: no other CRIU version here, so the images of the good dump get img_version 3
    # (inventory.img: 8 bytes of magic and size, then field 1 = varint 2: bytes 08 02).
    cp -a "$d/img-fixed" "$d/img-v3"
    python3 - "$d/img-v3/inventory.img" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
assert data[8:10] == b"\x08\x02", data[:16].hex()
data[9] = 3
open(path, "wb").write(data)
EOF
    wait_gone "$DUMP_PID"
    run_criu "$d/restore-v3.log" restore -D "$d/img-v3" --restore-detached
    keep version-mismatch "$d/restore-v3.log"
}

case_nested-pidns() {
    local d=$WORK/nested-pidns
    build nested-pidns
    start nested-pidns nested-pidns
    mkdir -p "$d/img"
    run_criu "$d/dump.log" dump -t "$DUMP_PID" -D "$d/img"
    keep nested-pidns "$d/dump.log"
    stop
}

case_unsupported-fd() {
    local d=$WORK/unsupported-fd
    build unsupported-fd
    start unsupported-fd unsupported-fd
    mkdir -p "$d/img"
    run_criu "$d/dump.log" dump -t "$DUMP_PID" -D "$d/img"
    keep unsupported-fd "$d/dump.log"
    stop
}

case_half-closed-unix() {
    local d=$WORK/half-closed-unix ino pid
    build half-closed-unix
    start half-closed-unix half-closed-unix "$d/listener.sock"
    mkdir -p "$d/img" "$d/img-fixed"
    run_criu "$d/dump-ext.log" dump -t "$DUMP_PID" -D "$d/img" --ext-unix-sk
    keep half-closed-unix "$d/dump-ext.log"
    run_criu "$d/dump.log" dump -t "$DUMP_PID" -D "$d/img"
    keep ext-unix-sk "$d/dump.log"
    # the fix: name the process's own socket (socket:[INO] of its fd 3) as external
    ino=$(readlink "/proc/$DUMP_PID/fd/3")
    ino=${ino#socket:[}
    ino=${ino%]}
    run_criu "$d/dump-fixed.log" dump -t "$DUMP_PID" -D "$d/img-fixed" --external "unix[$ino]"
    check "half-closed-unix: dump --external unix[INO]" "$d/dump-fixed.log"
    pid=$DUMP_PID
    stop
    wait_gone "$pid"
    # ... and hand restore a connected socket for it: --inherit-fd fd[N]:socket:[INO] (python3 opens fd 7)
    CMD="criu restore -D $d/img-fixed --inherit-fd fd[7]:socket:[$ino] --restore-detached --pidfile $d/restored.pid"
    CMD+=" -v4 -o $d/restore-fixed.log   (fd 7: one end of a socketpair)"
    RC=0
    python3 - "$CRIU" "$d" "$ino" <<'PY' || RC=$?
import os, socket, subprocess, sys
criu, d, ino = sys.argv[1:]
ours, theirs = socket.socketpair()
os.dup2(theirs.fileno(), 7)
sys.exit(subprocess.run([criu, "restore", "-D", f"{d}/img-fixed", "--inherit-fd", f"fd[7]:socket:[{ino}]",
                         "--restore-detached", "--pidfile", f"{d}/restored.pid", "-v4", "-o", f"{d}/restore-fixed.log"],
                        pass_fds=[7], stdin=subprocess.DEVNULL).returncode)
PY
    RESTORED+=("$d/restored.pid")
    check "half-closed-unix: restore --inherit-fd fd[7]:socket:[INO]" "$d/restore-fixed.log"
    kill_restored
}

case_pidfd-outside() {
    local d=$WORK/pidfd-outside
    build pidfd-outside
    start pidfd-outside pidfd-outside
    mkdir -p "$d/img"
    run_criu "$d/dump.log" dump -t "$DUMP_PID" -D "$d/img"
    keep pidfd-outside "$d/dump.log"
    stop
}

# ROOTFS for dev-console: the static program itself, a file to mount /dev/console on, a dir for pivot_root.
dev_console_rootfs() {
    local r=$1
    rm -rf "$r"
    mkdir -p "$r/dev" "$r/oldroot"
    : >"$r/dev/console"
    cp "$WORK/bin/dev-console" "$r/dev-console"
}

case_dev-console() {
    local d=$WORK/dev-console pid
    build dev-console -static
    dev_console_rootfs "$d/rootfs"
    start dev-console dev-console "$d/rootfs"
    mkdir -p "$d/img" "$d/img-ext" "$d/img-auto"
    run_criu "$d/dump.log" dump -t "$DUMP_PID" -D "$d/img"
    keep dev-console "$d/dump.log"
    # the fix: name the mount at dump (the mountpoint without the leading "."), map the name at restore
    run_criu "$d/dump-ext.log" dump -t "$DUMP_PID" -D "$d/img-ext" --external 'mnt[/dev/console]:console'
    check "dev-console: dump --external mnt[/dev/console]:console" "$d/dump-ext.log"
    pid=$DUMP_PID
    stop
    wait_gone "$pid"
    cp -a "$d/img-ext" "$d/img-ext2"
    run_criu "$d/restore-nomap.log" restore -D "$d/img-ext" --root "$d/rootfs" --restore-detached \
        --pidfile "$d/restored.pid"
    RESTORED+=("$d/restored.pid")
    keep dev-console-no-mapping "$d/restore-nomap.log"
    run_criu "$d/restore-map.log" restore -D "$d/img-ext2" --root "$d/rootfs" --restore-detached \
        --pidfile "$d/restored.pid" --external 'mnt[console]:/dev/null'
    check "dev-console: restore --root ROOTFS --external mnt[console]:/dev/null" "$d/restore-map.log"
    kill_restored
    # --ext-mount-map auto at dump: criu finds the mount's source in its own mount namespace by itself
    dev_console_rootfs "$d/rootfs"
    start dev-console dev-console "$d/rootfs"
    run_criu "$d/dump-auto.log" dump -t "$DUMP_PID" -D "$d/img-auto" --ext-mount-map auto
    check "dev-console: dump --ext-mount-map auto" "$d/dump-auto.log"
    pid=$DUMP_PID
    stop
    wait_gone "$pid"
    run_criu "$d/restore-noauto.log" restore -D "$d/img-auto" --root "$d/rootfs" --restore-detached \
        --pidfile "$d/restored.pid"
    RESTORED+=("$d/restored.pid")
    keep dev-console-autodetected "$d/restore-noauto.log"
    kill_restored
}

case_tty-inherit() {
    local d=$WORK/tty-inherit pid
    build tty-inherit
    start tty-inherit tty-inherit
    mkdir -p "$d/img-noshell" "$d/img"
    run_criu "$d/dump-noshell.log" dump -t "$DUMP_PID" -D "$d/img-noshell"
    keep tty-no-shell-job "$d/dump-noshell.log"
    run_criu "$d/dump.log" dump -t "$DUMP_PID" -D "$d/img" --shell-job
    check "tty-inherit: dump --shell-job" "$d/dump.log"
    pid=$DUMP_PID
    stop
    wait_gone "$pid"
    cp -a "$d/img" "$d/img2"
    # restore with no terminal: a new session (setsid) and stdin /dev/null (run_criu)
    CMD="setsid criu restore -D $d/img --shell-job --restore-detached --pidfile $d/restored.pid -v4 -o $d/restore.log"
    CMD+=" </dev/null"
    RC=0
    setsid "$CRIU" restore -D "$d/img" --shell-job --restore-detached --pidfile "$d/restored.pid" \
        -v4 -o "$d/restore.log" </dev/null >"$d/restore.log.stderr" 2>&1 || RC=$?
    RESTORED+=("$d/restored.pid")
    keep tty-inherit "$d/restore.log"
    kill_restored
    wait_gone "$pid"
    # the fix: restore from a terminal (script(1) gives criu a pty as stdin)
    CMD="script -qec 'criu restore -D $d/img2 --shell-job --restore-detached --pidfile $d/restored.pid"
    CMD+=" -v4 -o $d/restore-tty.log' /dev/null </dev/null"
    RC=0
    script -qec "$CRIU restore -D $d/img2 --shell-job --restore-detached --pidfile $d/restored.pid -v4 -o $d/restore-tty.log" \
        /dev/null </dev/null >"$d/restore-tty.log.stderr" 2>&1 || RC=$?
    RESTORED+=("$d/restored.pid")
    check "tty-inherit: restore --shell-job from a terminal" "$d/restore-tty.log"
    kill_restored
}

case_tcp-established() {
    local d=$WORK/tcp-established pid
    build tcp-established
    start tcp-established tcp-established
    mkdir -p "$d/img"
    run_criu "$d/dump.log" dump -t "$DUMP_PID" -D "$d/img"
    keep tcp-established "$d/dump.log"
    mkdir -p "$d/img-fixed"
    run_criu "$d/dump-fixed.log" dump -t "$DUMP_PID" -D "$d/img-fixed" --tcp-established
    check "tcp-established: dump --tcp-established" "$d/dump-fixed.log"
    pid=$DUMP_PID
    stop
    wait_gone "$pid"
    run_criu "$d/restore-fixed.log" restore -D "$d/img-fixed" --tcp-established --restore-detached \
        --pidfile "$d/restored.pid"
    RESTORED+=("$d/restored.pid")
    check "tcp-established: restore --tcp-established" "$d/restore-fixed.log"
    kill_restored
}

cases=("$@")
((${#cases[@]})) || cases=("${ALL_CASES[@]}")
for c in "${cases[@]}"; do
    declare -F "case_$c" >/dev/null || die "unknown case $c (cases: ${ALL_CASES[*]})"
done
log "criu: $CRIU ($("$CRIU" --version | head -n1)); work dir $WORK"
for c in "${cases[@]}"; do
    rm -rf "${WORK:?}/$c"
    mkdir -p "$WORK/$c"
    "case_$c"
done
cleanup

printf '%s\n' "${SUMMARY[@]}" | tee "$WORK/summary.tsv"
ls -l "$OUT"/*.log >&2
