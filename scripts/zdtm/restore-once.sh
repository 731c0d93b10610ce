#!/usr/bin/env bash
# The restore truth for one kept dump (run inside in-env.sh):  restore-once.sh CRIU IMAGES WORK [CRIU OPTIONS...]
# criu restore --restore-detached with the dump's restore options, logs to WORK (the images dir is left as it is);
# OK when criu exits 0 and the restored root task is alive (not a zombie) a second later. Prints one line
# "criu_rc=N alive=0|1" and exits 0 when the restore is OK, 1 otherwise. What was restored dies with the pid
# namespace in-env.sh made.
set -uo pipefail
criu=$1 images=$2 work=$3; shift 3
mkdir -p "$work"
# zdtm restores with --pidfile NAME.pid (and removes the test's old one first): do the same, else use our own.
pidfile=$work/restore.pid own=(--pidfile "$pidfile")
args=("$@")
for ((i = 0; i < ${#args[@]} - 1; i++)); do
    if [[ ${args[i]} == --pidfile ]]; then pidfile=${args[i + 1]} own=(); fi
done
rm -f "$pidfile"
timeout 60 "$criu" restore -D "$images" -W "$work" -o restore.log -v4 --restore-detached "${own[@]}" "$@" \
    > "$work/restore.out" 2>&1
rc=$?
alive=0
if ((rc == 0)) && [[ -s $pidfile ]]; then
    sleep 1
    pid=$(< "$pidfile")
    state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null || true)
    [[ -n $state && $state != Z ]] && alive=1
    kill -9 "$pid" 2>/dev/null || true
fi
echo "criu_rc=$rc alive=$alive"
((rc == 0 && alive == 1))
