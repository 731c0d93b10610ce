"""Search process memory for bytes, strings or regular expressions.

Built on the streaming read (``stream.chunks``): only dumped data is scanned, each run of address-contiguous
dumped bytes on its own, so a match never spans a gap.  A chunk is searched with the ``overlap`` bytes after
it (needle length - 1 for literals, a configurable window for regexes) and only matches STARTING inside the
chunk proper are kept, so a match across a chunk boundary is found exactly once (volatility3's scanner
contract).  Each chunk's data is in a bytearray filled with pread, searched with ``bytearray.find`` or
``re``: never ``mmap.find``, which reads past the end of a mapping on CPython 3.11.2 (gh-105235).

A literal (``Literal``, the common case) takes a faster path with the same results: ``filescan`` scans each
pages file in file order where the task's extents lie and maps the hits back to addresses, so a fragmented
pagemap costs no Python work per extent; what it does not cover goes the walk above.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

from imgtool.errors import ImgtoolError, SearchError
from imgtool.memory import filescan
from imgtool.memory.sources import TaskSet
from imgtool.memory.space import AddressSpace, address_space
from imgtool.memory.stream import CHUNK, WINDOW, Chunk, chunks
from imgtool.memory.vma import Vma

PROGRESS_EVERY = 1 << 20     # scanned bytes between progress reports
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


class _Progress:
    """Reports scanned bytes every PROGRESS_EVERY."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress, self.unreported = progress, 0

    def add(self, size: int) -> None:
        self.unreported += size
        if self.unreported >= PROGRESS_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.progress is not None and self.unreported:
            self.progress(self.unreported)
        self.unreported = 0


def search_space(space: AddressSpace, pattern: Pattern, *, context: int = 16, chunk: int = CHUNK,
                 progress: Callable[[int], None] | None = None) -> Iterator[Hit]:
    """Every match in the dumped memory of one task, in address order.

    A literal is searched in file order (``filescan``: each pages file scanned where the task's extents lie,
    hits mapped back to addresses), a window of extents at a time; a window it does not cover, and any other
    pattern, take the plain walk over ``stream.chunks`` (``_walked``).  Both find the same hits with the same
    context (tests/test_filescan.py compares them).
    """
    if chunk < 1:
        raise SearchError("the chunk size must be at least 1 byte")
    meter = _Progress(progress)
    try:
        if type(pattern) is Literal:
            yield from _file_order(space, pattern, context, chunk, meter)
        else:
            yield from _walked(space, pattern, context, chunk, meter)
    finally:
        meter.flush()


def _file_order(space: AddressSpace, pattern: Literal, context: int, chunk: int, meter: _Progress) -> Iterator[Hit]:
    """``search_space`` for a literal: window by window in file order (see ``filescan``)."""
    done = 0       # every address below this is searched
    windows, scanner = filescan.windows(space), filescan.Scanner(pattern.needle, context)
    while True:
        try:
            window = next(windows, None)
        except ImgtoolError:          # the walk in address order meets the error where it would
            yield from _walked(space, pattern, context, chunk, meter, done)
            return
        if window is None:
            return
        found = scanner.hits(window)
        lo, hi = window.starts[0], window.ends[-1]
        if found is None:
            yield from _walked(space, pattern, context, chunk, meter, lo, hi)
        else:
            for vaddr, before, after, pages, offset in found:
                yield Hit(space.pid, vaddr, space.vma_at(vaddr), bytes(pattern.needle), before, after,
                          str(pages.path), offset)
            meter.add(scanner.dumped)
        done = hi


def _walked(space: AddressSpace, pattern: Pattern, context: int, chunk: int, meter: _Progress,
            start: int | None = None, end: int | None = None) -> Iterator[Hit]:
    """The matches in ``[start, end)`` by a walk over ``stream.chunks`` in address order.

    The chunks' overlap holds ``context`` bytes more, for the context after a match; the context before it is
    kept from the chunks before (``_Before``).
    """
    before = _Before(context)
    floor = 0             # where the next match may start (regex matches do not overlap)
    for piece in chunks(space, start, end, size=chunk, overlap=pattern.overlap + context, walk="search"):
        for vaddr, length in _matches(piece, pattern, floor):
            floor = pattern.resume(vaddr, vaddr + length)
            yield _hit(space, piece, before, vaddr, length, context)
        before.keep(piece)
        meter.add(piece.size)


def _matches(piece: Chunk, pattern: Pattern, floor: int) -> Iterator[tuple[int, int]]:
    """(vaddr, length) of the matches starting in the chunk proper, not below ``floor``."""
    base, proper = piece.vaddr, piece.end - piece.vaddr
    limit = min(piece.length, proper + pattern.overlap)      # the context bytes past that are not searched
    for start, stop in pattern.finditer(piece.buffer, max(floor - base, 0), limit):
        if start >= proper:
            return
        yield base + start, stop - start


class _Before:
    """The last ``context`` bytes of the run so far: the context before a match at a chunk's start."""

    def __init__(self, context: int) -> None:
        self.context, self.end, self.tail = context, -1, b""

    def bytes_before(self, piece: Chunk, offset: int) -> bytes:
        """The ``context`` bytes before ``offset`` in ``piece``, the earlier chunks' ones included."""
        own = bytes(piece.buffer[max(offset - self.context, 0):offset])
        if len(own) == self.context or self.end != piece.vaddr:
            return own
        return (self.tail + own)[-self.context:] if self.context else b""

    def keep(self, piece: Chunk) -> None:
        if not self.context:
            return
        self.tail = self.bytes_before(piece, piece.size)
        self.end = piece.end


def _hit(space: AddressSpace, piece: Chunk, before: _Before, vaddr: int, length: int, context: int) -> Hit:
    offset = vaddr - piece.vaddr
    data = piece.buffer
    after = bytes(data[offset + length:min(offset + length + context, piece.length)])
    pages, pages_offset = piece.extents.locate(vaddr) or (None, -1)
    return Hit(space.pid, vaddr, piece.vma, bytes(data[offset:offset + length]), before.bytes_before(piece, offset),
               after, str(pages.path) if pages is not None else "", pages_offset)


def spaces(dump: TaskSet, pids: Iterable[int] | None = None) -> Iterator[AddressSpace]:
    """Address spaces of the tasks with memory (all, or those in ``pids``, in that order), built one at a time
    (fresh ones, not ``task.memory``: nothing of one is kept once it has been walked)."""
    tasks = [dump.task(pid) for pid in pids] if pids is not None else dump.tasks
    for task in tasks:
        if task.mm is not None:
            yield address_space(task)


def search_dump(dump: TaskSet, pattern: Pattern, *, pids: Iterable[int] | None = None, context: int = 16,
                chunk: int = CHUNK, progress: Callable[[int], None] | None = None) -> Iterator[Hit]:
    """Every match in every task (pstree order), each task's view of shared memory included."""
    for space in spaces(dump, pids):
        yield from search_space(space, pattern, context=context, chunk=chunk, progress=progress)


__all__ = ["CHUNK", "REGEX_WINDOW", "WINDOW", "Hit", "Literal", "Pattern", "Regex", "SearchError", "any_of",
           "search_dump", "search_space", "spaces"]
