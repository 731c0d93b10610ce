"""Open file descriptors, compared by number: what each refers to and its state (position, flags, queued data)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imgtool.analysis.changes import Change
from imgtool.analysis.diff.registry import TaskPair, facet
from imgtool.analysis.diff.values import diff_values

# Identifiers renumbered from dump to dump: not a change of the file.
_RENUMBERED = ("ino", "peer", "pipe_id", "inode_id", "remap_id")


@facet("fds", order=70, help="open files: what each fd refers to, flags, position, queued data",
       images=r"fdinfo-\d+|files|pipes-data|fifo-data|sk-queues|tcp-stream-[0-9a-f]+|ghost-file-[0-9a-f]+|remap-fpath"
              r"|memfd")
def fds(pair: TaskPair) -> Iterator[Change]:
    old, new = {fd.fd: fd for fd in pair.a.fds}, {fd.fd: fd for fd in pair.b.fds}
    for number in sorted(old.keys() | new.keys()):
        path = (*pair.base, f"fd {number}")
        if number not in new:
            yield Change("fds", path, "removed", old[number].file.summary, None)
        elif number not in old:
            yield Change("fds", path, "added", None, new[number].file.summary)
        else:
            va, vb = _fd_view(old[number]), _fd_view(new[number])
            if va.get("kind") != vb.get("kind"):
                yield Change("fds", path, "changed", old[number].file.summary, new[number].file.summary)
            else:
                for change in diff_values("fds", path, va, vb):
                    if change.path[-1] not in _RENUMBERED:
                        yield change


def _fd_view(fd) -> dict[str, Any]:
    view = {"kind": fd.file.kind, **{k: v for k, v in fd.file.details.items() if not isinstance(v, (list, dict))}}
    if fd.file.queued is not None:
        view["queued bytes"] = len(fd.file.queued)
    return view
