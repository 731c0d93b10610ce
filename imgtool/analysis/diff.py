"""What changed between two checkpoints, as plain data.

``compare(a, b)`` returns a ``DumpDiff``: how tasks were matched and a flat
list of ``Change`` records, each with a path such as
``("task 14909", "fd 3", "pos")`` and its old and new value.  Facets can be
chosen (``only``), tasks filtered (``pids``) and paths ignored (``ignore``).
Rendering lives in imgtool/commands/diff.py.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from imgtool.crit.convert import to_dict
from imgtool.crit.explore import prot_text, vma_backing
from imgtool.model.dump import Dump, Task
from imgtool.model.files import signal_names

FACETS = ("tasks", "threads", "creds", "rlimits", "signals", "registers", "fds", "vmas", "memory",
          "namespaces", "mounts", "cgroups", "inventory", "images")
DEFAULT_FACETS = tuple(f for f in FACETS if f != "registers")  # registers change at every dump
# Values that differ between any two dumps without the process doing anything.
DEFAULT_IGNORE = ("inventory/dump_criu_run_id", "image stats-*", "image timens-*", "value_s")

RLIMITS = ["CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS",
           "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"]

# Images a facet already covers; the generic image facet handles the rest.
_COVERED = re.compile(r"(pstree|core-\d+|ids-\d+|mm-\d+|pagemap-\d+|pages-\d+|fdinfo-\d+|files|fs-\d+|"
                      r"pipes-data|fifo-data|sk-queues|tcp-stream-[0-9a-f]+|ghost-file-\d+|remap-fpath|"
                      r"memfd|pagemap-shmem-\d+|inventory|stats-\w+|irmap-cache|creds-\d+)(\.img)?")
_NAMESPACES = re.compile(r"(utsns|ipcns-\w+|userns|netns|pidns|timens|netdev|ifaddr|route6?|rule|"
                         r"ip6?tables|nftables|netns-\w+)-[0-9a-f]+(\.img)?")
_MOUNTS = re.compile(r"(mountpoints|tmpfs(-dev)?|autofs)-\d+(\.tar\.gz)?(\.img)?")
_CGROUPS = re.compile(r"cgroup(\.img)?")


@dataclass(frozen=True)
class Change:
    facet: str
    path: tuple[str, ...]
    kind: str            # "added", "removed" or "changed"
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        where = " › ".join(self.path)
        if self.facet == "memory" and isinstance(self.new, dict):
            shown = ("changed", "added", "removed", "moved to parent")
            return f"{where}: " + ", ".join(f"{self.new[k]} {k}" for k in shown if self.new.get(k))
        if self.kind == "changed":
            return f"{where}: {_short(self.old)} → {_short(self.new)}"
        return f"{where}: {self.kind}" + (f" ({_short(self.new if self.kind == 'added' else self.old)})"
                                          if (self.new if self.kind == "added" else self.old) is not None else "")

    def to_json(self) -> dict[str, Any]:
        return {"facet": self.facet, "path": list(self.path), "kind": self.kind, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class TaskMatch:
    a: int | None
    b: int | None
    how: str             # "pid", "key" (comm + cmdline + tree position), or "unmatched"

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "how": self.how}


@dataclass
class DumpDiff:
    a: str
    b: str
    matches: list[TaskMatch] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.changes

    def stat(self) -> dict[str, Counter]:
        out: dict[str, Counter] = {}
        for change in self.changes:
            out.setdefault(change.facet, Counter())[change.kind] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "equal": self.equal, "matches": [m.to_json() for m in self.matches],
                "changes": [c.to_json() for c in self.changes],
                "stat": {facet: dict(c) for facet, c in self.stat().items()}}


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------- generic value diff


def diff_values(facet: str, path: tuple[str, ...], old: Any, new: Any) -> Iterator[Change]:
    """Field-level differences between two JSON-like values (dicts, lists, scalars)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if key not in new:
                yield Change(facet, (*path, str(key)), "removed", old[key], None)
            elif key not in old:
                yield Change(facet, (*path, str(key)), "added", None, new[key])
            else:
                yield from diff_values(facet, (*path, str(key)), old[key], new[key])
    elif isinstance(old, list) and isinstance(new, list) and old and isinstance(old[0], dict):
        for i in range(max(len(old), len(new))):
            if i >= len(new):
                yield Change(facet, (*path, f"[{i}]"), "removed", old[i], None)
            elif i >= len(old):
                yield Change(facet, (*path, f"[{i}]"), "added", None, new[i])
            else:
                yield from diff_values(facet, (*path, f"[{i}]"), old[i], new[i])
    elif old != new:
        yield Change(facet, path, "changed", old, new)


