"""What a diff returns, as plain data: ``Change`` records, ``TaskMatch`` and ``DumpDiff``.

A leaf module (imports nothing of imgtool) so that the diff engine, its facets and the memory comparer can all
make changes without importing each other.

``Change.kind`` is "added", "removed", "changed" or "resized" (a mapping that grew or shrank: ``old`` and ``new``
are the two mappings).  A mapping is shown, in ``old`` / ``new`` and in JSON, as a ``vma_object``: integer
``start``, ``end``, ``prot``, ``flags``, ``status`` and the ``backing`` text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KINDS = ("added", "removed", "changed", "resized")
MEMORY_COUNTS = ("changed", "added", "removed", "moved to parent")


@dataclass(frozen=True)
class Change:
    facet: str
    path: tuple[str, ...]
    kind: str            # one of KINDS
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        where = " › ".join(self.path)
        if self.facet == "memory" and isinstance(self.new, dict):
            return f"{where}: " + ", ".join(f"{self.new[k]} {k}" for k in MEMORY_COUNTS if self.new.get(k))
        if self.kind == "resized":
            return f"{where}: {resize_text(self.old, self.new)}"
        if self.kind == "changed":
            return f"{where}: {_short(self.old)} → {_short(self.new)}"
        value = self.new if self.kind == "added" else self.old
        return f"{where}: {self.kind}" + (f" ({_short(value)})" if value is not None else "")

    def to_json(self) -> dict[str, Any]:
        return {"facet": self.facet, "path": list(self.path), "kind": self.kind, "old": self.old, "new": self.new}


def task_label(pid_a: int | None, pid_b: int | None) -> str:
    """What the changes of a task start with: "task 12", or "task 12→40" when its pid changed."""
    if pid_a is None or pid_b is None or pid_a == pid_b:
        return f"task {pid_a if pid_a is not None else pid_b}"
    return f"task {pid_a}→{pid_b}"


@dataclass(frozen=True)
class TaskMatch:
    a: int | None
    b: int | None
    how: str             # "pid", "key" (comm + cmdline + tree position), or "unmatched"

    @property
    def label(self) -> str:
        return task_label(self.a, self.b)

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


class VmaObject(dict):
    """A mapping as diff reports it: a dict (JSON object) whose ``str`` is ``start-end prot backing``."""

    def __str__(self) -> str:
        prot = self["prot"]
        perms = ("r" if prot & 1 else "-") + ("w" if prot & 2 else "-") + ("x" if prot & 4 else "-")
        return f"{self['start']:x}-{self['end']:x} {perms} {self['backing']}".rstrip()

    def __repr__(self) -> str:
        return str(self)


def vma_object(start: int, end: int, prot: int, flags: int, status: int, backing: str) -> VmaObject:
    return VmaObject(start=start, end=end, prot=prot, flags=flags, status=status, backing=backing)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{round(size, 1):g} {unit}"
        size /= 1024
    return f"{round(size, 1):g} GiB"


def resize_text(old: dict[str, int], new: dict[str, int]) -> str:
    """"grew at the end by 76 KiB: 7f..-7f.. → 7f..-7f..": which end(s) moved, which way, by how much."""
    moves = []
    if new["start"] != old["start"]:
        delta = old["start"] - new["start"]
        moves.append(f"{'grew' if delta > 0 else 'shrank'} at the start by {human_size(abs(delta))}")
    if new["end"] != old["end"]:
        delta = new["end"] - old["end"]
        moves.append(f"{'grew' if delta > 0 else 'shrank'} at the end by {human_size(abs(delta))}")
    return (", ".join(moves) or "resized") + f": {old['start']:x}-{old['end']:x} → {new['start']:x}-{new['end']:x}"


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else str(value) if isinstance(value, VmaObject) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
