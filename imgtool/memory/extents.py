"""Extents: address ranges mapped to slices of pages files, in sorted, bisect-able columns.

An ``ExtentIndex`` holds them (lists for the short-lived indexes of a walk, arrays for a whole task); a
``Cursor`` walks a resolved pagemap's indexes forward, holding only the extents around where it is.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import compress, repeat
from operator import add, and_, eq, gt, lt, sub
from typing import NamedTuple

from imgtool.memory.pages import PagesFile


class Extent(NamedTuple):
    """Dumped bytes ``[vaddr, vaddr + length)``, at ``offset`` in ``pages``."""

    vaddr: int
    length: int
    pages: PagesFile
    offset: int

    @property
    def end(self) -> int:
        return self.vaddr + self.length

    def view(self) -> memoryview:
        return self.pages.view[self.offset:self.offset + self.length]


class Run(NamedTuple):
    """Dumped bytes contiguous in the address space, possibly from several extents."""

    vaddr: int
    length: int
    extents: ExtentSpan

    @property
    def end(self) -> int:
        return self.vaddr + self.length


class ExtentSpan(Sequence[Extent]):
    """Extents ``lo:hi`` of an index, each made when it is asked for: a run of many extents takes no room."""

    __slots__ = ("_hi", "_index", "_lo")

    def __init__(self, index: ExtentIndex, lo: int, hi: int) -> None:
        self._index, self._lo, self._hi = index, lo, hi

    def __len__(self) -> int:
        return self._hi - self._lo

    def __getitem__(self, i):   # an int gives an Extent, a slice a tuple of them
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        at = (i + len(self) if i < 0 else i) + self._lo
        if not self._lo <= at < self._hi:
            raise IndexError(f"extent {i} of {len(self)}")
        index = self._index
        start = index.starts[at]
        return Extent(start, index.ends[at] - start, index.files[index.file_ids[at]], index.offsets[at])

    def copy(self, lo: int, hi: int) -> bytearray:
        """The bytes of addresses ``[lo, hi)`` (gaps, which a run has none of, read as zeros)."""
        return self._index.copy(lo, hi)


Column = list[int] | array    # a column of an ExtentIndex


class ExtentIndex:
    """Sorted, non-overlapping extents in parallel arrays (bisect on ``starts``).

    Neighbours contiguous both in memory and in the same pages file are
    merged as they are appended.  ``compact``: the columns are arrays (8 bytes an extent, for the index of a
    whole task); otherwise lists, which are faster to fill and to read, for the short-lived indexes of a walk.
    """

    def __init__(self, compact: bool = False) -> None:
        self.starts: Column = array("Q") if compact else []
        self.ends: Column = array("Q") if compact else []
        self.file_ids: Column = array("I") if compact else []
        self.offsets: Column = array("Q") if compact else []
        self.files: list[PagesFile] = []
        self._ids: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.starts)

    def file_id(self, pages: PagesFile) -> int:
        key = id(pages)
        if key not in self._ids:
            self._ids[key] = len(self.files)
            self.files.append(pages)
        return self._ids[key]

    def append(self, start: int, length: int, file_id: int, offset: int) -> None:
        """Add an extent after all others (raises ValueError if it overlaps or goes back)."""
        ends = self.ends
        if ends:
            last_end = ends[-1]
            if start < last_end:
                raise ValueError(f"{start:#x} is below the end {last_end:#x} of the previous range")
            if (start == last_end and file_id == self.file_ids[-1]
                    and offset == self.offsets[-1] + last_end - self.starts[-1]):
                ends[-1] = start + length
                return
        self.starts.append(start)
        ends.append(start + length)
        self.file_ids.append(file_id)
        self.offsets.append(offset)

    # Fast path for 'mem search (2-dump chain)' and 'diff --only memory (parent, child)': a batch of extents is
    # checked and appended by C-level map/extend, not one ``append`` each.
    def extend(self, starts: Sequence[int], ends: Sequence[int], file_ids: Sequence[int],
               offsets: Sequence[int], *, apart: bool = False) -> None:
        """``append`` each of these sorted, disjoint extents; in bulk when none continues the one before it.

        ``apart``: the caller knows that none of them continues the one before it (the first may still continue
        our last), so that is not checked.  Merging only saves room: extents left apart read the same.
        """
        if not len(starts):
            return
        self.append(starts[0], ends[0] - starts[0], file_ids[0], offsets[0])
        if len(starts) == 1:
            return
        follows = map(add, offsets, map(sub, ends, starts))     # file offset just past each extent
        touching = map(and_, map(eq, starts[1:], ends), map(and_, map(eq, file_ids[1:], file_ids),
                                                            map(eq, offsets[1:], follows)))
        if starts[1] < self.ends[-1] or (not apart and any(touching)):
            for start, end, file_id, offset in zip(starts[1:], ends[1:], file_ids[1:], offsets[1:], strict=True):
                self.append(start, end - start, file_id, offset)
            return
        self.starts.extend(starts[1:])
        self.ends.extend(ends[1:])
        self.file_ids.extend(file_ids[1:])
        self.offsets.extend(offsets[1:])

    def extend_from(self, source: ExtentIndex, lo: int, hi: int) -> None:
        """Append extents ``lo:hi`` of ``source`` (which must come after ours); they are apart already."""
        if lo >= hi:
            return
        ids = [self.file_id(pages) for pages in source.files]
        file_ids: Sequence[int] = source.file_ids[lo:hi]
        if ids != list(range(len(ids))):     # source numbers its files otherwise than we do
            file_ids = list(map(ids.__getitem__, file_ids))
        self.extend(source.starts[lo:hi], source.ends[lo:hi], file_ids, source.offsets[lo:hi], apart=True)

    def drop_front(self, count: int) -> None:
        """Forget the first ``count`` extents."""
        if count:
            for column in (self.starts, self.ends, self.file_ids, self.offsets):
                del column[:count]

    def slices(self, lo: int, hi: int) -> Iterator[tuple[int, int, PagesFile, int]]:
        """(start, end, pages file, file offset) of the dumped parts of ``[lo, hi)``, clipped to it."""
        starts, ends, offsets, file_ids, files = self.starts, self.ends, self.offsets, self.file_ids, self.files
        i = max(bisect_right(starts, lo) - 1, 0)
        n = len(starts)
        while i < n and starts[i] < hi:
            if ends[i] > lo:
                start = max(starts[i], lo)
                yield start, min(ends[i], hi), files[file_ids[i]], offsets[i] + start - starts[i]
            i += 1

    def locate(self, address: int) -> tuple[PagesFile, int] | None:
        """The pages file and offset holding the byte at ``address``, or None if it is not dumped."""
        found = next(self.slices(address, address + 1), None)
        return (found[2], found[3]) if found is not None else None

    def cut(self, lo: int, hi: int) -> int:
        """Where a read of ``[lo, hi)`` had best end: ``hi``, or the start of the extent that straddles it
        when that lies above ``lo`` (the next read then takes that extent whole)."""
        i = bisect_left(self.starts, hi) - 1
        if i >= 0 and self.ends[i] > hi and self.starts[i] > lo:
            return self.starts[i]
        return hi

    def copy(self, lo: int, hi: int) -> bytearray:
        """The bytes of ``[lo, hi)``; gaps are zeros."""
        out = bytearray(hi - lo)
        with memoryview(out) as dest:
            self.copy_into(dest, lo, zeroed=True)
        return out

    # Fast path for 'full read of 1 task (of 4)' and 'mem search (2-dump chain)': pread straight into the
    # caller's buffer, columns sliced once.
    def copy_into(self, dest: memoryview, lo: int, zeroed: bool = False) -> None:
        """Fill ``dest`` with the bytes from ``lo`` on; gaps are zeroed (unless ``zeroed``: they already are).

        Extents are read with pread: one kernel copy, no page faults, nothing mapped (so nothing to release).
        """
        hi = lo + len(dest)
        starts, files, pos = self.starts, self.files, lo
        fds, preadv = [pages.fd() for pages in files], os.preadv
        bases = [pages.base for pages in files]     # where each file's pages start in fd() (a tar member)
        i = max(bisect_right(starts, lo) - 1, 0)
        j = bisect_left(starts, hi, i)
        for start, end, file_id, offset in zip(starts[i:j], self.ends[i:j], self.file_ids[i:j], self.offsets[i:j],
                                               strict=True):
            if start < lo:
                offset, start = offset + lo - start, lo
            if end > hi:
                end = hi
            if end <= start:
                continue
            if start > pos and not zeroed:
                dest[pos - lo:start - lo] = bytes(start - pos)
            part = dest[start - lo:end - lo]
            if preadv(fds[file_id], (part,), bases[file_id] + offset) != end - start:   # cut short: read_into ends it
                files[file_id].read_into(part, offset)
            pos = end
        if pos < hi and not zeroed:
            dest[pos - lo:] = bytes(hi - pos)


# Fast path for 'open + summary --json': argv is read without indexing the whole task (cmdline_of).
class Window(ExtentIndex):
    """An ExtentIndex keeping only the extents that overlap ``[lo, hi)``: enough to read those bytes, and
    small however large the address space (``cmdline_of``)."""

    def __init__(self, lo: int, hi: int) -> None:
        super().__init__()
        self.lo, self.hi = lo, hi

    def overlapping(self, starts: Sequence[int], ends: Sequence[int]) -> list[bool]:
        return list(map(and_, map(lt, starts, repeat(self.hi)), map(gt, ends, repeat(self.lo))))

    def append(self, start: int, length: int, file_id: int, offset: int) -> None:
        if start < self.hi and start + length > self.lo:
            super().append(start, length, file_id, offset)

    def extend(self, starts: Sequence[int], ends: Sequence[int], file_ids: Sequence[int],
               offsets: Sequence[int], *, apart: bool = False) -> None:
        keep = self.overlapping(starts, ends)
        if not all(keep):
            starts, ends, file_ids, offsets = (list(compress(c, keep)) for c in (starts, ends, file_ids, offsets))
        super().extend(starts, ends, file_ids, offsets, apart=apart)


class Cursor:
    """The extents of a resolved pagemap around the ranges asked for, which must come in address order: a
    forward walk over its segments, keeping only what the latest range may still need."""

    def __init__(self, open_segments: Callable[[], Iterator[ExtentIndex] | None]) -> None:
        self._open: Callable[[], Iterator[ExtentIndex] | None] | None = open_segments
        self._segments: Iterator[ExtentIndex] | None = None
        self.held = ExtentIndex()

    def cover(self, lo: int, hi: int) -> ExtentIndex:
        """An index holding every extent that overlaps ``[lo, hi)`` (and perhaps a few after it)."""
        if self._open is not None:
            self._segments, self._open = self._open(), None
        held = self.held
        held.drop_front(bisect_right(held.ends, lo))
        while self._segments is not None and (not len(held) or held.ends[-1] < hi):
            segment = next(self._segments, None)
            if segment is None:
                self._segments = None
            else:
                held.extend_from(segment, bisect_right(segment.ends, lo), len(segment))
        return held


def joined(segments: Iterator[ExtentIndex]) -> ExtentIndex:
    """One index of every segment's extents."""
    index = ExtentIndex(compact=True)
    for segment in segments:
        index.extend_from(segment, 0, len(segment))
    return index


__all__ = ["Column", "Cursor", "Extent", "ExtentIndex", "ExtentSpan", "Run", "Window", "joined"]