def _entry_key(entry: dict[str, Any], index: int) -> Any:
    for key in ("id", "mnt_id", "ns_id", "ino", "pid"):
        if key in entry:
            return f"{key} {entry[key]}"
    return f"entry {index}"


def diff_image(facet: str, name: str, a: Dump, b: Dump) -> Iterator[Change]:
    """Entry-by-entry, field-by-field difference of one image present in both dumps."""
    old = [to_dict(m, pretty=True) for m in a.entries(name)]
    new = [to_dict(m, pretty=True) for m in b.entries(name)]
    old_by = {_entry_key(e, i): e for i, e in enumerate(old)}
    new_by = {_entry_key(e, i): e for i, e in enumerate(new)}
    for key in list(old_by) + [k for k in new_by if k not in old_by]:
        path = (f"image {name}", key)
        if key not in new_by:
            yield Change(facet, path, "removed", old_by[key], None)
        elif key not in old_by:
            yield Change(facet, path, "added", None, new_by[key])
        else:
            yield from diff_values(facet, path, old_by[key], new_by[key])


# ---------------------------------------------------------------- matching tasks


def _tree_position(task: Task) -> tuple[str, ...]:
    """Comms from the root down to the task, with the rank among same-named siblings."""
    chain: list[str] = []
    node: Task | None = task
    while node is not None:
        parent = node.parent
        siblings = parent.children if parent is not None else [t for t in node.dump.tasks if t.ppid == 0]
        rank = [s.pid for s in siblings if s.comm == node.comm].index(node.pid)
        chain.append(f"{node.comm}#{rank}")
        node = parent
    return tuple(reversed(chain))


def task_key(task: Task, cmdline: Callable[[Task], list[str]] | None = None) -> tuple:
    return (task.comm, tuple(cmdline(task)) if cmdline else (), _tree_position(task))


def match_tasks(a: Dump, b: Dump, cmdline: Callable[[Task], list[str]] | None = None
                ) -> list[TaskMatch]:
    """Pair tasks: by pid when both dumps have it, else by a stable key (comm, cmdline, tree position)."""
    b_by_pid = {t.pid: t for t in b.tasks}
    matches, left_a = [], []
    for task in a.tasks:
        other = b_by_pid.get(task.pid)
        if other is not None:
            matches.append(TaskMatch(task.pid, other.pid, "pid"))
            del b_by_pid[task.pid]
        else:
            left_a.append(task)
    b_by_key: dict[tuple, list[Task]] = {}
    for task in b_by_pid.values():
        b_by_key.setdefault(task_key(task, cmdline), []).append(task)
    for task in left_a:
        same = b_by_key.get(task_key(task, cmdline))
        if same:
            other = same.pop(0)
            matches.append(TaskMatch(task.pid, other.pid, "key"))
            del b_by_pid[other.pid]
        else:
            matches.append(TaskMatch(task.pid, None, "unmatched"))
    matches += [TaskMatch(None, pid, "unmatched") for pid in b_by_pid]
    return matches


# ---------------------------------------------------------------- per-task facets


def _task_facets(ta: Task, tb: Task, facets: set[str], pid_map: dict[int, int]) -> Iterator[Change]:
    base = (f"task {ta.pid}" if ta.pid == tb.pid else f"task {ta.pid}→{tb.pid}",)
    if "tasks" in facets:
        for name in ("comm", "state", "exit_code"):
            if getattr(ta, name) != getattr(tb, name):
                yield Change("tasks", (*base, name), "changed", getattr(ta, name), getattr(tb, name))
        for name in ("ppid", "pgid", "sid"):  # pid-valued: compared through the task matching
            old, new = getattr(ta, name), getattr(tb, name)
            if pid_map.get(old, old) != new:
                yield Change("tasks", (*base, name), "changed", old, new)
        if ta.cwd != tb.cwd:
            yield Change("tasks", (*base, "cwd"), "changed", ta.cwd, tb.cwd)
    if "threads" in facets:
        old, new = [t.comm for t in ta.thread_list], [t.comm for t in tb.thread_list]
        if len(old) != len(new):
            yield Change("threads", (*base, "threads"), "changed", len(old), len(new))
        elif old != new:
            yield Change("threads", (*base, "thread names"), "changed", old, new)
    if "creds" in facets and ta.creds is not None and tb.creds is not None:
        yield from diff_values("creds", (*base, "creds"), to_dict(ta.creds, True), to_dict(tb.creds, True))
    if "rlimits" in facets:
        yield from diff_values("rlimits", (*base, "rlimits"), _rlimits(ta), _rlimits(tb))
    if "signals" in facets:
        yield from diff_values("signals", (*base, "signals"), _signals(ta), _signals(tb))
    if "registers" in facets:
        for tid_a, tid_b in zip(ta.threads, tb.threads, strict=False):
            yield from diff_values("registers", (*base, f"thread {tid_a}", "registers"),
                                   to_dict(ta.thread_core(tid_a).thread_info, True),
                                   to_dict(tb.thread_core(tid_b).thread_info, True))
    if "fds" in facets:
        yield from _fd_changes(base, ta, tb)
    if "vmas" in facets:
        yield from _vma_changes(base, ta, tb)


