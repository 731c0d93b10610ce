#!/usr/bin/env bash
# shellcheck disable=SC2016  # the container scripts below are single-quoted on purpose
# A private Docker for imgtool's tests: real `docker checkpoint create` / `docker start --checkpoint` with our CRIU.
#
#   scripts/docker-env.sh up        [--root DIR]  install docker.io + busybox-static if missing, start a private
#                                                 dockerd (experimental, own data root, exec root, pid file, socket
#                                                 and bridge), import a busybox image built here (no registry)
#   scripts/docker-env.sh scenarios [--root DIR]  create the containers and checkpoints, restore them, record each
#                                                 outcome in ROOT/scenarios/<name>/result.json with copies of the
#                                                 checkpoint dir and the container's config.v2.json/hostconfig.json
#   scripts/docker-env.sh down      [--root DIR]  remove our containers, stop dockerd and its containerd, remove
#                                                 the bridge: nothing of ours is left running
#   scripts/docker-env.sh all       [--root DIR]  up, scenarios, down (down also when a step failed)
#
# ROOT defaults to $IMGTOOL_DOCKER_ROOT or ~/.cache/imgtool/docker. Every docker command is
# `/usr/bin/docker -H unix://ROOT/docker.sock` (Debian's client, matching Debian's dockerd).
# CRIU: scripts/get-criu.sh's binary (or $IMGTOOL_CRIU), reached by runc as `criu` through ROOT/bin, first in
# dockerd's PATH (containerd, its shims and runc inherit it): ROOT/bin/criu is scripts/docker/criu-wrapper.sh,
# which also keeps every CRIU log in ROOT/criu-logs (containerd deletes dump.log on success).
# TCP: Docker 20.10 cannot set the OCI annotation org.criu.config, so the tcp scenario writes /etc/criu/runc.conf
# (`tcp-established`, runc's default CRIU config file) for its checkpoint and restore only, and removes it again
# (restoring any file that was there before).
#
# Exit status: 0 done, 1 a step failed (one line "docker-env: error: ..." on stderr), 2 usage,
# 3 dockerd cannot start on this machine (tests skip on that one only).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${IMGTOOL_DOCKER_ROOT:-$HOME/.cache/imgtool/docker}
IMAGE=imgtool/busybox:latest
BRIDGE=imgtool0
BRIDGE_CIDR=172.31.254.1/24
LABEL=org.imgtool.docker-env=1
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
RUNC_CONF=/etc/criu/runc.conf
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

