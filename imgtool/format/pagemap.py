"""Columnar reading of pagemap images: the whole file in a few C calls per MiB.

A fragmented pagemap holds one small ``pagemap_entry`` per run of pages:
hundreds of thousands of them for a GiB of memory.  Parsing each as its own
protobuf object costs microseconds apiece, so regular frames are read in
bulk instead:

1. a regular expression recognises a run of frames whose payload is the
   canonical encoding CRIU writes (vaddr, compat_nr_pages, then optional
   in_parent, flags, nr_pages, each once and in order);
2. each frame's size prefix is checked against its payload length;
3. the payloads are concatenated and parsed once as ``pagemap_columns``
   (repeated fields with the same numbers), giving one list per field.

Frames that do not fit (other encodings, unknown fields, mixed presence)
are handed back one by one as messages, so the result is always exact.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterator
from functools import cache
from operator import itemgetter

from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message

from imgtool.errors import DecodeError
from imgtool.format import framing
from imgtool.format.flags import PE_PARENT, PE_PRESENT
from imgtool.format.pb import message_class

FIELDS = ("vaddr", "compat_nr_pages", "in_parent", "flags", "nr_pages")

_CHUNK = 1 << 14
_SLOW_FRAMES = 64     # frames read one by one after a regular run failed, before trying again
# Possessive quantifiers: nothing after a varint or an optional field can fail, so the regex engine keeps
# no backtracking state (a third faster than plain ones, same matches).
_V = rb"[\x80-\xff]*+[\x00-\x7f]"
_PAYLOAD = rb"\x08" + _V + rb"\x10" + _V + rb"(?:\x18[\x00\x01])?+(?:\x20" + _V + rb")?+(?:\x28" + _V + rb")?+"
_SIZE_PREFIX = {"<": rb"[\x04-\x7f]\x00\x00\x00", ">": rb"\x00\x00\x00[\x04-\x7f]"}   # one-byte u32 sizes


@cache
def _frame(order: str) -> re.Pattern[bytes]:
    """A regular frame in byte order ``order`` (compiled on first use: big-endian dumps are rare)."""
    return re.compile(_SIZE_PREFIX[order] + _PAYLOAD)


_SIZE_BYTE = {"<": itemgetter(0), ">": itemgetter(3)}
_PAYLOAD_OF = itemgetter(slice(4, None))

_COLUMNS = message_class("pagemap_columns")
_ENTRY = message_class("pagemap_entry")


class Columns:
    """Consecutive pagemap entries, one list per field (FIELDS); a list is empty when no entry has it."""

    __slots__ = FIELDS

    def __init__(self, vaddr: list[int], compat_nr_pages: list[int], in_parent: list[bool], flags: list[int],
                 nr_pages: list[int]) -> None:
        self.vaddr, self.compat_nr_pages, self.in_parent = vaddr, compat_nr_pages, in_parent
        self.flags, self.nr_pages = flags, nr_pages

    def __repr__(self) -> str:
        return f"Columns({', '.join(f'{n}={getattr(self, n)!r}' for n in FIELDS)})"

    def __len__(self) -> int:
        return len(self.vaddr)

    @classmethod
    def of_entry(cls, entry: Message) -> Columns:
        """One pagemap_entry as columns of length 1 (absent fields as empty columns)."""
        return cls(*([getattr(entry, n)] if entry.HasField(n) else [] for n in FIELDS))

    def present(self) -> list[str]:
        return [name for name in FIELDS if getattr(self, name)]

    def pages(self) -> list[int]:
        """Page counts as CRIU reads them: nr_pages if present, else compat_nr_pages."""
        return self.nr_pages or self.compat_nr_pages

    def effective_flags(self) -> list[int]:
        """Flags as CRIU reads them (init_compat_pagemap_entry): in_parent adds PE_PARENT;
        without flags an entry is PE_PRESENT unless in_parent."""
        flags = self.flags or [0 if self.in_parent else PE_PRESENT] * len(self)
        if not self.in_parent:
            return flags
        return [f | PE_PARENT if p else (f if self.flags else PE_PRESENT) for f, p in zip(flags, self.in_parent,
                                                                                          strict=True)]


def _regular_run(view: memoryview, pos: int, stop: int, order: str) -> tuple[list[bytes], int]:
    """Payloads of the regular frames starting at ``pos`` and where they end.

    findall() returns matches in order without overlap; if their texts put
    end to end equal the file from ``pos`` on, they tile it with no gap (the
    earliest match after each one starts right where it ends).  Each frame's
    size byte must then equal its payload length.
    """
    frames = _frame(order).findall(view, pos, stop)
    if stop < len(view) and frames:
        frames.pop()  # may be a frame cut short by ``stop``; the next chunk reads it
    whole = b"".join(frames)
    sizes = bytes(map(_SIZE_BYTE[order], frames))
    if whole != view[pos:pos + len(whole)].tobytes() or sizes != bytes(map((4).__rsub__, map(len, frames))):
        frames = frames[:_tiling_prefix(view, pos, frames, order)]
    return list(map(_PAYLOAD_OF, frames)), pos + sum(map(len, frames))


def _tiling_prefix(view: memoryview, pos: int, frames: list[bytes], order: str) -> int:
    """How many of the first matches are real consecutive frames (slow path, rare)."""
    for i, frame in enumerate(frames):
        if view[pos:pos + len(frame)].tobytes() != frame or _SIZE_BYTE[order](frame) != len(frame) - 4:
            return i
        pos += len(frame)
    return len(frames)


def _columns(payloads: list[bytes]) -> Columns | None:
    try:
        cols = _COLUMNS.FromString(b"".join(payloads))
    except PbDecodeError:  # e.g. an over-long varint: let the per-entry path report it
        return None
    n = len(payloads)
    lists = [list(getattr(cols, name)) for name in FIELDS]
    if any(len(col) not in (0, n) for col in lists) or len(lists[0]) != n:
        return None
    return Columns(*lists)


class _Releaser:
    """Drops the mapped pages of a pagemap file behind the reader (MADV_DONTNEED: the page cache keeps
    them), so reading a GiB-sized dump's pagemap does not grow RSS by the size of the file."""

    EVERY = 256 << 10

    def __init__(self, view: memoryview) -> None:
        obj = view.obj
        whole = isinstance(obj, mmap.mmap) and not obj.closed and len(view) == len(obj) and view.contiguous
        self.mapping: mmap.mmap | None = obj if whole else None
        self.done = 0

    def __call__(self, pos: int) -> None:
        if self.mapping is None or pos - self.done < self.EVERY:
            return
        upto = pos - pos % mmap.PAGESIZE
        try:
            self.mapping.madvise(mmap.MADV_DONTNEED, self.done, upto - self.done)
        except (ValueError, OSError):      # closed or not allowed: just keep the pages
            self.mapping = None
        self.done = upto