def _rlimits(task: Task) -> dict[str, Any]:
    tc = task.core.tc
    limits = tc.rlimits.rlimits if tc.HasField("rlimits") else []
    return {RLIMITS[i] if i < len(RLIMITS) else str(i): f"{r.cur}/{r.max}" for i, r in enumerate(limits)}


def _signals(task: Task) -> dict[str, Any]:
    tc = task.core.tc
    handlers = {f"SIG{i + 1} handler": hex(sa.sigaction) for i, sa in enumerate(tc.sigactions) if sa.sigaction}
    pending = len(tc.signals_s.signals) if tc.HasField("signals_s") else 0
    return {"blocked": signal_names(tc.blk_sigset), "pending shared": pending, **handlers}


def _fd_view(fd) -> dict[str, Any]:
    view = {"kind": fd.file.kind, **{k: v for k, v in fd.file.details.items() if not isinstance(v, (list, dict))}}
    if fd.file.queued is not None:
        view["queued bytes"] = len(fd.file.queued)
    return view


def _fd_changes(base: tuple[str, ...], ta: Task, tb: Task) -> Iterator[Change]:
    old, new = {fd.fd: fd for fd in ta.fds}, {fd.fd: fd for fd in tb.fds}
    for number in sorted(old.keys() | new.keys()):
        path = (*base, f"fd {number}")
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
                    if change.path[-1] not in ("ino", "peer", "pipe_id", "inode_id", "remap_id"):
                        yield change


def _vma_view(task: Task) -> dict[int, dict[str, Any]]:
    if task.mm is None:
        return {}
    ids: dict[int, int] = {}
    return {v.start: {"end": v.end, "prot": prot_text(v.prot), "flags": v.flags, "status": v.status,
                      "backing": vma_backing(task.dump, v, ids).strip()} for v in task.mm.vmas}


def _vma_changes(base: tuple[str, ...], ta: Task, tb: Task) -> Iterator[Change]:
    old, new = _vma_view(ta), _vma_view(tb)
    for start in sorted(old.keys() | new.keys()):
        path = (*base, f"vma {start:x}")
        if start not in new:
            yield Change("vmas", path, "removed", f"{start:x}-{old[start]['end']:x} {old[start]['backing']}", None)
        elif start not in old:
            yield Change("vmas", path, "added", None, f"{start:x}-{new[start]['end']:x} {new[start]['backing']}")
        else:
            va, vb = old[start], new[start]
            if va["end"] != vb["end"]:
                yield Change("vmas", (*path, "size"), "changed", va["end"] - start, vb["end"] - start)
            for name in ("prot", "flags", "status", "backing"):
                if va[name] != vb[name]:
                    yield Change("vmas", (*path, name), "changed", va[name], vb[name])


# ---------------------------------------------------------------- whole-dump facets


def _image_names(dump: Dump) -> set[str]:
    return {p.name for p in dump.path.iterdir() if p.is_file() and p.name != "parent"}


def _image_facet(name: str) -> str | None:
    if _COVERED.fullmatch(name):
        return None
    if _NAMESPACES.fullmatch(name):
        return "namespaces"
    if _MOUNTS.fullmatch(name):
        return "mounts"
    if _CGROUPS.fullmatch(name):
        return "cgroups"
    return "images"


