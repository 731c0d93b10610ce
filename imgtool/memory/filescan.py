"""A literal search in file order: each pages file scanned where a task's extents lie, hits mapped back to
addresses (the fast path of ``search.search_space`` for ``Literal`` patterns).

Scanning a pages file front to back with ``bytearray.find`` costs what a plain scan of the file costs, however
fragmented the pagemap; walking a task in address order costs Python work per extent.  A task's extents are
taken a window at a time (``windows``: whole runs of address-contiguous dumped bytes, cut at gaps, so memory
stays bounded) and ``literal_hits`` finds every occurrence in one window:

* in file order: every file-contiguous stretch of the window's extents is scanned; a hit counts when its bytes
  are contiguous in the address space too (within one extent, or across file neighbours that are address
  neighbours as well).  A match across file neighbours that are not address neighbours is not real.
* at seams: where two address neighbours are not file neighbours (a page of the parent dump next to one of
  the child, or pages written out of order), the needle length - 1 bytes on each side are read (from the two
  extents' files, all seams of a window side by side in one buffer; by address, in clusters, where an extent
  shorter than that lets a match cross several seams) and the matches crossing it kept: a match across a real
  page boundary whose pages sit apart in the files.

Every match is found exactly once, either way; the context bytes stop at the ends of the run, as the address
order walk's do.  A window whose extents share file bytes (one shared page mapped twice) is not covered:
``literal_hits`` returns None and the caller walks it in address order.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import compress, repeat
from operator import add, and_, eq, gt, le, ne, not_, or_, sub

from imgtool.memory.extents import ExtentIndex
from imgtool.memory.pages import PagesFile
from imgtool.memory.space import AddressSpace

BLOCK = 4 << 20           # bytes of a pages file per read
WINDOW_EXTENTS = 2048     # extents per window, then cut at the next gap: memory does not grow with them
SPAN_GAP = 64 << 10       # file bytes between two stretches of extents read over rather than seeked past
SEAM_GAP = 256            # address bytes between two seams' neighbourhoods read over rather than apart

FileHit = tuple[int, bytes, bytes, PagesFile, int]   # vaddr, before, after, pages file, offset there


def windows(space: AddressSpace) -> Iterator[ExtentIndex]:
    """Every extent of ``space`` in address order, a window (of whole runs) at a time."""
    window = ExtentIndex()
    for segment in space._stream():     # the streamed walk: the space itself stays unindexed
        at, count = 0, len(segment)
        while at < count:
            take = max(WINDOW_EXTENTS - len(window), 0)
            if at + take >= count:
                window.extend_from(segment, at, count)
                break
            cut = max(at + take, 1)       # cut the window at the first gap from here on (0: before the segment)
            gap = 0 if at + take == 0 and len(window) and segment.starts[0] > window.ends[-1] else \
                next(compress(range(cut, count), map(ne, segment.starts[cut:], segment.ends[cut - 1:])), None)
            if gap is None:
                window.extend_from(segment, at, count)
                break
            window.extend_from(segment, at, gap)
            if len(window):
                yield window
            window = ExtentIndex()
            at = gap
    if len(window):
        yield window


class Scanner:
    """Finds a literal in windows (``hits``), with one read buffer for all of them."""

    def __init__(self, needle: bytes, context: int) -> None:
        self.needle, self.context = needle, context
        self.buffer = bytearray()
        self.dumped = 0          # bytes the last window holds

    def hits(self, window: ExtentIndex) -> list[FileHit] | None:
        return literal_hits(window, self.needle, self.context, self)

    def room(self, size: int) -> bytearray:
        """The buffer, at least ``size`` bytes long (grown up to what the biggest read needs)."""
        if len(self.buffer) < size:
            self.buffer = bytearray(size)
        return self.buffer


def literal_hits(window: ExtentIndex, needle: bytes, context: int, scanner: Scanner | None = None
                 ) -> list[FileHit] | None:
    """Every occurrence of ``needle`` in the window's dumped bytes, in address order (None: not covered)."""
    scanner = scanner if scanner is not None else Scanner(needle, context)
    starts, ends, file_ids, offsets = window.starts, window.ends, window.file_ids, window.offsets
    size = len(needle)
    found: list[tuple[int, int, int]] = []      # vaddr, file id, offset
    every = range(len(window))
    scanner.dumped = 0
    for file_id in range(len(window.files)):
        single = len(window.files) == 1
        chosen: Sequence[int] = every if single else list(compress(every, map(eq, file_ids, repeat(file_id))))
        if not chosen:
            continue
        offs, lens = _columns(window, chosen, single)
        stops = list(map(add, offs, lens))
        if not all(map(le, stops, offs[1:])):           # not in address order in the file, or overlapping
            chosen = sorted(chosen, key=offsets.__getitem__)
            offs, lens = _columns(window, chosen, False)
            stops = list(map(add, offs, lens))
            if not all(map(le, stops, offs[1:])):       # two extents share file bytes
                return None
        dumped = sum(lens)
        scanner.dumped += dumped
        _scan_file(window, window.files[file_id], needle, chosen, offs, stops, found, scanner,
                   stops[-1] - offs[0] - dumped <= SPAN_GAP)
    found.extend(_seam_hits(window, needle))
    if not found:
        return []
    found.sort()
    runs_lo, runs_hi = _runs(starts, ends)
    files = window.files
    out: list[FileHit] = []
    for vaddr, file_id, offset in found:
        r = bisect_right(runs_lo, vaddr) - 1
        lo, hi = max(runs_lo[r], vaddr - context), min(runs_hi[r], vaddr + size + context)
        data = window.copy(lo, hi) if context else b""      # one read: context, match and context
        out.append((vaddr, bytes(data[:vaddr - lo]), bytes(data[vaddr + size - lo:]), files[file_id], offset))
    return out