log() { printf 'docker-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '3,13p' "$0" >&2; exit 2; }

cmd=${1:-}
shift || true
while (($#)); do
    case $1 in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        *) usage ;;
    esac
done
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
SOCK=$ROOT/docker.sock
PIDFILE=$ROOT/dockerd.pid
SC=$ROOT/scenarios

dk() { "$DOCKER" -H "unix://$SOCK" "$@"; }
ctr_() { ctr -a "$ROOT/exec/containerd/containerd.sock" -n moby "$@"; }
result() { "$PY" "$HERE/docker/result.py" "$@"; }

dockerd_pid() {
    local pid
    [[ -s $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ -d /proc/$pid ]] && grep -qa dockerd "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}
dockerd_up() { dockerd_pid >/dev/null && dk version >/dev/null 2>&1; }

# -- up --------------------------------------------------------------------------------------------------------------

install_packages() {
    local missing=() pkg
    for pkg in docker.io busybox-static; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || { log "docker.io and busybox-static are installed"; return 0; }
    ((EUID == 0)) || { log "error: ${missing[*]} missing and not root"; exit 3; }
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$ROOT/apt.log" 2>&1; then
        log "apt-get install failed; apt-get update, then again"
        { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >>"$ROOT/apt.log" 2>&1 \
            || { log "error: apt-get install ${missing[*]} failed (see $ROOT/apt.log)"; exit 3; }
    fi
}

criu_binary() {
    local criu=${IMGTOOL_CRIU:-}
    if [[ -z $criu ]]; then
        criu=$(bash "$HERE/get-criu.sh" 2>"$ROOT/get-criu.log" | tail -n 1) \
            || die "scripts/get-criu.sh failed (see $ROOT/get-criu.log)"
    fi
    [[ -x $criu ]] || die "no usable criu at '$criu'"
    echo "$criu"
}

install_criu_wrapper() {
    local criu
    criu=$(criu_binary)
    mkdir -p "$ROOT/bin" "$ROOT/criu-logs"
    sed -e "s|@ROOT@|$ROOT|g" -e "s|@CRIU@|$criu|g" "$HERE/docker/criu-wrapper.sh" > "$ROOT/bin/criu.tmp"
    chmod +x "$ROOT/bin/criu.tmp"
    mv -f "$ROOT/bin/criu.tmp" "$ROOT/bin/criu"
    log "runc's criu: $ROOT/bin/criu -> $criu ($("$criu" --version | head -n 1))"
}

make_bridge() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge || { log "error: cannot create bridge $BRIDGE"; exit 3; }
        ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
}

start_dockerd() {
    if dockerd_up; then
        log "dockerd already running (pid $(dockerd_pid), $SOCK)"
        return 0
    fi
    [[ -x $DOCKERD ]] || { log "error: $DOCKERD missing after installing docker.io"; exit 3; }
    ((EUID == 0)) || { log "error: dockerd needs root"; exit 3; }
    make_bridge
    rm -f "$SOCK" "$PIDFILE"
    mkdir -p "$ROOT/data" "$ROOT/exec"
    echo '{}' > "$ROOT/daemon.json"
    log "starting dockerd (data $ROOT/data, exec $ROOT/exec, socket $SOCK, bridge $BRIDGE; log $ROOT/dockerd.log)"
    # setsid: dockerd and the containerd it starts leave our session (the caller's terminal, pytest).
    PATH="$ROOT/bin:$PATH" setsid "$DOCKERD" --experimental --config-file "$ROOT/daemon.json" \
        --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$PIDFILE" -H "unix://$SOCK" \
        --bridge "$BRIDGE" --iptables=false --ip-masq=false --userland-proxy=false \
        >"$ROOT/dockerd.log" 2>&1 </dev/null &
    local child=$! i
    for ((i = 0; i < 120; i++)); do
        if dk version >/dev/null 2>&1; then
            log "dockerd is up (pid $child) after $((i / 4)).$((i % 4 * 25))s"
            return 0
        fi
        if ! kill -0 "$child" 2>/dev/null; then
            log "error: dockerd exited at start: $(grep -v '^\s*$' "$ROOT/dockerd.log" | tail -n 1)"
            exit 3
        fi
        sleep 0.25
    done
    log "error: dockerd did not answer on $SOCK within 30 s: $(tail -n 1 "$ROOT/dockerd.log")"
    kill "$child" 2>/dev/null || true
    exit 3
}

import_image() {
    if dk image inspect "$IMAGE" >/dev/null 2>&1; then
        log "image $IMAGE present"
        return 0
    fi
    local rootfs=$ROOT/rootfs applet
    rm -rf "$rootfs"
    mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc,root,run,var/tmp}
    cp /bin/busybox "$rootfs/bin/busybox"
    while IFS= read -r applet; do
        [[ $applet == bin/busybox ]] || ln -sf /bin/busybox "$rootfs/$applet"
    done < <(/bin/busybox --list-full)
    echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
    echo "root:x:0:" > "$rootfs/etc/group"
    echo "imgtool" > "$rootfs/etc/hostname"
    echo "<html>imgtool</html>" > "$rootfs/root/index.html"
    tar -C "$rootfs" -c . | dk import --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null \
        || die "docker import of the busybox rootfs failed"
    log "imported $IMAGE ($(/bin/busybox | head -n 1))"
}

cmd_up() {
    install_packages
    install_criu_wrapper
    start_dockerd
    import_image
}

# -- scenarios -------------------------------------------------------------------------------------------------------

# Scripts the containers run (busybox sh; expanded there, not here).
LOOP='i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 1; done'
COUNTER='i=0; while :; do i=$((i+1)); echo $i > /tmp/count; usleep 200000; done'
SERVER='exec 3</etc/passwd 4>>/tmp/server.log; echo started >&4
httpd -f -p 8080 -h /root &
nc -l -p 9000 > /tmp/nc.out &
(exec 5</etc/group; while :; do sleep 1; done) &
while :; do sleep 1; done'
TCP='tail -f /dev/null | nc -l -p 7000 > /tmp/received &
sleep 1
i=0; while :; do i=$((i+1)); echo tick $i; sleep 1; done | nc 127.0.0.1 7000'

cid() { dk inspect -f '{{.Id}}' "$1"; }
running() { [[ $(dk inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }
tf() { if (($1 == 0)); then echo true; else echo false; fi; }

# The newest copy (by the criu wrapper) of a CRIU log named $2 written after the marker file $1.
new_log() { find "$ROOT/criu-logs" -mindepth 2 -maxdepth 2 -name "$2" -newer "$1" 2>/dev/null | sort | tail -n 1; }

# checkpoint SCENARIO CONTAINER NAME [docker checkpoint create options]: record dump_ok, dump_error, dump_log.
checkpoint() {
    local name=$1 ctr=$2 ck=$3 dir=$SC/$1 t0 rc=0 dlog id
    shift 3
    mkdir -p "$dir"
    id=$(cid "$ctr")
    t0=$(mktemp "$ROOT/.mark.XXXXXX")
    log "[$name] docker checkpoint create $* $ctr $ck"
    dk checkpoint create "$@" "$ctr" "$ck" >"$dir/dump.stdout" 2>"$dir/dump.stderr" || rc=$?
    dlog=$(new_log "$t0" '*dump.log')
    rm -f "$t0"
    if [[ -n $dlog ]]; then
        cp "$dlog" "$dir/dump.log"; cp "$dlog.path" "$dir/dump.log.path"
        grep -m 20 'Error' "$dir/dump.log" >"$dir/dump.log.errors" || true
    fi
    result "$dir/result.json" scenario="$name" container_name="$ctr" container_id="$id" checkpoint_name="$ck" \
        checkpoint_dir="$ROOT/data/containers/$id/checkpoints/$ck" container_dir="$ROOT/data/containers/$id" \
        dump_ok="$(tf $rc)" dump_options="$*" dump_error="@$dir/dump.stderr" dump_log_errors="@$dir/dump.log.errors" \
        dump_log="$([[ -n $dlog ]] && echo "$dir/dump.log" || echo null)" \
        dump_log_original="$([[ -n $dlog ]] && echo "@$dlog.path" || echo null)" \
        dump_log_tail="$([[ -n $dlog ]] && echo "@$dir/dump.log" || echo null)"
    if ((rc == 0)); then log "[$name] dump ok"; else log "[$name] dump failed: $(tail -n 1 "$dir/dump.stderr")"; fi
    return $rc
}

# collect_garbage: containerd's garbage collection, synchronously (ctr ships with containerd, which docker.io needs).
collect_garbage() {
    local lease
    command -v ctr >/dev/null || { log "no ctr: containerd's garbage collector not run"; return 0; }
    lease=$(ctr_ leases create 2>/dev/null) && ctr_ leases delete --sync "$lease" >/dev/null 2>&1 \
        || log "ctr could not run containerd's garbage collector"
}

# restore SCENARIO CONTAINER CHECKPOINT [KEY [docker start options]]: docker start --checkpoint; record KEY_ok
# (KEY is restore by default), KEY_error (docker's stderr), KEY_log (a copy of CRIU's restore.log), its tail and
# original path.
restore() {
    local name=$1 ctr=$2 ck=$3 key=${4:-restore} dir=$SC/$1 t0 rc rlog ok=false attempt
    shift 3
    if (($#)); then shift; fi
    t0=$(mktemp "$ROOT/.mark.XXXXXX")
    # Docker uploads the checkpoint (a tar of its dir) to containerd's content store and deletes it after the
    # start, but the blob stays on disk until containerd's garbage collector runs. Restoring the same bytes again
    # before that (tty and tty-notty restore one checkpoint; an unchanged container dumps the same tar) fails with
    # "commit failed: content sha256:...: already exists" (moby/moby#42900). So every attempt first has the
    # collector run now (deleting a new lease with --sync does), and that error alone is tried again.
    for attempt in 1 2 3; do
        collect_garbage
        log "[$name] docker start --checkpoint $ck $* $ctr (attempt $attempt)"
        rc=0
        dk start --checkpoint "$ck" "$@" "$ctr" >"$dir/$key.stdout" 2>"$dir/$key.stderr" || rc=$?
        if ((rc == 0)) || ! grep -q 'failed to upload checkpoint to containerd.*already exists' "$dir/$key.stderr"; then
            break
        fi
        log "[$name] $(tail -n 1 "$dir/$key.stderr") (moby/moby#42900): again"
        sleep 1
    done
    if ((rc == 0)); then
        sleep 1
        if running "$ctr"; then ok=true; else echo "container not running 1 s after the restore" >>"$dir/$key.stderr"; fi
    fi
    rlog=$(new_log "$t0" '*restore.log')
    rm -f "$t0"
    if [[ -n $rlog ]]; then
        cp "$rlog" "$dir/$key.log"; cp "$rlog.path" "$dir/$key.log.path"
        grep -m 20 'Error' "$dir/$key.log" >"$dir/$key.log.errors" || true
    fi
    result "$dir/result.json" "${key}_ok=$ok" "${key}_into=$ctr" "${key}_options=$*" "${key}_error=@$dir/$key.stderr" \
        "${key}_attempts=$attempt" "${key}_log_errors=@$dir/$key.log.errors" \
        "${key}_log=$([[ -n $rlog ]] && echo "$dir/$key.log" || echo null)" \
        "${key}_log_original=$([[ -n $rlog ]] && echo "@$rlog.path" || echo null)" \
        "${key}_log_tail=$([[ -n $rlog ]] && echo "@$dir/$key.log" || echo null)"
    if [[ $ok == true ]]; then log "[$name] $key ok"; else log "[$name] $key failed: $(tail -n 1 "$dir/$key.stderr")"; fi
}

# keep SCENARIO CONTAINER CHECKPOINT: copy the checkpoint dir and the container's config files, in Docker's
# layout, to SC/SCENARIO/copy/containers/<id>/{config.v2.json,hostconfig.json,checkpoints/<name>/}.
keep() {
    local name=$1 ctr=$2 ck=$3 id src dst size=0
    id=$(cid "$ctr")
    src=$ROOT/data/containers/$id
    dst=$SC/$name/copy/containers/$id
    mkdir -p "$dst/checkpoints"
    cp "$src/config.v2.json" "$src/hostconfig.json" "$dst/"
    if [[ -d $src/checkpoints/$ck ]]; then
        cp -a "$src/checkpoints/$ck" "$dst/checkpoints/"
        size=$(du -sb "$src/checkpoints/$ck" | cut -f1)
    fi
    (cd "$src" && find . -maxdepth 3 -printf '%y %s %P\n' | sort -k3) >"$SC/$name/container-listing.txt"
    result "$SC/$name/result.json" checkpoint_copy="$dst/checkpoints/$ck" container_copy="$dst" checkpoint_size="$size"
}

run_ctr() { local name=$1; shift; dk run -d --label "$LABEL" --name "$name" "$@" >/dev/null; }

remove_ours() {
    local ids=()
    mapfile -t ids < <(dk ps -aq --filter "label=$LABEL" 2>/dev/null || true)
    if ((${#ids[@]})); then log "removing containers: ${ids[*]}"; dk rm -f "${ids[@]}" >/dev/null; fi
}

runc_conf_on() {
    mkdir -p /etc/criu
    if [[ -e $RUNC_CONF && ! -e $ROOT/runc.conf.saved ]]; then cp -a "$RUNC_CONF" "$ROOT/runc.conf.saved"; fi
    printf 'tcp-established\n' > "$RUNC_CONF"
    log "wrote $RUNC_CONF (tcp-established)"
}
runc_conf_off() {
    if [[ -e $ROOT/runc.conf.saved ]]; then
        mv -f "$ROOT/runc.conf.saved" "$RUNC_CONF"
        log "restored the previous $RUNC_CONF"
    elif [[ -e $RUNC_CONF ]] && [[ $(<"$RUNC_CONF") == tcp-established ]]; then
        rm -f "$RUNC_CONF"
        rmdir /etc/criu 2>/dev/null || true
        log "removed $RUNC_CONF"
    fi
}

scenario_tty() {
    run_ctr imgtool-tty -t "$IMAGE" sh -c "$LOOP"
    sleep 2
    if ! checkpoint tty imgtool-tty ck-tty; then keep tty imgtool-tty ck-tty; return; fi
    keep tty imgtool-tty ck-tty
    # The -t checkpoint restored into a NEW container created without -t (docker start --checkpoint-dir).
    local tid src
    src=$ROOT/data/containers/$(cid imgtool-tty)/checkpoints
    dk create --label "$LABEL" --name imgtool-notty "$IMAGE" sh -c "$LOOP" >/dev/null
    tid=$(cid imgtool-notty)
    mkdir -p "$SC/tty-notty/target"
    cp "$SC/tty/result.json" "$SC/tty-notty/result.json"
    cp "$SC/tty/dump.stderr" "$SC/tty-notty/" 2>/dev/null || true
    cp -a "$SC/tty/copy" "$SC/tty-notty/copy"
    cp "$ROOT/data/containers/$tid"/{config.v2.json,hostconfig.json} "$SC/tty-notty/target/"
    result "$SC/tty-notty/result.json" scenario=tty-notty target_container_name=imgtool-notty \
        target_container_id="$tid" target_container_dir="$ROOT/data/containers/$tid" \
        target_container_copy="$SC/tty-notty/target"
    # Docker 20.10 refuses --checkpoint-dir on start ("custom checkpointdir is not supported"): record that, then
    # copy the checkpoint into the new container's own checkpoints dir and restore it from there.
    restore tty-notty imgtool-notty ck-tty restore_checkpoint_dir --checkpoint-dir "$src"
    mkdir -p "$ROOT/data/containers/$tid/checkpoints"
    cp -a "$src/ck-tty" "$ROOT/data/containers/$tid/checkpoints/"
    restore tty-notty imgtool-notty ck-tty
    # ... and into the original -t container.
    restore tty imgtool-tty ck-tty
}

scenario_tcp() {
    run_ctr imgtool-tcp "$IMAGE" sh -c "$TCP"
    sleep 3
    runc_conf_off
    checkpoint tcp-noconfig imgtool-tcp ck-tcp-noconfig --leave-running || true
    keep tcp-noconfig imgtool-tcp ck-tcp-noconfig
    trap runc_conf_off EXIT
    runc_conf_on
    if checkpoint tcp imgtool-tcp ck-tcp; then
        keep tcp imgtool-tcp ck-tcp
        runc_conf_off
        restore tcp imgtool-tcp ck-tcp restore_without_config
        runc_conf_on
        restore tcp imgtool-tcp ck-tcp
    else
        keep tcp imgtool-tcp ck-tcp
    fi
    runc_conf_off
    trap - EXIT
}

cmd_scenarios() {
    dockerd_up || die "dockerd is not running on $SOCK (run: $0 up --root $ROOT)"
    dk image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE missing (run: $0 up --root $ROOT)"
    remove_ours
    rm -rf "$SC"
    mkdir -p "$SC"
    local t_start=$SECONDS n

    # loop: a shell loop; checkpoint, restore into the same container.
    run_ctr imgtool-loop "$IMAGE" sh -c "$LOOP"
    sleep 2
    if checkpoint loop imgtool-loop ck-loop; then restore loop imgtool-loop ck-loop; fi
    keep loop imgtool-loop ck-loop

    # tty / tty-notty: a -t container.
    scenario_tty

    # server: several processes, open files, listening sockets (httpd, nc), a file the server writes.
    run_ctr imgtool-server "$IMAGE" sh -c "$SERVER"
    sleep 2
    if checkpoint server imgtool-server ck-server; then restore server imgtool-server ck-server; fi
    keep server imgtool-server ck-server

    # tcp-noconfig / tcp: an ESTABLISHED connection on 127.0.0.1 inside one container.
    scenario_tcp

    # counter-1 / counter-2: two checkpoints of one container (--leave-running, then the final one), for diff.
    run_ctr imgtool-counter "$IMAGE" sh -c "$COUNTER"
    sleep 2
    checkpoint counter-1 imgtool-counter ck-1 --leave-running || true
    keep counter-1 imgtool-counter ck-1
    sleep 2
    if checkpoint counter-2 imgtool-counter ck-2; then restore counter-2 imgtool-counter ck-2; fi
    keep counter-2 imgtool-counter ck-2

    n=$(find "$SC" -name result.json | wc -l)
    # summary.json: script_sha256 lets tests/docker.py reuse these results while the scripts are unchanged.
    "$PY" - "$SC" "$((SECONDS - t_start))" "$HERE" <<'EOF'
import hashlib, json, sys, time
from pathlib import Path
sc, here = Path(sys.argv[1]), Path(sys.argv[3])
sha = hashlib.sha256()
for f in [here / "docker-env.sh", *sorted((here / "docker").iterdir())]:
    if f.is_file():
        sha.update(f.name.encode() + b"\0" + f.read_bytes())
rows = {p.parent.name: json.loads(p.read_text()) for p in sorted(sc.glob("*/result.json"))}
summary = {"created": time.time(), "seconds": int(sys.argv[2]), "script_sha256": sha.hexdigest(),
           "scenarios": {k: {"dump_ok": v.get("dump_ok"), "restore_ok": v.get("restore_ok")} for k, v in rows.items()}}
(sc / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
EOF
    log "scenarios done ($n results in $SC, $((SECONDS - t_start)) s)"
}

# -- down ------------------------------------------------------------------------------------------------------------

cmd_down() {
    local pid i p mnt
    runc_conf_off
    if dockerd_up; then remove_ours; fi
    if pid=$(dockerd_pid); then
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for ((i = 0; i < 60; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.25; done
        if [[ -d /proc/$pid ]]; then log "dockerd still alive after 15 s: SIGKILL"; kill -KILL "$pid" || true; fi
    else
        log "dockerd not running"
    fi
    # Whatever is left after a crash: containerd and its shims (their command lines name our exec root) and the
    # containers' init processes (children of the shims, each the pid 1 of its namespace), by pid.
    local ours=() kids=() args
    while read -r pid args; do
        if [[ $args == *"$ROOT/exec"* && $pid != "$$" ]]; then ours+=("$pid"); fi
    done < <(ps -eo pid=,args=)
    for pid in "${ours[@]}"; do
        while read -r p; do kids+=("$p"); done < <(ps -o pid= --ppid "$pid")
    done
    for pid in "${kids[@]}" "${ours[@]}"; do
        log "killing leftover pid $pid: $(ps -o args= -p "$pid" | cut -c1-100)"
        kill -KILL "$pid" 2>/dev/null || true
    done
    # Mounts under ROOT (overlay, netns, shm) that a killed daemon left behind.
    while IFS= read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v root="$ROOT/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r)
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" && log "removed bridge $BRIDGE"; fi
    rm -f "$SOCK" "$PIDFILE"
    log "down"
}

case $cmd in
    up) cmd_up ;;
    scenarios) cmd_scenarios ;;
    down) cmd_down ;;
    all)
        rc=0
        "$0" up --root "$ROOT" || rc=$?
        if ((rc == 0)); then "$0" scenarios --root "$ROOT" || rc=$?; fi
        "$0" down --root "$ROOT" || true
        exit $rc
        ;;
    *) usage ;;
esac
