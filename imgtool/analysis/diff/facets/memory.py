"""Memory contents, page by page (imgtool.analysis.memdiff): per mapping, pages changed / added / removed /
moved to parent, the changed pages as address ranges."""

from __future__ import annotations

from collections.abc import Iterable

from imgtool.analysis.changes import Change
from imgtool.analysis.diff.registry import Options, TaskPair, facet
from imgtool.model.dump import Dump, Task


def comparer(options: Options):
    if options.memory is None:
        # imported on first use: the CLI lists the facets to build its parser; only a memory diff needs memdiff
        from imgtool.analysis.memdiff import MemoryComparer

        options.memory = MemoryComparer()
    return options.memory


@facet("memory", order=90, help="memory pages: changed / added / removed / moved to parent, per mapping",
       images=r"pagemap-\d+|pages-\d+|pagemap-shmem-\d+")
def memory(pair: TaskPair) -> Iterable[Change]:
    return comparer(pair.options)(pair.a, pair.b)


def predump(a: Dump, b: Dump, pid: int, options: Options) -> Iterable[Change]:
    """A task of a pre-dump (pagemaps, no pstree): its memory by pid."""
    ta, tb = _task(a, pid), _task(b, pid)
    return comparer(options)(ta, tb, a_dump=a, b_dump=b, pid=pid)


def _task(dump: Dump, pid: int) -> Task | None:
    return next((t for t in dump.tasks if t.pid == pid), None) if dump.image("pstree") is not None else None