def _dump_facets(a: Dump, b: Dump, facets: set[str]) -> Iterator[Change]:
    if "inventory" in facets:
        skip = {"root_ids"}  # ids are renumbered from dump to dump
        old = {k: v for k, v in to_dict(a.inventory, True).items() if k not in skip}
        new = {k: v for k, v in to_dict(b.inventory, True).items() if k not in skip}
        yield from diff_values("inventory", ("inventory",), old, new)
    names_a, names_b = _image_names(a), _image_names(b)
    for name in sorted(names_a | names_b):
        facet = _image_facet(name)
        if facet is None or facet not in facets:
            continue
        if name not in names_b:
            yield Change(facet, (f"image {name}",), "removed")
        elif name not in names_a:
            yield Change(facet, (f"image {name}",), "added")
        elif name.endswith(".img") and (a.path / name).read_bytes() != (b.path / name).read_bytes():
            yield from _generic_or_raw(facet, name, a, b)


def _generic_or_raw(facet: str, name: str, a: Dump, b: Dump) -> Iterator[Change]:
    from imgtool.errors import RawImageError

    try:
        yield from diff_image(facet, name.removesuffix(".img"), a, b)
    except RawImageError:
        yield Change(facet, (f"image {name}",), "changed", "(raw data)", "(raw data)")


# ---------------------------------------------------------------- entry point


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
            ignore: Iterable[str] = DEFAULT_IGNORE, memory: Callable[..., Iterator[Change]] | None = None
            ) -> DumpDiff:
    """Compare two dumps.  ``memory`` replaces the default page-level comparer (memdiff.MemoryComparer)."""
    facets = set(only or DEFAULT_FACETS)
    unknown = facets - set(FACETS)
    if unknown:
        from imgtool.errors import ImgtoolError

        raise ImgtoolError(f"unknown facet(s) {', '.join(sorted(unknown))}; choose from {', '.join(FACETS)}")
    wanted = set(pids) if pids is not None else None
    if "memory" in facets and memory is None:
        from imgtool.analysis.memdiff import MemoryComparer

        memory = MemoryComparer()
    result = DumpDiff(str(a.path), str(b.path))
    if a.image("pstree") is None or b.image("pstree") is None:  # a pre-dump: memory only
        return _compare_predump(a, b, result, wanted, memory, ignore)
    result.matches = match_tasks(a, b, cmdline=lambda t: t.cmdline)
    changes: list[Change] = []
    by_pid_a, by_pid_b = {t.pid: t for t in a.tasks}, {t.pid: t for t in b.tasks}
    pid_map = {m.a: m.b for m in result.matches if m.a is not None and m.b is not None}
    for match in result.matches:
        if wanted is not None and not ({match.a, match.b} & wanted):
            continue
        if match.b is None and "tasks" in facets:
            changes.append(Change("tasks", (f"task {match.a}",), "removed", by_pid_a[match.a].comm, None))
        elif match.a is None and "tasks" in facets:
            changes.append(Change("tasks", (f"task {match.b}",), "added", None, by_pid_b[match.b].comm))
        elif match.a is not None and match.b is not None:
            ta, tb = by_pid_a[match.a], by_pid_b[match.b]
            changes += _task_facets(ta, tb, facets, pid_map)
            if "memory" in facets and memory is not None:
                changes += memory(ta, tb)
    if wanted is None:
        changes += _dump_facets(a, b, facets)
    ignore = list(ignore)
    result.changes = [c for c in changes if not _ignored(c, ignore)]
    return result


def _pagemap_pids(dump: Dump) -> list[int]:
    names = (n.removeprefix("pagemap-").removesuffix(".img") for n in dump.files_named("pagemap-"))
    return sorted(int(n) for n in names if n.isdigit())


def _compare_predump(a: Dump, b: Dump, result: DumpDiff, wanted: set[int] | None,
                     memory: Callable[..., Iterator[Change]] | None, ignore: Iterable[str]) -> DumpDiff:
    """A pre-dump has only pagemaps: match tasks by pid and compare their memory."""
    pids_a, pids_b = set(_pagemap_pids(a)), set(_pagemap_pids(b))
    result.matches = [TaskMatch(p if p in pids_a else None, p if p in pids_b else None,
                                "pid" if p in pids_a and p in pids_b else "unmatched")
                      for p in sorted(pids_a | pids_b)]
    changes: list[Change] = []
    for match in result.matches:
        if match.how != "pid" or (wanted is not None and match.a not in wanted) or memory is None:
            continue
        ta = a.task(match.a) if a.image("pstree") is not None else None
        tb = b.task(match.b) if b.image("pstree") is not None else None
        changes += memory(ta, tb, a_dump=a, b_dump=b, pid=match.a)
    ignore = list(ignore)
    result.changes = [c for c in changes if not _ignored(c, ignore)]
    return result
