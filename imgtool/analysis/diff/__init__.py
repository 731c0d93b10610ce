"""What changed between two checkpoints, as plain data.

``compare(a, b)`` returns a ``DumpDiff``: how tasks were matched and a flat list of ``Change`` records, each with
a path such as ``("task 14909", "fd 3", "pos")`` and its old and new value.  Facets can be chosen (``only``),
tasks filtered (``pids``) and paths ignored (``ignore``).

Each facet is one function registered with ``@facet`` (registry.py) in a module of ``facets/``: per task
(``tasks``, ``threads``, ``creds``, ``rlimits``, ``signals``, ``registers``, ``fds``, ``vmas``, ``memory``) or for
the whole dump (``namespaces``, ``mounts``, ``cgroups``, ``inventory``, ``images``).  ``Change`` and ``DumpDiff``
live in imgtool.analysis.changes; rendering in imgtool/cli/commands/diff.py.
"""

from __future__ import annotations

import fnmatch
import pkgutil
from collections.abc import Callable, Iterable
from importlib import import_module

from imgtool.analysis.changes import Change, DumpDiff, TaskMatch
from imgtool.analysis.diff import facets as _facet_modules
from imgtool.analysis.diff.matching import match_tasks, task_key
from imgtool.analysis.diff.registry import DumpPair, Facet, Options, TaskPair, facet, registered, select
from imgtool.analysis.diff.values import diff_image, diff_values
from imgtool.errors import ImgtoolError
from imgtool.model.dump import Dump

for _module in pkgutil.iter_modules(_facet_modules.__path__):   # each registers its facets
    import_module(f"{_facet_modules.__name__}.{_module.name}")

from imgtool.analysis.diff.facets import memory as _memory  # noqa: E402

FACETS = tuple(f.name for f in registered())
DEFAULT_FACETS = tuple(f.name for f in registered() if f.default)
# Values that differ between any two dumps without the process doing anything.
DEFAULT_IGNORE = ("inventory/dump_criu_run_id", "image stats-*", "image timens-*", "value_s")

__all__ = ["DEFAULT_FACETS", "DEFAULT_IGNORE", "FACETS", "Change", "DumpDiff", "DumpPair", "Facet", "Options",
           "TaskMatch", "TaskPair", "compare", "diff_image", "diff_values", "facet", "match_tasks", "registered",
           "task_key"]


def _ignored(change: Change, patterns: Iterable[str]) -> bool:
    joined = "/".join(change.path)
    for pattern in patterns:
        if "/" in pattern:
            if fnmatch.fnmatchcase(joined, pattern) or fnmatch.fnmatchcase(joined, pattern + "/*"):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in change.path) or pattern == change.facet:
            return True
    return False


def compare(a: Dump, b: Dump, *, only: Iterable[str] | None = None, pids: Iterable[int] | None = None,
            ignore: Iterable[str] = DEFAULT_IGNORE, memory: Callable[..., Iterable[Change]] | None = None
            ) -> DumpDiff:
    """Compare two dumps.  ``memory`` replaces the default page-level comparer (memdiff.MemoryComparer).

    A pid in ``pids`` that neither dump has is an ImgtoolError.
    """
    facets = select(only)
    options = Options(memory=memory)
    wanted = set(pids) if pids is not None else None
    result = DumpDiff(str(a.path), str(b.path))
    if a.image("pstree") is None or b.image("pstree") is None:  # a pre-dump: memory only
        changes = _compare_predump(a, b, result, wanted, facets, options)
    else:
        result.matches = match_tasks(a, b, cmdline=lambda t: t.cmdline)
        _check_pids(wanted, result.matches, a, b)
        changes = _compare_tasks(a, b, result.matches, wanted, facets, options)
        if wanted is None:
            pair = DumpPair(a, b, options)
            for f in facets:
                if f.scope == "dump":
                    changes += f.func(pair)
    ignore = list(ignore)
    result.changes = [c for c in changes if not _ignored(c, ignore)]
    return result


def _check_pids(wanted: set[int] | None, matches: list[TaskMatch], a: Dump, b: Dump) -> None:
    if wanted is None:
        return
    known = {m.a for m in matches} | {m.b for m in matches}
    missing = sorted(wanted - known)
    if missing:
        raise ImgtoolError(f"no process with pid {', '.join(map(str, missing))} in {a.path} or {b.path}"
                           f" (pids: {', '.join(map(str, sorted(p for p in known if p is not None)))})")


def _compare_tasks(a: Dump, b: Dump, matches: list[TaskMatch], wanted: set[int] | None, facets: list[Facet],
                   options: Options) -> list[Change]:
    changes: list[Change] = []
    by_pid_a, by_pid_b = {t.pid: t for t in a.tasks}, {t.pid: t for t in b.tasks}
    pid_map = {m.a: m.b for m in matches if m.a is not None and m.b is not None}
    per_task = [f for f in facets if f.scope == "task"]
    with_tasks = any(f.name == "tasks" for f in facets)
    for match in matches:
        if wanted is not None and not ({match.a, match.b} & wanted):
            continue
        if match.b is None and match.a is not None:
            if with_tasks:
                changes.append(Change("tasks", (match.label,), "removed", by_pid_a[match.a].comm, None))
        elif match.a is None and match.b is not None:
            if with_tasks:
                changes.append(Change("tasks", (match.label,), "added", None, by_pid_b[match.b].comm))
        elif match.a is not None and match.b is not None:
            pair = TaskPair(by_pid_a[match.a], by_pid_b[match.b], (match.label,), pid_map, options)
            for f in per_task:
                changes += f.func(pair)
    return changes


def _pagemap_pids(dump: Dump) -> list[int]:
    names = (n.removeprefix("pagemap-").removesuffix(".img") for n in dump.files_named("pagemap-"))
    return sorted(int(n) for n in names if n.isdigit())


def _compare_predump(a: Dump, b: Dump, result: DumpDiff, wanted: set[int] | None, facets: list[Facet],
                     options: Options) -> list[Change]:
    """A pre-dump has only pagemaps: match tasks by pid and compare their memory."""
    pids_a, pids_b = set(_pagemap_pids(a)), set(_pagemap_pids(b))
    result.matches = [TaskMatch(p if p in pids_a else None, p if p in pids_b else None,
                                "pid" if p in pids_a and p in pids_b else "unmatched")
                      for p in sorted(pids_a | pids_b)]
    _check_pids(wanted, result.matches, a, b)
    if not any(f.name == "memory" for f in facets):
        return []
    changes: list[Change] = []
    for match in result.matches:
        if match.how == "pid" and (wanted is None or match.a in wanted):
            changes += _memory.predump(a, b, match.a, options)
    return changes
