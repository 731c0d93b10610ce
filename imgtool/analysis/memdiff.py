"""Page-level comparison of two tasks' memory, streamed from the mmapped pages files.

Both address spaces are walked in address order as extents (address range →
slice of a pages file).  Where both dumps have data, large pieces are
compared in one C call (``hmac.compare_digest`` on the mapped views, no
copy) and only a differing piece is split into pages; a page that the newer
dump keeps in its parent image ("moved to parent") is the same bytes by
construction.  The extents are streamed from the pagemaps (AddressSpace.pieces),
never indexed: nothing is held beyond one piece and a batch of extents per side;
mapped pages are released as the walk goes, and changed pages are kept as runs
in arrays (16 bytes a run), so RSS grows with neither the bytes compared nor
the number of tasks.
"""

from __future__ import annotations

import hmac
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imgtool.analysis.changes import Change, task_label
from imgtool.memory.space import AddressSpace, address_space
from imgtool.memory.vma import DEFAULT_PAGE_SIZE, Vma
from imgtool.model.dump import Dump, Task

PIECE = 1 << 20          # bytes compared per call
RELEASE_EVERY = 2 << 20   # mapped bytes read between MADV_DONTNEED of the pages files
FAULT_AROUND = 64 << 10   # the kernel maps this much around each page fault in a file mapping
RANGES_PER_PAGE = 16     # at most this many changed byte ranges listed per page


