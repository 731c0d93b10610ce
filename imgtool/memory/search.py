"""Search process memory for bytes, strings or regular expressions; extract ranges to files.

Only dumped data is scanned: each run of address-contiguous dumped bytes on
its own, so a match never spans a gap.  The memory is walked in address order
in steps of WINDOW addresses, streamed from the pagemaps (only the extents of
one step are held, ``AddressSpace.around``); a run is cut into windows of
``chunk`` bytes; a window is searched together with the
``overlap`` bytes after it (needle length - 1 for literals, a configurable
window for regexes) and only matches STARTING inside the window are kept,
so a match across a window boundary is found exactly once (volatility3's
scanner contract).

A window lying inside one extent is searched in place: ``mmap.find`` /
``re.finditer`` on the mmapped pages file, no copy.  Only windows that cross
extent seams (pages from different files or offsets) are copied, at most
``chunk + overlap`` bytes.  The pages files' mappings are dropped
(MADV_DONTNEED; the page cache keeps the data) after every 2 MiB scanned, so
RSS stays flat however large the dump.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, NamedTuple, Protocol

from imgtool.errors import SearchError
from imgtool.memory.space import AddressSpace, ExtentIndex, ExtentSpan, Run, Vma, address_space

if TYPE_CHECKING:
    from imgtool.model.dump import Dump

CHUNK = 8 << 20              # bytes searched per window
EXTRACT_CHUNK = 1 << 20      # bytes extracted per write: a buffer that stays in the CPU caches
WINDOW = 64 << 20            # addresses walked per step (only their extents are held)
RELEASE_EVERY = 2 << 20      # scanned bytes between MADV_DONTNEED of the pages files
PROGRESS_EVERY = 1 << 20     # scanned bytes between progress reports
DIRECT_MIN = 64 << 10        # an extent span this long (or a chunk, if smaller) is searched in place
REGEX_WINDOW = 4096          # default longest regex match, in bytes

Buffer = bytes | bytearray


# -- patterns -----------------------------------------------------------------------


class Pattern(Protocol):
    overlap: int     # bytes a match may reach past the window it starts in

    def finditer(self, buf: Buffer, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """(start, end) offsets in ``buf`` of matches inside ``buf[start:stop]``, in order."""
        ...

    def resume(self, start: int, end: int) -> int:
        """Where the next match may start after one at ``[start, end)``."""
        ...


class Literal:
    """A byte string; every occurrence is reported, overlapping ones too."""

    def __init__(self, needle: bytes) -> None:
        if not needle:
            raise SearchError("the search string is empty")
        self.needle = needle
        self.overlap = len(needle) - 1

    def __repr__(self) -> str:
        return f"Literal({self.needle!r})"

    def finditer(self, buf: Buffer, start: int, stop: int) -> Iterator[tuple[int, int]]:
        needle, find, size = self.needle, buf.find, len(self.needle)
        at = find(needle, start, stop)
        while at >= 0:
            yield at, at + size
            at = find(needle, at + 1, stop)

    def resume(self, start: int, end: int) -> int:
        return start + 1


class Regex:
    """A bytes regular expression (DOTALL); matches longer than ``window`` bytes are cut there.

    Matches do not overlap, as with ``re.finditer`` over the whole run.
    """

    def __init__(self, pattern: bytes | str, window: int = REGEX_WINDOW, flags: int = re.DOTALL) -> None:
        if isinstance(pattern, str):
            pattern = pattern.encode("utf-8", "surrogateescape")
        try:
            self.regex = re.compile(pattern, flags)
        except re.error as exc:
            raise SearchError(f"invalid regular expression {pattern!r}: {exc}") from None
        if window < 1:
            raise SearchError("the regex window must be at least 1 byte")
        self.overlap = window

    def __repr__(self) -> str:
        return f"Regex({self.regex.pattern!r})"

    def finditer(self, buf: Buffer, start: int, stop: int) -> Iterator[tuple[int, int]]:
        for match in self.regex.finditer(buf, start, stop):
            yield match.span()

    def resume(self, start: int, end: int) -> int:
        return end if end > start else start + 1


def any_of(needles: Iterable[bytes]) -> Regex:
    """Several literals at once (alternation); the overlap is the longest needle - 1."""
    needles = sorted(set(needles), key=len, reverse=True)
    if not needles or not all(needles):
        raise SearchError("give at least one non-empty search string")
    return Regex(b"|".join(map(re.escape, needles)), window=max(1, len(needles[0]) - 1))


# -- scanning -----------------------------------------------------------------------


class Hit(NamedTuple):
    """One match: where it is and what surrounds it (context stops at the run's ends)."""

    pid: int
    vaddr: int
    vma: Vma | None
    match: bytes
    before: bytes
    after: bytes
    file: str          # pages file holding the first byte (maybe in a parent dump)
    offset: int        # its offset there

    @property
    def length(self) -> int:
        return len(self.match)

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "vaddr": self.vaddr, "length": self.length,
                "vma": self.vma.to_json() if self.vma is not None else None,
                "match": self.match.hex(), "before": self.before.hex(), "after": self.after.hex(),
                "file": self.file, "offset": self.offset}


