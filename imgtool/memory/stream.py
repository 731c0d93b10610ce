"""The streaming read: a task's memory in address-ordered chunks, the one walk that search, extraction and
scans build on.

``chunks(space, start, end, size, overlap)`` yields a ``Chunk`` per stretch of at most ``size`` addresses.
A chunk lies in one VMA (``chunk.vma``; None for dumped bytes outside every VMA) and, unless ``fill``, in one
run of address-contiguous dumped bytes.  Its data is the chunk proper, ``[vaddr, end)``, followed by up to
``overlap`` more bytes continuing the run (possibly into the next VMA), so a match of up to ``overlap + 1``
bytes that starts in the chunk is whole in its data.  The contract (volatility3's scanners): a scanner
reports only matches STARTING below ``chunk.end``; the next chunk begins there, so a match across a chunk
boundary is found exactly once.

Without ``fill`` only dumped bytes come, and never across a gap; with ``fill`` every address of
``[start, end)`` comes, gaps (and addresses outside every VMA) as zeros.

Bytes are read with pread into one reused buffer: one kernel copy, nothing mapped, so RSS stays flat
however large the dump, and no ``mmap.find`` (CPython 3.11.2 reads past the end of a mapping there,
gh-105235).  ``chunk.buffer`` is valid until the next chunk is asked for; copy what must outlive it.  The
walk holds only the extents around the chunk (``AddressSpace.around``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import NamedTuple

from imgtool.memory.extents import ExtentIndex
from imgtool.memory.space import AddressSpace
from imgtool.memory.vma import Vma

CHUNK = 2 << 20          # addresses per chunk by default: 'mem search (2-dump chain)' is as fast as with 8 MiB, 6 MiB
                         # less peak RSS (the buffer)
WINDOW = 64 << 20        # most addresses one chunk spans, whatever ``size`` (the extents held per step)
END = 1 << 64            # the end of the address space


class Chunk(NamedTuple):
    """Bytes ``[vaddr, vaddr + length)`` in ``buffer[:length]``: the chunk proper ``[vaddr, end)``, then its
    overlap."""

    vaddr: int
    buffer: bytearray      # reused: valid until the next chunk; may be longer than ``length``
    length: int
    end: int               # scanners report only matches starting below this
    vma: Vma | None        # the VMA holding ``[vaddr, end)``
    extents: ExtentIndex   # holds the extents of the bytes (valid until the next chunk): ``locate`` a byte

    @property
    def size(self) -> int:
        """Addresses in the chunk proper (without the overlap)."""
        return self.end - self.vaddr

    @property
    def data(self) -> memoryview:
        """The bytes, chunk and overlap (a view of the reused buffer)."""
        return memoryview(self.buffer)[:self.length]


def chunks(space: AddressSpace, start: int | None = None, end: int | None = None, size: int = CHUNK,
           overlap: int = 0, *, fill: bool = False, walk: str = "stream") -> Iterator[Chunk]:
    """The chunks of ``[start, end)`` (default: all memory) in address order; see the module docstring.

    ``walk`` names the cursor the walk uses (two walks of one space at once need two names).
    """
    if size < 1 or overlap < 0:
        raise ValueError(f"chunk size {size} must be positive and overlap {overlap} not negative")
    start = 0 if start is None else start
    end = (space.vmas[-1].end if fill and space.vmas else END) if end is None else end
    step = min(size, WINDOW)
    buffer = bytearray(min(step, max(end - start, 0)) + overlap)    # one buffer for every chunk: no allocating
    walker = _filled if fill else _dumped
    yield from walker(space, start, end, step, overlap, buffer, walk)


def _dumped(space: AddressSpace, pos: int, end: int, step: int, overlap: int, buffer: bytearray,
            walk: str) -> Iterator[Chunk]:
    while pos < end:
        hi = min(pos + step, end)
        held = space.around(pos, hi + overlap, walk)
        i = bisect_right(held.ends, pos)          # the first extent that ends after pos
        if i == len(held):
            return
        if held.starts[i] > pos:                  # a gap: go on at the next dumped byte
            pos = held.starts[i]
            continue
        vma, limit = space.vma_span(pos)
        stop = min(hi, limit, _run_end(held, i, hi))
        data_end = min(_run_end(held, i, stop + overlap), stop + overlap, end)
        yield Chunk(pos, _read(held, pos, data_end, buffer), data_end - pos, stop, vma, held)
        pos = stop


def _filled(space: AddressSpace, pos: int, end: int, step: int, overlap: int, buffer: bytearray,
            walk: str) -> Iterator[Chunk]:
    while pos < end:
        vma, limit = space.vma_span(pos)
        hi = min(pos + step, end, limit)
        held = space.around(pos, hi + overlap, walk)
        # 'full read of 1 task (of 4)': a chunk ends where the extent straddling its end begins, so no extent
        # shorter than a chunk takes two reads
        stop = held.cut(pos, hi)
        data_end = min(stop + overlap, end)
        yield Chunk(pos, _read(held, pos, data_end, buffer, zeroed=False), data_end - pos, stop, vma, held)
        pos = stop


def _run_end(held: ExtentIndex, i: int, limit: int) -> int:
    """Where the address-contiguous run of extents from extent ``i`` ends (looking no further than ``limit``)."""
    starts, ends, count = held.starts, held.ends, len(held)
    end = ends[i]
    i += 1
    while end < limit and i < count and starts[i] == end:
        end = ends[i]
        i += 1
    return end


def _read(held: ExtentIndex, lo: int, hi: int, buffer: bytearray, zeroed: bool = True) -> bytearray:
    """``buffer`` (or a bigger one, for an overlap longer than planned) holding the bytes of ``[lo, hi)``.

    ``zeroed``: the range has no gaps, so nothing needs zeroing."""
    if hi - lo > len(buffer):
        buffer = bytearray(hi - lo)
    with memoryview(buffer) as view:
        held.copy_into(view[:hi - lo], lo, zeroed=zeroed)
    return buffer


__all__ = ["CHUNK", "WINDOW", "Chunk", "chunks"]