def _columns(window: ExtentIndex, chosen: Sequence[int], every: bool) -> tuple[list[int], list[int]]:
    """File offsets and lengths of the chosen extents (``every``: all of them, in order)."""
    starts, ends = window.starts, window.ends
    if every:
        return list(window.offsets), list(map(sub, ends, starts))
    return (list(map(window.offsets.__getitem__, chosen)),
            list(map(sub, map(ends.__getitem__, chosen), map(starts.__getitem__, chosen))))


def _runs(starts, ends) -> tuple[list[int], list[int]]:
    """Starts and ends of the runs of address-contiguous extents."""
    breaks = list(compress(range(1, len(starts)), map(ne, starts[1:], ends)))
    return [starts[0], *map(starts.__getitem__, breaks)], [*map(ends.__getitem__, map((-1).__add__, breaks)),
                                                            ends[-1]]


def _scan_file(window: ExtentIndex, pages: PagesFile, needle: bytes, chosen: list[int], offs: list[int],
               stops: list[int], found: list[tuple[int, int, int]], scanner: Scanner, whole: bool) -> None:
    """Add the real matches of ``needle`` in the stretches of ``pages`` the chosen extents (in file order) hold."""
    size, starts, ends = len(needle), window.starts, window.ends
    file_id = window.file_ids[chosen[0]]
    # stretches read in one go: extents less than SPAN_GAP apart in the file
    # (``whole``: the holes between them add up to less than that)
    cuts = [] if whole else list(compress(range(1, len(offs)), map(gt, offs[1:], map(add, stops, repeat(SPAN_GAP)))))
    firsts, lasts = [0, *cuts], [*map((-1).__add__, cuts), len(offs) - 1]
    fd, base, preadv = pages.fd(), pages.base, os.preadv
    for first, last in zip(firsts, lasts, strict=True):
        pos, end = offs[first], stops[last]
        buffer = scanner.room(min(BLOCK, end - pos) + size - 1)
        view = memoryview(buffer)
        while pos < end:
            take = min(BLOCK, end - pos)
            want = min(take + size - 1, end - pos)
            part = view[:want]
            if preadv(fd, (part,), base + pos) != want:
                pages.read_into(part, pos)
            at = buffer.find(needle, 0, want)
            while 0 <= at < take:
                where = pos + at
                k = bisect_right(offs, where) - 1
                if where < stops[k] and (where + size <= stops[k]
                                         or _joined(offs, stops, chosen, starts, ends, k, where + size)):
                    found.append((starts[chosen[k]] + where - offs[k], file_id, where))
                at = buffer.find(needle, at + 1, want)
            pos += take
        view.release()


def _joined(offs: list[int], stops: list[int], chosen: list[int], starts, ends, k: int, stop: int) -> bool:
    """Whether the file bytes from extent ``k`` on up to ``stop`` are contiguous addresses too."""
    while stops[k] < stop:
        if k + 1 == len(offs) or offs[k + 1] != stops[k] or starts[chosen[k + 1]] != ends[chosen[k]]:
            return False
        k += 1
    return True