class _Meter:
    """Counts scanned bytes: reports progress every MiB and releases the pages files every RELEASE_EVERY."""

    def __init__(self, space: AddressSpace, progress: Callable[[int], None] | None) -> None:
        self.space, self.progress = space, progress
        self.unreported = self.unreleased = 0

    def add(self, size: int) -> None:
        self.unreported += size
        self.unreleased += size
        if self.unreported >= PROGRESS_EVERY:
            self._report()
        if self.unreleased >= RELEASE_EVERY:
            self._release()

    def _report(self) -> None:
        if self.progress is not None and self.unreported:
            self.progress(self.unreported)
        self.unreported = 0

    def _release(self) -> None:
        for pages in self.space.files:
            pages.release()
        self.unreleased = 0

    def flush(self) -> None:
        self._report()
        self._release()


def _windows(run: Run, overlap: int, chunk: int, until: int) -> Iterator[tuple[Buffer, int, int, int]]:
    """(buffer, buffer offset of ``pos``, pos, stop) per window from the run's start to ``until``; the buffer holds
    ``[pos, stop + overlap)`` clipped to the run.  In-place windows index the pages file itself; the others are
    copied, up to where an extent long enough to search in place starts.  The run's first and last extents
    may reach past its ends.
    """
    extents, end = run.extents, run.end
    direct_min = max(overlap + 1, min(chunk, DIRECT_MIN))
    i, pos, ext = 0, run.vaddr, extents[0]
    while pos < until:
        while ext.end <= pos:
            i += 1
            ext = extents[i]
        last = ext.end >= end                       # no seam ahead: searching in place is always possible
        direct_stop = until if last else ext.end - overlap
        if last or direct_stop - pos >= direct_min:
            stop = min(pos + chunk, direct_stop, until)
            yield ext.pages.data, ext.offset + pos - ext.vaddr, pos, stop
        else:
            limit = min(pos + chunk, until)
            stop = extents.next_long(i, limit, overlap + direct_min) or limit
            yield extents.copy(pos, min(stop + overlap, end)), 0, pos, stop
        pos = stop


def scan_run(run: Run, pattern: Pattern, chunk: int = CHUNK, meter: _Meter | None = None, until: int | None = None,
             floor: int = 0) -> Iterator[tuple[int, int]]:
    """(vaddr, length) of every match inside ``run`` that starts below ``until`` (default: the run's end) and not
    below ``floor``; the bytes from ``until`` to the run's end serve matches that cross it."""
    end = run.end
    until = end if until is None else until
    floor = max(floor, run.vaddr)
    if len(run.extents) == 1 and until - run.vaddr <= chunk:   # one window, in place: skip the window machinery
        ext = run.extents[0]
        shift = ext.offset - ext.vaddr
        for start, stop_at in pattern.finditer(ext.pages.data, floor + shift, end + shift):
            if start - shift >= until:
                break
            yield start - shift, stop_at - start
        if meter is not None:
            meter.add(until - run.vaddr)
        return
    for buf, base, pos, stop in _windows(run, pattern.overlap, chunk, until):
        limit = base + min(stop + pattern.overlap, end) - pos
        first = base + max(floor, pos) - pos
        for start, stop_at in pattern.finditer(buf, first, limit):
            if start >= base + stop - pos:
                break
            vaddr = pos + start - base
            yield vaddr, stop_at - start
            floor = pattern.resume(vaddr, vaddr + stop_at - start)
        if meter is not None:
            meter.add(stop - pos)


