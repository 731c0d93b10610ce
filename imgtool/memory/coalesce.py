"""Pagemap coalescing: batches of pagemap entries -> runs of address-contiguous entries of one kind.

A run's kind says where its data is: PE_PRESENT (in this dump's pages file, at the running offset of the
earlier PE_PRESENT entries, criu/pagemap.c), PE_PARENT (at the same address in the parent dump) or 0 (not in
the dump: PE_LAZY without PE_PRESENT, or nothing).  The per-entry work is done by C-level
map/accumulate/compress ('decode pagemap', 'full read of 1 task (of 4)' rows of bench/run.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate, compress, pairwise
from operator import add, and_, eq, le, lt, mul, ne, or_

from google.protobuf.message import DecodeError as PbDecodeError

from imgtool.errors import FormatError
from imgtool.format import framing, pagemap
from imgtool.format.flags import PE_PARENT, PE_PRESENT
from imgtool.format.pb import message_class

_PAGEMAP_HEAD = message_class("pagemap_head")


def read_head(view: memoryview, file: str) -> tuple[int, int, str]:
    """pages_id of the pagemap_head, where the entries start, and the byte order."""
    header = framing.read_header(view, file)
    size = framing.read_size(view, header.size, header.byteorder, path=file, index=0)
    head_end = header.size + 4 + size
    try:
        pages_id = _PAGEMAP_HEAD.FromString(view[header.size + 4:head_end]).pages_id
    except PbDecodeError as exc:
        raise FormatError(f"not a valid pagemap_head ({exc})", path=file, entry=0) from None
    return pages_id, head_end, header.byteorder


_KIND = [PE_PARENT if f & PE_PARENT else f & PE_PRESENT for f in range(8)]   # flags -> where the data is
_HAS_DATA = [f >> 2 & 1 for f in range(8)]                                     # flags -> 1 if PE_PRESENT


def _lookup(table: list[int], flags: list[int]) -> list[int]:
    try:
        return list(map(table.__getitem__, flags))
    except IndexError:   # bits CRIU does not define: ignore them
        return [table[f & 7] for f in flags]


def kind_stretches(kinds: list[int]) -> Iterator[tuple[int, int, int]]:
    """(first, last, kind) of the stretches of equal kinds."""
    if not kinds:
        return
    cuts = [0, *compress(range(1, len(kinds)), map(ne, kinds[1:], kinds)), len(kinds)]
    for first, last in pairwise(cuts):
        yield first, last, kinds[first]


class _Coalescer:
    """Turns batches of entries into runs (kind, start, end, pages file offset) of address-contiguous
    entries of one kind, with per-entry work done by C-level map/accumulate/compress.

    kind is PE_PARENT, PE_PRESENT or 0 (not in the dump).  The offset counts
    the bytes of earlier PE_PRESENT entries only (criu/pagemap.c skip_pagemap_pages).
    """

    def __init__(self, page_size: int, file: str) -> None:
        self.page_size, self.file = page_size, file
        self.kind = self.start = self.end = self.run_offset = self.offset = self.entries = 0

    # Fast path for every walk ('mem search (2-dump chain)', 'diff --only memory (parent, child)', 'full read
    # of 1 task (of 4)'): per-entry work in C-level map/accumulate/compress over a batch.
    def feed(self, vaddrs: list[int], pages: list[int], flags: list[int]) -> Runs:
        """The runs this batch completes; its last run stays open (the next batch may continue it)."""
        if not vaddrs:
            return [], [], [], []
        lengths = list(map(self.page_size.__mul__, pages))
        ends = list(map(add, vaddrs, lengths))
        self._check_order(vaddrs, ends)
        kinds = _lookup(_KIND, flags)
        offsets = list(accumulate(map(mul, lengths, _lookup(_HAS_DATA, flags)), initial=self.offset))
        if not any(map(and_, map(eq, kinds[1:], kinds), map(eq, vaddrs[1:], ends))):
            runs = (kinds, vaddrs, ends, offsets[:-1])     # no entry continues the one before it: each is a run
        else:
            firsts = [0, *compress(range(1, len(vaddrs)), map(or_, map(ne, kinds[1:], kinds),
                                                                 map(ne, vaddrs[1:], ends)))]
            runs = (list(map(kinds.__getitem__, firsts)), list(map(vaddrs.__getitem__, firsts)),
                    [ends[i - 1] for i in firsts[1:]] + [ends[-1]], list(map(offsets.__getitem__, firsts)))
        if runs[0][0] == self.kind and runs[1][0] == self.end:   # continues the open run of the previous batch
            self.end = runs[2][0]
            runs = tuple(column[1:] for column in runs)
        done = self._close(runs)
        self.offset = offsets[-1]
        self.entries += len(vaddrs)
        return done

    # Fast path for 'open + summary --json': batches below cmdline_of's window only move the offset.
    def skip(self, vaddrs: list[int], pages: list[int], flags: list[int]) -> None:
        """Take in a batch wanted by nobody: the pages file offset moves past its data, and its last entry
        becomes the open run (the next batch may continue it); no order checks."""
        has_data = _lookup(_HAS_DATA, flags)
        last = self.page_size * pages[-1]
        before_last = self.offset + self.page_size * sum(compress(pages[:-1], has_data[:-1]))
        self.kind, self.start, self.end = _lookup(_KIND, flags[-1:])[0], vaddrs[-1], vaddrs[-1] + last
        self.run_offset, self.offset = before_last, before_last + last * has_data[-1]
        self.entries += len(vaddrs)

    def _close(self, runs: tuple[list[int], ...]) -> Runs:
        """The open run and all of ``runs`` but the last, which becomes the open run; empty runs dropped."""
        if not runs[0]:
            return [], [], [], []
        closed = [[self.kind, *runs[0][:-1]], [self.start, *runs[1][:-1]], [self.end, *runs[2][:-1]],
                  [self.run_offset, *runs[3][:-1]]]
        self.kind, self.start, self.end, self.run_offset = (column[-1] for column in runs)
        keep = list(map(lt, closed[1], closed[2]))
        if all(keep):
            return closed
        return [list(compress(column, keep)) for column in closed]

    def _check_order(self, vaddrs: list[int], ends: list[int]) -> None:
        if max(ends) > 1 << 64:
            raise FormatError("a pagemap entry runs past the end of the 64-bit address space", path=self.file)
        previous = [self.end, *ends[:-1]]
        if not all(map(le, previous, vaddrs)):
            bad = next(compress(range(len(vaddrs)), map(lt, vaddrs, previous)))
            below = ends[bad - 1] if bad else self.end
            raise FormatError(f"pagemap entries out of address order: {vaddrs[bad]:#x} is below the end "
                              f"{below:#x} of the previous entry", path=self.file, entry=self.entries + bad + 1)

    def finish(self) -> Runs:
        if self.end > self.start:
            return [self.kind], [self.start], [self.end], [self.run_offset]
        return [], [], [], []


Runs = list[list[int]]   # kinds, starts, ends, pages file offsets of consecutive runs


def entry_runs(batches: Iterator[pagemap.Batch], page_size: int, file: str, below: int = 0) -> Iterator[Runs]:
    """Runs of address-contiguous entries of one kind, in lists (one per batch of entries).

    Batches that end at or below ``below`` only move the pages file offset: their runs are not made.
    """
    coalescer = _Coalescer(page_size, file)
    for vaddrs, pages, flags in batches:
        if vaddrs and vaddrs[-1] + pages[-1] * page_size <= below:
            coalescer.skip(vaddrs, pages, flags)
        else:
            yield coalescer.feed(vaddrs, pages, flags)
    yield coalescer.finish()


__all__ = ["Runs", "entry_runs", "kind_stretches", "read_head"]