def _seam_hits(window: ExtentIndex, needle: bytes) -> list[tuple[int, int, int]]:
    """Matches crossing a seam: address neighbours that are not file neighbours."""
    size = len(needle)
    starts, ends, file_ids, offsets = window.starts, window.ends, window.file_ids, window.offsets
    if size < 2 or len(starts) < 2:
        return []
    touching = list(compress(range(1, len(starts)), map(eq, starts[1:], ends)))    # address neighbours
    before = list(map((-1).__add__, touching))
    lengths = map(sub, map(ends.__getitem__, before), map(starts.__getitem__, before))
    follows = map(add, map(offsets.__getitem__, before), lengths)        # file offset just past the one before
    apart = map(or_, map(ne, map(file_ids.__getitem__, touching), map(file_ids.__getitem__, before)),
                map(ne, map(offsets.__getitem__, touching), follows))
    at_seam = list(compress(touching, apart))      # extent after each seam
    if not at_seam:
        return []
    # a seam between extents of at least size - 1 bytes each: no match crosses another seam too, and the bytes
    # around it are those ends of the two extents (read straight from their files); the others, where
    # a short extent lets a match cross several seams, by address in clusters
    room = size - 1
    wide = list(map(le, repeat(room), map(sub, ends, starts)))
    simple = list(map(and_, map(wide.__getitem__, at_seam), map(wide.__getitem__, map((-1).__add__, at_seam))))
    found = _simple_seams(window, needle, list(compress(at_seam, simple)))
    seams = list(map(starts.__getitem__, compress(at_seam, map(not_, simple))))
    if not seams:
        return found
    runs_lo, runs_hi = _runs(starts, ends)
    i = 0
    while i < len(seams):
        r = bisect_right(runs_lo, seams[i]) - 1
        lo, hi = max(runs_lo[r], seams[i] - size + 1), min(runs_hi[r], seams[i] + size - 1)
        j = i + 1
        while j < len(seams) and seams[j] - size + 1 <= hi + SEAM_GAP and seams[j] < runs_hi[r]:
            hi = min(runs_hi[r], seams[j] + size - 1)
            j += 1
        data = window.copy(lo, hi)
        at = data.find(needle)
        while at >= 0:
            vaddr = lo + at
            s = bisect_right(seams, vaddr)     # the first seam above the match's start
            if s < len(seams) and seams[s] < vaddr + size:
                e = bisect_right(starts, vaddr) - 1
                found.append((vaddr, file_ids[e], offsets[e] + vaddr - starts[e]))
            at = data.find(needle, at + 1)
        i = j
    return found


def _simple_seams(window: ExtentIndex, needle: bytes, after: list[int]) -> list[tuple[int, int, int]]:
    """Matches across the seams before extents ``after``, each with at least ``size - 1`` bytes on both sides:
    those bytes of every seam side by side in one buffer, searched at once."""
    if not after:
        return []
    size = len(needle)
    room, width = size - 1, 2 * (size - 1)
    starts, ends, file_ids, offsets, files = window.starts, window.ends, window.file_ids, window.offsets, window.files
    fds, bases = [pages.fd() for pages in files], [pages.base for pages in files]
    data = bytearray(width * len(after))
    preadv, found = os.preadv, []
    with memoryview(data) as view:
        at = 0
        for e in after:
            left, tail = file_ids[e - 1], offsets[e - 1] + ends[e - 1] - starts[e - 1] - room
            part = view[at:at + room]
            if preadv(fds[left], (part,), bases[left] + tail) != room:
                files[left].read_into(part, tail)
            part = view[at + room:at + width]
            if preadv(fds[file_ids[e]], (part,), bases[file_ids[e]] + offsets[e]) != room:
                files[file_ids[e]].read_into(part, offsets[e])
            at += width
    at = data.find(needle)
    while at >= 0:
        j, q = divmod(at, width)
        if q + size <= width:       # within one seam's bytes (so across it)
            e = after[j]
            tail = offsets[e - 1] + ends[e - 1] - starts[e - 1] - room
            found.append((starts[e] - room + q, file_ids[e - 1], tail + q))
        at = data.find(needle, at + 1)
    return found


__all__ = ["BLOCK", "FileHit", "Scanner", "literal_hits", "windows"]