def search_space(space: AddressSpace, pattern: Pattern, *, context: int = 16, chunk: int = CHUNK,
                 progress: Callable[[int], None] | None = None) -> Iterator[Hit]:
    """Every match in the dumped memory of one task, in address order.

    The memory is walked in steps of WINDOW addresses, holding only the extents of the step (and of the
    overlap and context around it): a task of any size takes the same memory.
    """
    if chunk < 1:
        raise SearchError("the chunk size must be at least 1 byte")
    meter = _Meter(space, progress)
    margin = pattern.overlap + context
    pos = floor = 0
    try:
        while True:
            held = space.around(max(pos - context, 0), pos + WINDOW + margin, "search")
            first = bisect_right(held.ends, pos)        # the first extent that ends after pos
            if first == len(held):
                return
            if held.starts[first] >= pos + WINDOW:      # nothing dumped in this step: go to the next dumped byte
                pos = held.starts[first]
                continue
            for run, until, lo, hi in _chains(held, first, pos, pos + WINDOW, pattern.overlap, margin):
                for vaddr, length in scan_run(run, pattern, chunk, meter, until, floor):
                    floor = pattern.resume(vaddr, vaddr + length)
                    yield _hit(space, held, lo, hi, vaddr, length, context)
            pos += WINDOW
    finally:
        meter.flush()


def _chains(held: ExtentIndex, first: int, pos: int, stop: int, overlap: int,
            margin: int) -> Iterator[tuple[Run, int, int, int]]:
    """The address-contiguous chains of extents of ``held`` that reach into ``[pos, stop)``, from extent
    ``first``: (run to scan, where matches must start below, the chain's start and end as far as held tells,
    which is enough for the context of a match)."""
    starts, ends, count = held.starts, held.ends, len(held)
    i = first
    while i < count and starts[i] < stop:
        k, j = i, i + 1
        while k > 0 and starts[k] == ends[k - 1] and starts[k] > pos - margin:   # the chain began before pos
            k -= 1
        while j < count and starts[j] == ends[j - 1] and starts[j] < stop + margin:
            j += 1
        lo, hi = starts[k], ends[j - 1]
        begin, data_end = max(lo, pos), min(hi, stop + overlap)
        last = bisect_left(starts, data_end, i, j)
        yield Run(begin, data_end - begin, ExtentSpan(held, i, last)), min(hi, stop), lo, hi
        i = j


def _hit(space: AddressSpace, held: ExtentIndex, run_lo: int, run_hi: int, vaddr: int, length: int,
         context: int) -> Hit:
    lo, hi = max(run_lo, vaddr - context), min(run_hi, vaddr + length + context)
    data = bytes(held.copy(lo, hi))
    cut, tail = vaddr - lo, vaddr - lo + length
    pages, offset = held.locate(vaddr) or (None, -1)
    return Hit(space.pid, vaddr, space.vma_at(vaddr), data[cut:tail], data[:cut], data[tail:],
               str(pages.path) if pages is not None else "", offset)


def spaces(dump: Dump, pids: Iterable[int] | None = None) -> Iterator[AddressSpace]:
    """Address spaces of the tasks with memory (all, or those in ``pids``, in that order), built one at a time
    (fresh ones, not ``task.memory``: nothing of one is kept once it has been walked)."""
    tasks = [dump.task(pid) for pid in pids] if pids is not None else dump.tasks
    for task in tasks:
        if task.mm is not None:
            yield address_space(task)


def search_dump(dump: Dump, pattern: Pattern, *, pids: Iterable[int] | None = None, context: int = 16,
                chunk: int = CHUNK, progress: Callable[[int], None] | None = None) -> Iterator[Hit]:
    """Every match in every task (pstree order), each task's view of shared memory included."""
    for space in spaces(dump, pids):
        yield from search_space(space, pattern, context=context, chunk=chunk, progress=progress)


# -- extraction ---------------------------------------------------------------------


def extract(space: AddressSpace, start: int, end: int, out: IO[bytes], zero_fill: bool = True,
            chunk: int = EXTRACT_CHUNK) -> int:
    """Write ``[start, end)`` as the process saw it to ``out`` in chunks; return the byte count.

    The whole range is checked first, so nothing is written when it cannot be read.  The walk holds the
    extents of WINDOW addresses at a time; each chunk is read with pread into one buffer (nothing is mapped,
    so there is nothing to release) and ends where an extent begins, so no extent shorter than a chunk
    takes two reads.
    """
    if end < start:
        raise SearchError(f"range end {end:#x} is below its start {start:#x}")
    space.check(start, end - start, zero_fill)
    pos = start
    with memoryview(bytearray(min(chunk, end - start))) as buf:    # one buffer: no allocating and zeroing
        while pos < end:
            step_end = min(end, pos + WINDOW)
            extents = space.around(pos, step_end)
            while pos < step_end:
                stop = extents.cut(pos, min(step_end, pos + chunk))
                extents.copy_into(buf[:stop - pos], pos)
                out.write(buf[:stop - pos])
                pos = stop
    return end - start


__all__ = ["CHUNK", "Hit", "Literal", "Pattern", "Regex", "SearchError", "any_of", "extract", "scan_run",
           "search_dump", "search_space", "spaces"]
