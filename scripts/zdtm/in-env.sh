#!/usr/bin/env bash
# Run a command in the world a kept zdtm dump is restored into (by scripts/zdtm.sh for the restore truth, and by
# tests/test_zdtm.py for `imgtool check`, so that both see the same host):
#   in-env.sh CASE_DIR -- COMMAND...
# CASE_DIR is OUT/<name>-<flavour> (case.env says where the zdtm tree is; side-files/ holds the test's files as they
# were at dump time). In fresh pid/mount/net/ipc namespaces (`unshare --pid --fork --mount-proc --net --ipc
# --mount`, loopback up) the side files are put back into zdtm/static, and for ns/uns the test root is recreated at
# the path the dump used (a bind mount of test/, plus a tmpfs dev dir with tty, null, net/tun, rtc, autofs nodes).
# The command's exit status is returned; everything it started dies with the pid namespace; the side files are
# removed afterwards.
set -euo pipefail
case_dir=$(realpath "$1"); shift
[[ ${1:-} == -- ]] && shift
# shellcheck source=/dev/null
source "$case_dir/case.env"     # ZDTM_TEST_DIR, FLAVOUR, NS_ROOT (old root: .../root/root), NS_DEV

static="$ZDTM_TEST_DIR/zdtm/static"

put_back() {
    [[ -d $case_dir/side-files ]] || return 0
    cp -a "$case_dir/side-files/." "$static/"
}

remove_side_files() {
    [[ -f $case_dir/side-files.list ]] || return 0
    local name
    while IFS= read -r name; do
        [[ -n $name && $name != */* ]] && rm -rf --one-file-system "${static:?}/$name"
    done < "$case_dir/side-files.list"
}

# Set the modes zdtm's dirs had at dump time (dir-modes: "MODE PATH" lines); print the current ones to undo it.
set_modes() {
    [[ -f $1 ]] || return 0
    local mode path
    while read -r mode path; do
        stat -c '%a %n' "$path"
        chmod "$mode" "$path"
    done < "$1"
}

if [[ ${IMGTOOL_IN_ENV_INNER:-} != 1 ]]; then
    put_back
    modes_now=$(mktemp)
    trap 'set_modes "$modes_now" >/dev/null; rm -f "$modes_now"' EXIT
    set_modes "$case_dir/dir-modes" > "$modes_now"
    rc=0
    IMGTOOL_IN_ENV_INNER=1 unshare --pid --fork --mount-proc --net --ipc --mount --propagation private \
        "$0" "$case_dir" -- "$@" || rc=$?
    remove_side_files
    exit "$rc"
fi

# -- inside the namespaces ---------------------------------------------------------------------------------------
ip link set lo up 2>/dev/null || true
made=()
if [[ -n ${NS_ROOT:-} ]]; then
    for d in "$NS_ROOT" "$NS_DEV"; do [[ -d $d ]] || { mkdir -p "$d"; made+=("$d"); }; done
    mount --make-private --bind "$ZDTM_TEST_DIR" "$NS_ROOT"
    mount -t tmpfs criu-test-dev "$NS_DEV"
    chmod 777 "$NS_DEV"
    mkdir -p "$NS_DEV/pts" "$NS_DEV/net"
    mknod -m 666 "$NS_DEV/tty" c 5 0
    mknod -m 666 "$NS_DEV/null" c 1 3
    [[ -e /dev/net/tun ]] && mknod -m 666 "$NS_DEV/net/tun" c 10 200
    [[ -e /dev/rtc ]] && mknod -m 666 "$NS_DEV/rtc" c "$((16#$(stat -c '%t' /dev/rtc)))" "$((16#$(stat -c '%T' /dev/rtc)))"
    mknod -m 666 "$NS_DEV/autofs" c 10 235
fi
rc=0
"$@" || rc=$?
if ((${#made[@]})); then
    umount -l "$NS_DEV" "$NS_ROOT" 2>/dev/null || true
    for ((i = ${#made[@]} - 1; i >= 0; i--)); do rmdir -p "${made[i]}" 2>/dev/null || true; done
fi
exit "$rc"
