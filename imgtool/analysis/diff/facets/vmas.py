"""Mappings (VMAs) of each task: added, removed, resized, or with other protection, flags or backing.

Classification, after pairing the mappings with the same [start, end) in both dumps:

* same range, other ``prot`` / ``flags`` / ``status`` / ``backing``: a "changed" per attribute
  (path ``vma <start> › prot``);
* the mappings left over that overlap are paired one to one, the largest overlaps first: "resized" (it grew or
  shrank at the start, the end or both; ``old`` and ``new`` are the two mappings), plus "changed" attributes;
  e.g. a new mapping that the kernel merged into its neighbour, or an munmap of part of one;
* a mapping overlapping nothing left over in the other dump: "removed" or "added".

Mappings are shown as objects: integer ``start``, ``end``, ``prot``, ``flags``, ``status`` and the ``backing`` text.
"""

from __future__ import annotations

from collections.abc import Iterator

from imgtool.analysis.changes import Change, VmaObject, vma_object
from imgtool.analysis.diff.registry import TaskPair, facet
from imgtool.crit.explore import prot_text, vma_backing
from imgtool.model.dump import Task

ATTRIBUTES = ("prot", "flags", "status", "backing")


def task_vmas(task: Task) -> list[VmaObject]:
    if task.mm is None:
        return []
    ids: dict[int, int] = {}
    found = [vma_object(v.start, v.end, v.prot, v.flags, v.status, vma_backing(task.dump, v, ids).strip())
             for v in task.mm.vmas]
    return sorted(found, key=lambda v: (v["start"], v["end"]))


def _attributes(path: tuple[str, ...], old: VmaObject, new: VmaObject) -> Iterator[Change]:
    for name in ATTRIBUTES:
        if old[name] != new[name]:
            if name == "prot":
                yield Change("vmas", (*path, name), "changed", prot_text(old[name]), prot_text(new[name]))
            else:
                yield Change("vmas", (*path, name), "changed", old[name], new[name])


def _overlapping(old: list[VmaObject], new: list[VmaObject]) -> list[tuple[int, int, int]]:
    """(overlap bytes, index in old, index in new) of every overlapping pair; both lists sorted by start."""
    pairs, j = [], 0
    for i, o in enumerate(old):
        while j < len(new) and new[j]["end"] <= o["start"]:
            j += 1
        k = j
        while k < len(new) and new[k]["start"] < o["end"]:
            size = min(o["end"], new[k]["end"]) - max(o["start"], new[k]["start"])
            if size > 0:
                pairs.append((size, i, k))
            k += 1
    return pairs


def classify(old: list[VmaObject], new: list[VmaObject]) -> list[tuple[str, VmaObject | None, VmaObject | None]]:
    """(kind, old mapping, new mapping) for every mapping not the same in both: "same" (attributes may differ),
    "resized", "removed" or "added"; in address order."""
    new_by_range = {(v["start"], v["end"]): v for v in new}
    out: list[tuple[str, VmaObject | None, VmaObject | None]] = []
    old_left = []
    for v in old:
        other = new_by_range.pop((v["start"], v["end"]), None)
        if other is None:
            old_left.append(v)
        elif other != v:
            out.append(("same", v, other))
    new_left = sorted(new_by_range.values(), key=lambda v: v["start"])
    used_old, used_new = set(), set()
    for _, i, k in sorted(_overlapping(old_left, new_left), key=lambda p: (-p[0], p[1], p[2])):
        if i not in used_old and k not in used_new:
            used_old.add(i)
            used_new.add(k)
            out.append(("resized", old_left[i], new_left[k]))
    out += [("removed", v, None) for i, v in enumerate(old_left) if i not in used_old]
    out += [("added", None, v) for k, v in enumerate(new_left) if k not in used_new]
    return sorted(out, key=lambda c: ((c[1] or c[2])["start"], 0 if c[1] is not None else 1))


@facet("vmas", order=80, help="mappings: added, removed, resized, protection / flags / backing changed",
       images=r"mm-\d+")
def vmas(pair: TaskPair) -> Iterator[Change]:
    for kind, old, new in classify(task_vmas(pair.a), task_vmas(pair.b)):
        shown = old if old is not None else new
        assert shown is not None
        path = (*pair.base, f"vma {shown['start']:x}")
        if kind in ("added", "removed"):
            yield Change("vmas", path, kind, old, new)
            continue
        assert old is not None and new is not None
        if kind == "resized":
            yield Change("vmas", path, "resized", old, new)
        yield from _attributes(path, old, new)