class PageRuns:
    """Address ranges [start, end) in ascending order, contiguous ones merged, in one array (16 bytes a run).

    JSON: a list of [start, end] pairs (``iter_json`` makes them one at a time, for render.emit_json).
    """

    def __init__(self) -> None:
        self._bounds = array("Q")   # start0, end0, start1, end1, ...

    def add(self, start: int, size: int) -> None:
        bounds = self._bounds
        if bounds and bounds[-1] == start:
            bounds[-1] = start + size
        else:
            bounds.extend((start, start + size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        bounds = self._bounds
        return zip(bounds[::2], bounds[1::2], strict=True)

    def __len__(self) -> int:
        return len(self._bounds) // 2

    def __repr__(self) -> str:
        return f"<PageRuns: {len(self)} runs>"

    def to_json(self) -> list[list[int]]:
        return list(self.iter_json())

    def iter_json(self) -> Iterator[list[int]]:
        return ([start, end] for start, end in self)


@dataclass
class Bucket:
    """Totals for one VMA (or for memory outside any known VMA)."""

    counts: Counter = field(default_factory=Counter)
    changed: PageRuns = field(default_factory=PageRuns)
    ranges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


@dataclass
class Side:
    """One task's memory as the comparer needs it."""

    space: AddressSpace       # walked in address order: streamed, not indexed
    vmas: list[Vma]
    page_size: int
    own_dir: Path            # pages files outside it are in a parent dump


def side_of(dump: Dump, task: Task | None, pid: int) -> Side | None:
    """The memory of ``pid``: from its address space, or (pre-dumps) from its pagemap alone.

    Built afresh rather than taken from ``task.memory``, so that nothing of it outlives the comparison.
    """
    if task is not None and task.mm is not None:
        space = address_space(task)
        return Side(space, space.vmas, space.page_size, dump.path.resolve())
    store, name = dump.memory_store, f"pagemap-{pid}"
    if store.stream(name, DEFAULT_PAGE_SIZE) is None:
        return None
    space = AddressSpace(pid, [], lambda: store.stream(name, DEFAULT_PAGE_SIZE) or iter(()), DEFAULT_PAGE_SIZE)
    return Side(space, [], DEFAULT_PAGE_SIZE, dump.path.resolve())


Piece = tuple[int, int, object, int]   # start, end, pages file, file offset


def _overlay(ia: Iterator[Piece], ib: Iterator[Piece]) -> Iterator[tuple[int, int, tuple | None, tuple | None]]:
    """Split the union of both extent streams into pieces: (lo, hi, (file, offset) in a or None, same for b)."""
    ca, cb = next(ia, None), next(ib, None)
    while ca is not None or cb is not None:
        current = [x for x in (ca, cb) if x is not None]
        lo = min(x[0] for x in current)
        hi = min([x[1] for x in current if x[0] <= lo] + [x[0] for x in current if x[0] > lo])
        pa = (ca[2], ca[3] + lo - ca[0]) if ca is not None and ca[0] <= lo else None
        pb = (cb[2], cb[3] + lo - cb[0]) if cb is not None and cb[0] <= lo else None
        yield lo, hi, pa, pb
        ca, cb = _advance(ca, ia, hi), _advance(cb, ib, hi)


def _advance(current: Piece | None, rest: Iterator[Piece], hi: int) -> Piece | None:
    """The current extent with everything below ``hi`` consumed."""
    if current is None:
        return None
    if current[1] <= hi:
        return next(rest, None)
    if current[0] < hi:
        return (hi, current[1], current[2], current[3] + hi - current[0])
    return current


def _byte_ranges(old: memoryview, new: memoryview) -> list[tuple[int, int]]:
    """Differing [lo, hi) byte ranges within one page (64-byte blocks first, then bytes)."""
    ranges: list[tuple[int, int]] = []
    for block in range(0, len(old), 64):
        a, b = old[block:block + 64], new[block:block + 64]
        if hmac.compare_digest(a, b):
            continue
        for i in range(len(a)):
            if a[i] != b[i]:
                if ranges and ranges[-1][1] == block + i:
                    ranges[-1] = (ranges[-1][0], block + i + 1)
                else:
                    ranges.append((block + i, block + i + 1))
        if len(ranges) >= RANGES_PER_PAGE:
            break
    return ranges[:RANGES_PER_PAGE]


class MemoryComparer:
    """Callable for ``diff.compare(memory=...)``: yields one Change per VMA whose pages differ."""

    def __init__(self, *, page_ranges: bool = False, progress: ProgressFactory | None = None) -> None:
        self.page_ranges = page_ranges
        self.progress = progress

    def __call__(self, ta: Task | None, tb: Task | None, *, a_dump: Dump | None = None, b_dump: Dump | None = None,
                 pid: int | None = None) -> Iterator[Change]:
        a_dump = a_dump or ta.dump
        b_dump = b_dump or tb.dump
        side_a = side_of(a_dump, ta, pid if ta is None else ta.pid)
        side_b = side_of(b_dump, tb, pid if tb is None else tb.pid)
        if side_a is None or side_b is None:
            return
        label = task_label(ta.pid if ta else pid, tb.pid if tb else pid)
        buckets = self.compare(side_a, side_b)
        for (start, end), bucket in sorted(buckets.items(), key=_bucket_order):
            counts = {k: v for k, v in bucket.counts.items() if k != "equal"}
            if not any(counts.get(k) for k in ("changed", "added", "removed")):
                continue
            detail = {**counts, "equal": bucket.counts["equal"], "changed_ranges": bucket.changed}
            if self.page_ranges:
                detail["byte_ranges"] = {f"{addr:#x}": r for addr, r in bucket.ranges.items()}
            where = f"vma {start:x}-{end:x}" if start is not None else "outside known VMAs"
            yield Change("memory", (label, where, "pages"), "changed", None, detail)

    def compare(self, a: Side, b: Side) -> dict[tuple, Bucket]:
        page = b.page_size
        buckets = _Buckets(b.vmas, a.vmas)
        bar = self.progress(a.space.dumped_bytes() + b.space.dumped_bytes()) if self.progress else None
        unreleased = 0
        for lo, hi, pa, pb in _overlay(a.space.pieces(), b.space.pieces()):
            for piece in range(lo, hi, PIECE):
                stop = min(hi, piece + PIECE)
                pieces = (pa and (pa[0], pa[1] + piece - lo), pb and (pb[0], pb[1] + piece - lo))
                unreleased += self._piece(piece, stop, *pieces, page, b.own_dir, buckets)
                if unreleased >= RELEASE_EVERY:   # keep RSS flat: drop the mapped pages compared so far
                    unreleased = _release(a.space.files + b.space.files)
                if bar is not None:
                    bar.advance(2 * (stop - piece) if pa and pb else stop - piece)
        _release(a.space.files + b.space.files)
        if bar is not None:
            bar.close()
        return buckets.found

    def _piece(self, lo: int, hi: int, pa, pb, page: int, own_dir: Path, buckets: _Buckets) -> int:
        """Count the pages of ``[lo, hi)``; return how many mapped bytes were read."""
        if pa is None:
            buckets.count(lo, hi, page, "added")
            return 0
        if pb is None:
            buckets.count(lo, hi, page, "removed")
            return 0
        (fa, oa), (fb, ob) = pa, pb
        if oa == ob and (fa is fb or fa.real_path == fb.real_path):  # the very same bytes
            buckets.count(lo, hi, page, "moved to parent" if fb.real_dir != own_dir else "equal")
            return 0
        va, vb = fa.view[oa:oa + hi - lo], fb.view[ob:ob + hi - lo]
        mapped = 2 * max(hi - lo, FAULT_AROUND)
        if hmac.compare_digest(va, vb):
            buckets.count(lo, hi, page, "equal")
            return mapped
        for off in range(0, hi - lo, page):
            old, new = va[off:off + page], vb[off:off + page]
            target = buckets.at(lo + off)
            if hmac.compare_digest(old, new):
                target.counts["equal"] += 1
                continue
            target.counts["changed"] += 1
            target.changed.add(lo + off, page)
            if self.page_ranges:
                target.ranges[lo + off] = _byte_ranges(old, new)
        return mapped


def _release(files: list) -> int:
    for pages in files:
        pages.release()
    return 0


class _Buckets:
    """A Bucket per VMA: the newer dump's VMA holding the address, else the older dump's (memory the newer dump
    no longer maps), else "outside known VMAs" (key (None, None))."""

    def __init__(self, newer: list[Vma], older: list[Vma]) -> None:
        self.found: dict[tuple, Bucket] = {}
        self.sides = [(vmas, [v.start for v in vmas]) for vmas in (newer, older) if vmas]

    def at(self, addr: int) -> Bucket:
        return self.span(addr)[0]

    def span(self, addr: int) -> tuple[Bucket, int]:
        """The bucket of ``addr`` and where it stops applying (the end of the VMA, or the start of the next)."""
        key: tuple = (None, None)
        stop = 1 << 64
        for vmas, starts in self.sides:
            i = bisect_right(starts, addr) - 1
            if i >= 0 and addr < vmas[i].end:
                key, stop = (vmas[i].start, vmas[i].end), min(stop, vmas[i].end)
                break
            if i + 1 < len(vmas):   # a VMA of this side starts later: the bucket may change there
                stop = min(stop, vmas[i + 1].start)
        bucket = self.found.get(key)
        if bucket is None:
            bucket = self.found[key] = Bucket()
        return bucket, stop

    def count(self, lo: int, hi: int, page: int, kind: str) -> None:
        """Count the pages of ``[lo, hi)`` as ``kind``, each in its VMA's bucket."""
        while lo < hi:
            bucket, stop = self.span(lo)
            stop = min(hi, stop)
            bucket.counts[kind] += (stop - lo) // page
            lo = stop


def _bucket_order(item: tuple[tuple, Bucket]) -> tuple:
    """Buckets by address, "outside known VMAs" last (its key is (None, None))."""
    (start, end), _ = item
    return (start is None, start or 0, end or 0)


class ProgressSink(Protocol):
    def advance(self, n: int) -> None: ...

    def close(self) -> None: ...


# Called with the number of bytes the comparison will read; returns what to tell as it goes (or None: nothing).
# The caller (the command line) decides whether and how to show it: analysis draws nothing.
ProgressFactory = Callable[[int], ProgressSink | None]