def read(view: memoryview, pos: int, order: str, path: str, index: int,
         complete: bool = False) -> Iterator[Columns | Message]:
    """pagemap_entry frames from ``pos`` to the end: Columns for regular runs, messages otherwise.

    ``complete``: an entry without its required fields (vaddr, compat_nr_pages) is an error, as it is to CRIU
    (protobuf-c refuses it); otherwise it is yielded as it is, as crit shows it.  A regular run has them all.
    """
    end = len(view)
    release = _Releaser(view)
    while pos < end:
        release(pos)
        payloads, stop = _regular_run(view, pos, min(end, pos + _CHUNK), order)
        cols = _columns(payloads) if payloads else None
        if cols is not None:
            yield cols
            index, pos = index + len(cols), stop
            continue
        # Irregular: one message at a time, at least _SLOW_FRAMES of them, then until a frame
        # looks regular again (a cheap anchored match), so a long irregular stretch stays linear.
        count = 0
        while pos < end and (count < max(_SLOW_FRAMES, len(payloads)) or not _frame(order).match(view, pos)):
            size = framing.read_size(view, pos, order, path=path, index=index)
            try:
                entry = _ENTRY.FromString(view[pos + 4:pos + 4 + size])
            except PbDecodeError as exc:
                raise DecodeError(f"not a valid pagemap_entry ({exc})", path=path, entry=index,
                                  offset=pos) from None
            if complete and not entry.IsInitialized():
                missing = ", ".join(entry.FindInitializationErrors())
                raise DecodeError(f"pagemap_entry lacks required field(s) {missing}", path=path, entry=index,
                                  offset=pos)
            yield entry
            index, pos, count = index + 1, pos + 4 + size, count + 1


Batch = tuple[list[int], list[int], list[int]]   # vaddrs, page counts, flags of consecutive entries


def batches(view: memoryview, pos: int, order: str, path: str) -> Iterator[Batch]:
    """Entries from ``pos`` on as (vaddrs, pages, flags), with CRIU's compat rules applied; every entry must
    be complete (see ``read``)."""
    for item in read(view, pos, order, path, 1, complete=True):
        cols = item if isinstance(item, Columns) else Columns.of_entry(item)
        yield cols.vaddr, cols.pages(), cols.effective_flags()
