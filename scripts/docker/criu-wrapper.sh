#!/bin/bash
# The `criu` that runc finds first in its PATH under the private dockerd of scripts/docker-env.sh (installed as
# ROOT/bin/criu with @ROOT@ and @CRIU@ filled in). It runs our CRIU unchanged, then keeps a copy of every CRIU log
# written meanwhile under ROOT (containerd/runc delete dump.log on success and the whole work dir of a failed
# restore), in ROOT/criu-logs/<time>-<pid>/ with a file NAME.path holding the log's original path.
ROOT='@ROOT@'
CRIU='@CRIU@'
logs="$ROOT/criu-logs"
mkdir -p "$logs"
marker=$(mktemp "$logs/.start.XXXXXX")
"$CRIU" "$@"
rc=$?
dir="$logs/$(date +%s%N)-$$"
while IFS= read -r -d '' log; do
    mkdir -p "$dir"
    name=$(basename "$log")
    cp -f "$log" "$dir/$name" 2>/dev/null && printf '%s\n' "$log" > "$dir/$name.path"
done < <(find "$ROOT/exec" "$ROOT/data/containers" "$ROOT/data/containerd" \
              \( -name '*dump.log' -o -name '*restore.log' \) -newer "$marker" -print0 2>/dev/null)
printf '%s rc=%s pid=%s ppid=%s cwd=%s args=%s logs=%s\n' "$(date +%T.%N)" "$rc" "$$" "$PPID" "$PWD" "$*" \
    "$([[ -d $dir ]] && echo "$dir" || echo -)" >> "$logs/calls.log"
rm -f "$marker"
exit $rc
