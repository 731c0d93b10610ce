#!/usr/bin/env bash
# criu --action-script hook (zdtm.py --script): right after the dump, before zdtm restores and the test cleans up,
# copy the test's side files (what appeared in zdtm/static since the run began: NAME.pid, NAME.out.inprogress,
# NAME.test, ...) to $IMGTOOL_ZDTM_STAGE, so the kept dump can be restored again later. Must always exit 0.
[[ ${CRTOOLS_SCRIPT_ACTION:-} == post-dump ]] || exit 0
[[ -n ${IMGTOOL_ZDTM_STAGE:-} && -n ${IMGTOOL_ZDTM_STATIC:-} ]] || exit 0
mkdir -p "$IMGTOOL_ZDTM_STAGE/files"
comm -13 "$IMGTOOL_ZDTM_STAGE/before.list" <(find "$IMGTOOL_ZDTM_STATIC" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort) \
    > "$IMGTOOL_ZDTM_STAGE/side-files.list"
while IFS= read -r name; do
    cp -a --one-file-system "$IMGTOOL_ZDTM_STATIC/$name" "$IMGTOOL_ZDTM_STAGE/files/" 2>/dev/null || true
done < "$IMGTOOL_ZDTM_STAGE/side-files.list"
# zdtm changes the modes of test/, test/zdtm and test/zdtm/static as it goes (and criu checks them at restore):
# keep them as they were at dump time.
stat -c '%a %n' "$IMGTOOL_ZDTM_STATIC/../.." "$IMGTOOL_ZDTM_STATIC/.." "$IMGTOOL_ZDTM_STATIC" \
    > "$IMGTOOL_ZDTM_STAGE/dir-modes" 2>/dev/null || true
exit 0
