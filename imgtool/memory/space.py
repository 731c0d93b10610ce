"""Process memory of a checkpoint: what each task saw at its addresses.

An ``AddressSpace`` joins a task's VMAs (``mm-<pid>.img``) with the page
contents CRIU saved:

* private pages: ``pagemap-<pid>.img`` + ``pages-<pages_id>.img``.  A
  ``PE_PRESENT`` entry's data sits at the running offset in the pages file
  (the sum of the lengths of the EARLIER ``PE_PRESENT`` entries only); a
  ``PE_PARENT`` entry (legacy: ``in_parent``) is read at the same address in
  the parent dump's pagemap of the same name, as many levels up as needed;
  ``PE_LAZY`` without ``PE_PRESENT`` is not in the file (criu/pagemap.c).
* shared memory: anonymous shared, memfd and SysV shm mappings take their
  contents from ``pagemap-shmem-<shmid>.img``, whose vaddr is an offset
  inside the object (criu/shmem.c).  A memfd VMA's ``shmid`` is the id of a
  MEMFD entry in files.img; its inode in memfd.img has the shmem id
  (criu/cr-dump.c, criu/memfd.c).  Anonymous shared and SysV VMAs carry the
  shmem id itself (the inode number; for SysV the IPC id, criu/ipc_ns.c).

Pagemaps resolve, a batch of entries at a time, into sorted extents (address
range -> slice of a pages file) in bisect-able columns: walks in address order
stream them in lists, reads at any address join them into one index of arrays.
Nothing is copied until bytes are asked for, and nothing is written into the
dump directory.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import weakref
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from itertools import accumulate, chain, compress, islice, pairwise, repeat
from operator import add, and_, eq, gt, le, lt, mul, ne, or_, sub
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message

from imgtool.errors import FormatError, ImgtoolError, MissingImageError, NotDumpedError, UnmappedAddressError
from imgtool.format import framing, pagemap
from imgtool.format.flags import (
    MAP_SHARED,
    PE_PARENT,
    PE_PRESENT,
    VMA_ANON_SHARED,
    VMA_AREA_MEMFD,
    VMA_AREA_SYSVIPC,
    status_names,
)
from imgtool.format.pb import message_class

if TYPE_CHECKING:
    from imgtool.model.dump import Dump, Task

DEFAULT_PAGE_SIZE = 4096
AT_PAGESZ = 6          # auxv key of the page size (include/uapi/linux/auxvec.h)

_PAGEMAP_HEAD = message_class("pagemap_head")


# -- VMAs ---------------------------------------------------------------------------


class Vma(NamedTuple):
    """One mapping of the task, as ``/proc/PID/maps`` would show it."""

    start: int
    end: int
    prot: str                  # "rwxp", "rw-s"
    flags: int                 # MAP_* flags
    status: tuple[str, ...]    # VMA_AREA_* / VMA_* names
    status_bits: int
    shmid: int                 # file id (file maps, memfd) or shmem id (anon shared, SysV)
    pgoff: int                 # byte offset of ``start`` in the file or shared object

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def shared_object(self) -> str | None:
        """Where the contents live if not in the private pagemap: "memfd", "sysv", "anon-shared"."""
        if self.status_bits & VMA_AREA_MEMFD:
            return "memfd"
        if self.status_bits & VMA_AREA_SYSVIPC:
            return "sysv"
        if self.status_bits & VMA_ANON_SHARED:
            return "anon-shared"
        return None

    def __contains__(self, address: int) -> bool:
        return self.start <= address < self.end

    def __str__(self) -> str:
        return f"{self.start:#x}-{self.end:#x} {self.prot}"

    def to_json(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "prot": self.prot, "flags": self.flags,
                "status": list(self.status), "shmid": self.shmid, "pgoff": self.pgoff}


def vma_from_entry(entry: Message) -> Vma:
    prot = "".join(c if entry.prot & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))
    prot += "s" if entry.flags & MAP_SHARED else "p"
    return Vma(entry.start, entry.end, prot, entry.flags, status_names(entry.status), entry.status,
               entry.shmid, entry.pgoff)


def page_size_of(mm: Message | None) -> int:
    """AT_PAGESZ from the saved auxiliary vector (key, value pairs); 4096 without one."""
    auxv = list(mm.mm_saved_auxv) if mm is not None else []
    for key, value in zip(auxv[0::2], auxv[1::2], strict=False):
        if key == AT_PAGESZ and value:
            return value
    return DEFAULT_PAGE_SIZE


# -- pages files and extents --------------------------------------------------------


class PagesFile:
    """One ``pages-<id>.img``, mapped read-only (an empty file is ``b""``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            self.data: mmap.mmap | bytes = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.view = memoryview(self.data)
        self._fd: int | None = None          # for read_into, opened on first use

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<PagesFile {self.path}>"

    @cached_property
    def real_path(self) -> Path:
        """The path with symlinks resolved (computed once)."""
        return self.path.resolve()

    @cached_property
    def real_dir(self) -> Path:
        """The resolved directory holding the file (computed once)."""
        return self.path.parent.resolve()

    def fd(self) -> int:
        """A descriptor of the file for pread (opened on first use)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd

    def read_into(self, buf: memoryview, offset: int) -> None:
        """Fill ``buf`` from ``offset`` with pread: one kernel copy, no page faults, nothing mapped."""
        fd, done = self.fd(), 0
        while done < len(buf):
            n = os.preadv(fd, [buf[done:]], offset + done)
            if n <= 0:    # the file shrank under us: the mapping says what there is to say
                buf[done:] = self.view[offset + done:offset + len(buf)]
                return
            done += n

    def release(self) -> None:
        """Drop our page-table entries (the page cache keeps the data): keeps RSS flat while streaming."""
        if isinstance(self.data, mmap.mmap) and not self.data.closed:
            self.data.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.view.release()
        if isinstance(self.data, mmap.mmap):
            with contextlib.suppress(BufferError):  # a caller still holds a view; the GC unmaps it
                self.data.close()


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

    def next_long(self, i: int, limit: int, size: int) -> int | None:
        """The address of the first extent after extent ``i`` that starts below ``limit`` and is at least
        ``size`` bytes long; None if there is none."""
        starts, ends = self._index.starts, self._index.ends
        for at in range(self._lo + i + 1, self._hi):
            start = starts[at]
            if start >= limit:
                return None
            if ends[at] - start >= size:
                return start
        return None


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

    def copy_into(self, dest: memoryview, lo: int, zeroed: bool = False) -> None:
        """Fill ``dest`` with the bytes from ``lo`` on; gaps are zeroed (unless ``zeroed``: they already are).

        Extents are read with pread: one kernel copy, no page faults, nothing mapped (so nothing to release).
        """
        hi = lo + len(dest)
        starts, files, pos = self.starts, self.files, lo
        fds, preadv = [pages.fd() for pages in files], os.preadv
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
            if preadv(fds[file_id], (part,), offset) != end - start:    # cut short: read_into finishes it
                files[file_id].read_into(part, offset)
            pos = end
        if pos < hi and not zeroed:
            dest[pos - lo:] = bytes(hi - pos)


class _Window(ExtentIndex):
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


# -- pagemaps -----------------------------------------------------------------------




def _read_head(view: memoryview, file: str) -> tuple[int, int, str]:
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


def _segments(kinds: list[int]) -> Iterator[tuple[int, int, int]]:
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


def _runs(batches: Iterator[pagemap.Batch], page_size: int, file: str, below: int = 0) -> Iterator[Runs]:
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


class _Cursor:
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


def _joined(segments: Iterator[ExtentIndex]) -> ExtentIndex:
    """One index of every segment's extents."""
    index = ExtentIndex(compact=True)
    for segment in segments:
        index.extend_from(segment, 0, len(segment))
    return index


class DumpMemory:
    """Pages files of one dump (shared by its tasks, see ``memory_of``) and its pagemaps, streamed."""

    def __init__(self, dump: Dump, window: tuple[int, int] | None = None) -> None:
        self._dump = weakref.ref(dump)
        self.path = dump.path
        self.window = window       # keep only what private memory has in [lo, hi) (see _Window); not cached
        self._pages: dict[int, PagesFile] = {}
        self._parents: list[DumpMemory] = []               # windowed stores of the parent dumps
        self.missing_parent_bytes: dict[str, int] = {}   # PE_PARENT ranges no parent has

    def pages(self, pages_id: int) -> PagesFile:
        if pages_id not in self._pages:
            path = self.path / f"pages-{pages_id}.img"
            if not path.is_file():
                raise MissingImageError(f"{self.path}: pages-{pages_id}.img is missing (named by a pagemap)")
            self._pages[pages_id] = PagesFile(path)
        return self._pages[pages_id]

    @property
    def files(self) -> list[PagesFile]:
        return list(self._pages.values())

    def stream(self, name: str, page_size: int, _seen: frozenset[Path] = frozenset()) -> Iterator[ExtentIndex] | None:
        """Pagemap ``name`` resolved through the parent chain, in address order, one batch of entries at a time
        (None if absent).  Only that batch and the parents' extents around it are held: a walk over a task's
        memory does not grow with it.  ``missing_parent_bytes`` is known when the walk is over."""
        path = self.path / f"{name}.img"
        if not path.is_file():
            return None
        return self._stream(path, name, page_size, _seen | {self.path.resolve()})

    def _window_of(self, name: str) -> tuple[int, int] | None:
        """The window pagemap ``name`` is resolved in: a shared object's addresses are offsets in it, so never."""
        return None if name.startswith("pagemap-shmem-") else self.window

    def _new_index(self, name: str) -> ExtentIndex:
        window = self._window_of(name)
        return ExtentIndex() if window is None else _Window(*window)

    def _parent_stream(self, name: str, page_size: int, seen: frozenset[Path]) -> Iterator[ExtentIndex] | None:
        dump = self._dump()
        parent = dump.parent if dump is not None else None
        if parent is None or parent.path.resolve() in seen:
            return None
        if self.window is None:
            return memory_of(parent).stream(name, page_size, seen)
        self._parents.append(DumpMemory(parent, self.window))
        return self._parents[-1].stream(name, page_size, seen)

    def _stream(self, path: Path, name: str, page_size: int, seen: frozenset[Path]) -> Iterator[ExtentIndex]:
        with open(path, "rb") as f:
            if not f.seek(0, 2):
                raise FormatError("empty pagemap", path=path.name)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data, memoryview(data) as view:
                yield from self._segments_from(view, path.name, name, page_size, seen)

    def _segments_from(self, view: memoryview, file: str, name: str, page_size: int,
                       seen: frozenset[Path]) -> Iterator[ExtentIndex]:
        pages_id, head_end, order = _read_head(view, file)
        lo, hi = self._window_of(name) or (0, 1 << 64)
        parent = _Cursor(lambda: self._parent_stream(name, page_size, seen))     # opened on first PE_PARENT
        missing = 0
        for kinds, starts, ends, offsets in _runs(pagemap.batches(view, head_end, order, file), page_size, file, lo):
            if not kinds or starts[0] >= hi or ends[-1] <= lo:
                continue
            segment = self._new_index(name)
            if not self._bulk(segment, pages_id, parent, kinds, starts, ends, offsets):
                missing += self._one_by_one(segment, pages_id, parent, (kinds, starts, ends, offsets), file)
            if len(segment):
                yield segment
        if missing:
            self.missing_parent_bytes[name] = missing

    def _one_by_one(self, segment: ExtentIndex, pages_id: int, parent: _Cursor, runs: Runs, file: str) -> int:
        """Add a batch of runs one stretch of a kind at a time, raising the first error in order; return how
        many bytes of PE_PARENT runs no parent has."""
        kinds, starts, ends, offsets = runs
        missing = 0
        for first, last, kind in _segments(kinds):
            if kind == PE_PARENT:
                wanted = _wanted(segment, starts[first:last], ends[first:last])
                if wanted[0]:
                    missing += _extend_from(segment, parent.cover(wanted[0][0], wanted[1][-1]), *wanted)
            elif kind == PE_PRESENT:
                pages = self.pages(pages_id)
                if offsets[last - 1] + ends[last - 1] - starts[last - 1] > len(pages):   # offsets only grow
                    _too_short(pages, pages_id, starts[first:last], ends[first:last], offsets[first:last], file)
                segment.extend(starts[first:last], ends[first:last], [segment.file_id(pages)] * (last - first),
                               offsets[first:last])
        return missing

    def _bulk(self, index: ExtentIndex, pages_id: int, parent: _Cursor, kinds: list[int],
              starts: list[int], ends: list[int], offsets: list[int]) -> bool:
        """Add a batch of runs in one ``extend``, when nothing can go wrong: the pages file holds every
        PE_PRESENT run and one extent of the parent holds each PE_PARENT run whole.  False: nothing done."""
        own = 0
        if PE_PRESENT in kinds:
            pages = self.pages(pages_id)
            last = len(kinds) - 1 - kinds[::-1].index(PE_PRESENT)
            if offsets[last] + ends[last] - starts[last] > len(pages):       # offsets only grow
                return False
            own = index.file_id(pages)
        if 0 in kinds:     # not in the dump: skip
            kinds, starts, ends, offsets = (list(compress(c, kinds)) for c in (kinds, starts, ends, offsets))
        if isinstance(index, _Window):
            kinds, starts, ends, offsets = (list(compress(c, index.overlapping(starts, ends)))
                                            for c in (kinds, starts, ends, offsets))
        # Runs are maximal (the coalescer joined address-contiguous entries of one kind) and a parent's extents
        # lie in other files than ours: no run continues the one before it, so extend need not look.
        in_parent = list(map(eq, kinds, repeat(PE_PARENT)))
        if not any(in_parent):
            index.extend(starts, ends, [own] * len(starts), offsets, apart=True)
            return True
        source = parent.cover(starts[in_parent.index(True)], ends[-1])
        found = _holders(source, starts, ends, in_parent)
        if found is None:
            return False
        ids = [index.file_id(pages) for pages in source.files]
        if isinstance(found, int):     # one extent of the parent holds every PE_PARENT run
            file_ids = list(map({PE_PRESENT: own, PE_PARENT: ids[source.file_ids[found]]}.__getitem__, kinds))
            moved = map(add, starts, repeat(source.offsets[found] - source.starts[found]))
        else:
            file_of = list(map(ids.__getitem__, source.file_ids))        # per extent of source: our id of its file
            shift_of = list(map(sub, source.offsets, source.starts))     # per extent: file offset - address
            # (own, parent's)[in_parent]: own file for PE_PRESENT runs, the parent's for PE_PARENT ones
            file_ids = list(map(_pick, zip(repeat(own), map(file_of.__getitem__, found)), in_parent))
            moved = map(add, starts, map(shift_of.__getitem__, found))
        # own offset for PE_PRESENT runs, the parent's (address moved into its file) for PE_PARENT ones
        index.extend(starts, ends, file_ids, list(map(_pick, zip(offsets, moved, strict=True), in_parent)), apart=True)
        return True

    def unresolved(self, name: str) -> list[str]:
        """What the last complete walk over ``name`` could not find, for AddressSpace.problems."""
        missing = self.missing_parent_bytes.get(name)
        return [f"{missing} bytes marked PE_PARENT in {name}.img are in no parent dump"] if missing else []

    def close(self) -> None:
        for pages in self._pages.values():
            pages.close()
        for store in self._parents:
            store.close()
        self._pages.clear()


def _too_short(pages: PagesFile, pages_id: int, starts: list[int], ends: list[int], offsets: list[int],
               file: str) -> None:
    """Raise for the first run whose data lies past the end of its pages file."""
    for start, end, offset in zip(starts, ends, offsets, strict=True):
        if offset + end - start > len(pages):
            raise FormatError(f"pagemap needs {offset + end - start} bytes of pages-{pages_id}.img, "
                              f"it has {len(pages)}", path=file)


_pick = tuple.__getitem__    # _pick((a, b), False) is a, _pick((a, b), True) is b


def _holders(source: ExtentIndex, starts: list[int], ends: list[int], wanted: list[bool]) -> int | list[int] | None:
    """For each wanted range, the index of the extent of ``source`` holding it whole (any index for the others),
    or that index alone when one extent holds them all; None if one has none."""
    if not len(source):
        return None
    first, last = wanted.index(True), len(wanted) - 1 - wanted[::-1].index(True)
    holder = bisect_right(source.starts, starts[first]) - 1
    if holder >= 0 and source.ends[holder] >= ends[last]:     # one extent holds them all (a dense parent dump)
        return holder
    found = list(map((-1).__add__, map(bisect_right, repeat(source.starts), starts)))
    missed = map(or_, map(lt, found, repeat(0)), map(gt, ends, map(source.ends.__getitem__, found)))
    return None if any(map(and_, wanted, missed)) else found


def _wanted(index: ExtentIndex, starts: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
    """The ranges a windowed index keeps (all of them for a plain one)."""
    if not isinstance(index, _Window):
        return starts, ends
    keep = index.overlapping(starts, ends)
    return list(compress(starts, keep)), list(compress(ends, keep))


def _extend_from(index: ExtentIndex, source: ExtentIndex, starts: list[int], ends: list[int]) -> int:
    """Append what ``source`` has of each ``[start, end)``; return how many bytes it lacks.

    In bulk when one extent of ``source`` holds each range whole (a parent dump's pages mostly are).
    """
    src_starts, src_ends = source.starts, source.ends
    at = list(map((-1).__add__, map(bisect_right, repeat(src_starts), starts)))
    if not at or at[0] < 0 or not all(map(le, ends, map(src_ends.__getitem__, at))):
        return sum(_append_from(index, source, start, end) for start, end in zip(starts, ends, strict=True))
    ids = [index.file_id(pages) for pages in source.files]
    offsets = map(add, map(source.offsets.__getitem__, at), map(sub, starts, map(src_starts.__getitem__, at)))
    index.extend(starts, ends, list(map(ids.__getitem__, map(source.file_ids.__getitem__, at))), list(offsets))
    return 0


def _append_from(index: ExtentIndex, source: ExtentIndex, lo: int, hi: int) -> int:
    """Append the parts of ``[lo, hi)`` that ``source`` has; return how many bytes it lacks."""
    found = 0
    for start, end, pages, offset in source.slices(lo, hi):
        index.append(start, end - start, index.file_id(pages), offset)
        found += end - start
    return hi - lo - found


_STORES: weakref.WeakKeyDictionary[Dump, DumpMemory] = weakref.WeakKeyDictionary()


def memory_of(dump: Dump) -> DumpMemory:
    """The (cached) pages files and pagemaps of ``dump``."""
    store = _STORES.get(dump)
    if store is None:
        store = _STORES[dump] = DumpMemory(dump)
    return store


def release(dump: Dump) -> None:
    """Unmap the pages files of ``dump`` (call from Dump.close)."""
    store = _STORES.pop(dump, None)
    if store is not None:
        store.close()


# -- shared memory ------------------------------------------------------------------


def shmem_id(dump: Dump, vma: Vma) -> int | None:
    """The id of ``pagemap-shmem-<id>.img`` holding ``vma``'s shared object, if it has one."""
    kind = vma.shared_object
    if kind is None:
        return None
    if kind != "memfd":
        return vma.shmid
    memfd = next((f.memfd for f in dump.entries("files") if f.id == vma.shmid and f.HasField("memfd")), None)
    if memfd is None:
        return None
    inode = next((i for i in dump.entries("memfd") if i.inode_id == memfd.inode_id), None)
    return inode.shmid if inode is not None else None


# -- address spaces -----------------------------------------------------------------


class AddressSpace:
    """The memory of one task: its VMAs and the dumped bytes behind them.

    Reads at any address (``read``, ``raw``, ``locate``, ``runs``) use an index of every extent, built on first
    use.  Walks in address order (``around`` for extract and search, ``pieces`` for diff, ``segments``,
    ``dumped_bytes``) stream the pagemaps instead, holding only the extents around where they
    are, so they take no more memory for a 100 GiB task than for a small one.
    """

    def __init__(self, pid: int, vmas: list[Vma], extents: ExtentIndex | Callable[[], Iterator[ExtentIndex]],
                 page_size: int = DEFAULT_PAGE_SIZE, mm: Message | None = None, problems: list[str] | None = None,
                 unresolved: Callable[[], list[str]] | None = None, owner: object = None) -> None:
        self.pid = pid
        self.owner = owner                # kept alive with the space: the dump whose files the walks read
        self.vmas = sorted(vmas, key=lambda v: v.start)
        self.page_size = page_size
        self.mm = mm
        self._problems = problems or []
        self._unresolved = unresolved     # what resolving every extent could not find (known after a full walk)
        self._index = extents if isinstance(extents, ExtentIndex) else None
        self._source = None if self._index is not None else extents    # a fresh walk over the extents
        self._walks: dict[str, tuple[int, _Cursor]] = {}
        self._seen: dict[int, PagesFile] = {}
        self._vma_starts = [v.start for v in self.vmas]

    def __repr__(self) -> str:
        return f"<AddressSpace pid {self.pid}: {len(self.vmas)} VMAs>"

    @property
    def problems(self) -> list[str]:
        """Parts that cannot be resolved (memfd inode, parent pages...); resolves every extent to tell."""
        if self._unresolved is None:
            return list(dict.fromkeys(self._problems))
        self._extents   # noqa: B018 - a complete walk records what it could not find
        return list(dict.fromkeys(self._problems + self._unresolved()))

    @property
    def files(self) -> list[PagesFile]:
        """The pages files read so far (all of them once the index is built)."""
        return self._index.files if self._index is not None else list(self._seen.values())

    # -- extents -------------------------------------------------------------------

    @property
    def _extents(self) -> ExtentIndex:
        """The index of every extent (built on first use)."""
        if self._index is None:
            self._index = _joined(self._stream())
            self._walks.clear()
        return self._index

    def _stream(self) -> Iterator[ExtentIndex]:
        if self._index is not None:
            yield self._index
            return
        for segment in self._source():
            for pages in segment.files:
                self._seen.setdefault(id(pages), pages)
            yield segment

    def around(self, lo: int, hi: int, walk: str = "read") -> ExtentIndex:
        """An index holding every extent that overlaps ``[lo, hi)``: the whole index once built, else what the
        walk named ``walk`` holds there.  A walk is fastest in address order; going back restarts it."""
        if self._index is not None:
            return self._index
        last, cursor = self._walks.get(walk, (-1, None))
        if cursor is None or lo < last:
            cursor = _Cursor(self._stream)
        self._walks[walk] = (lo, cursor)
        return cursor.cover(lo, hi)

    # -- VMAs ----------------------------------------------------------------------

    def vma_at(self, address: int) -> Vma | None:
        i = bisect_right(self._vma_starts, address) - 1
        return self.vmas[i] if i >= 0 and address < self.vmas[i].end else None

    def require_vma(self, address: int) -> Vma:
        """The VMA holding ``address``; UnmappedAddressError if none does."""
        vma = self.vma_at(address)
        if vma is None:
            raise self._unmapped(address)
        return vma

    def _unmapped(self, address: int) -> UnmappedAddressError:
        i = bisect_right(self._vma_starts, address)
        below = self.vmas[i - 1] if i > 0 else None
        above = self.vmas[i] if i < len(self.vmas) else None
        return UnmappedAddressError(self.pid, address, below, above)

    # -- bytes ---------------------------------------------------------------------

    def check(self, address: int, size: int, zero_fill: bool = False) -> None:
        """Raise what ``read(address, size, zero_fill)`` would raise, without reading."""
        end, pos = address + size, address
        while pos < end:
            vma = self.vma_at(pos)
            if vma is None:
                raise self._unmapped(pos)
            pos = vma.end
        if zero_fill:
            return
        pos = address
        for start, stop, _, _ in self.around(address, end, "check").slices(address, end):
            if start > pos:
                break
            pos = stop
        if pos < end:
            raise NotDumpedError(self.pid, pos, self.vma_at(pos))

    def read(self, address: int, size: int, zero_fill: bool = False) -> bytes:
        """``size`` bytes at ``address`` as the process saw them.

        Raises UnmappedAddressError when part of the range is in no VMA, and
        NotDumpedError when a mapped page is in no pages file, unless
        ``zero_fill``: then such pages read as zeros.  That is what an
        untouched anonymous page holds; a clean page of a private file
        mapping also reads as zeros here, because its contents are in the
        file on disk, not in the dump.
        """
        if size < 0:
            raise ValueError("size must not be negative")
        index = self._extents     # reads at any address: index everything once (check then uses it too)
        self.check(address, size, zero_fill)
        return bytes(index.copy(address, address + size))

    def raw(self, address: int, size: int) -> bytearray:
        """Dumped bytes of ``[address, address + size)`` with gaps as zeros, without VMA checks."""
        return self._extents.copy(address, address + size)

    def locate(self, address: int) -> tuple[PagesFile, int] | None:
        """The pages file and offset holding the byte at ``address``, or None if it is not dumped."""
        return self._extents.locate(address)

    # -- streaming -----------------------------------------------------------------

    def pieces(self) -> Iterator[tuple[int, int, PagesFile, int]]:
        """(start, end, pages file, offset) of every extent in address order, streamed."""
        return chain.from_iterable(segment.slices(0, 1 << 64) for segment in self._stream())

    def segments(self) -> Iterator[Extent]:
        """Every dumped extent in address order (contiguous ones in the same file merged), streamed."""
        pending: Extent | None = None
        for start, end, pages, offset in self.pieces():
            if pending is not None and pending.end == start and pending.pages is pages \
                    and pending.offset + pending.length == offset:
                pending = pending._replace(length=end - pending.vaddr)
                continue
            if pending is not None:
                yield pending
            pending = Extent(start, end - start, pages, offset)
        if pending is not None:
            yield pending

    def runs(self) -> Iterator[Run]:
        """Dumped bytes grouped into address-contiguous runs; gaps separate runs."""
        index = self._extents
        starts, ends, count = index.starts, index.ends, len(index)
        gaps = compress(range(1, count), map(ne, islice(starts, 1, None), ends))   # runs start there
        lo = 0
        for hi in chain(gaps, [count] if count else []):
            yield Run(starts[lo], ends[hi - 1] - starts[lo], ExtentSpan(index, lo, hi))
            lo = hi

    def dumped_bytes(self, start: int = 0, end: int | None = None) -> int:
        """How many bytes of ``[start, end)`` (default: everything) are in the dump (streamed)."""
        end = (1 << 64) if end is None else end
        return sum(stop - lo for segment in self._stream() for lo, stop, _, _ in segment.slices(start, end))


def address_space(task: Task) -> AddressSpace:
    """The address space of ``task`` from its mm, pagemap and shared-memory images (nothing is indexed yet)."""
    return _space(task, memory_of(task.dump))


def _space(task: Task, store: DumpMemory) -> AddressSpace:
    dump, mm = task.dump, task.mm
    vmas = [vma_from_entry(v) for v in mm.vmas] if mm is not None else []
    page_size = page_size_of(mm)
    name = f"pagemap-{task.pid}"
    problems: list[str] = []
    objects = [(vma, f"pagemap-shmem-{ident}") for vma in vmas if vma.shared_object
               for ident in [_shmem_ident(dump, store, vma, problems)] if ident is not None]

    def walk(pagemap: str) -> _Cursor:
        return _Cursor(lambda: store.stream(pagemap, page_size))

    def source() -> Iterator[ExtentIndex]:
        private = store.stream(name, page_size) or iter(())
        return _with_shared(private, [(vma, walk(shmem)) for vma, shmem in objects]) if objects else private

    def unresolved() -> list[str]:
        for _, shmem in objects:     # a VMA's walk may stop before the end of its object: walk them whole
            for _ in store.stream(shmem, page_size) or ():
                pass
        return [*store.unresolved(name), *(problem for _, shmem in objects for problem in store.unresolved(shmem))]

    return AddressSpace(task.pid, vmas, source, page_size, mm, problems, unresolved, dump)


def _with_shared(segments: Iterator[ExtentIndex], objects: list[tuple[Vma, _Cursor]]) -> Iterator[ExtentIndex]:
    """The private segments, plus shared objects' pages where the private pagemap has none (in their VMAs).

    A MAP_PRIVATE memfd mapping keeps its COW'ed pages in the private pagemap;
    the rest comes from the object, walked with a cursor of its own per VMA.  Each segment takes the addresses
    from the end of the one before to its own end (the last one: to the end of the address space).
    """
    lo, pending = 0, sorted(objects, key=lambda o: o[0].start)
    for private in chain(segments, [ExtentIndex()]):
        hi = private.ends[-1] if len(private) else 1 << 64
        pieces: list[tuple[int, int, PagesFile, int]] = []
        for vma, obj in pending:
            if vma.start >= hi:
                break
            shift = vma.start - vma.pgoff
            for gap_lo, gap_hi in _gaps(private, max(vma.start, lo), min(vma.end, hi)):
                held = obj.cover(gap_lo - shift, gap_hi - shift)
                pieces += [(s + shift, e + shift, p, o) for s, e, p, o in held.slices(gap_lo - shift, gap_hi - shift)]
        pending = [o for o in pending if o[0].end > hi]
        merged = _merge(private, pieces) if pieces else private
        if len(merged):
            yield merged
        lo = hi


def _merge(private: ExtentIndex, pieces: list[tuple[int, int, PagesFile, int]]) -> ExtentIndex:
    """A new index: ``private`` and ``pieces`` (which lie in its gaps) in address order."""
    merged, done = ExtentIndex(), 0
    for start, end, pages, offset in sorted(pieces, key=lambda p: p[0]):
        below = bisect_right(private.starts, start, done)       # private extents starting at or below it first
        merged.extend_from(private, done, below)
        merged.append(start, end - start, merged.file_id(pages), offset)
        done = below
    merged.extend_from(private, done, len(private))
    return merged


def _shmem_ident(dump: Dump, store: DumpMemory, vma: Vma, problems: list[str]) -> int | None:
    """The shmem id whose pagemap holds ``vma``'s shared object; None (and why, in ``problems``) if none does."""
    ident = shmem_id(dump, vma)
    if ident is None:
        problems.append(f"VMA {vma}: {vma.shared_object} object {vma.shmid} not found in files.img/memfd.img")
    elif not (store.path / f"pagemap-shmem-{ident}.img").is_file():
        problems.append(f"VMA {vma}: pagemap-shmem-{ident}.img is missing")
        return None
    return ident


def _gaps(index: ExtentIndex, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    pos = lo
    for start, end, _, _ in index.slices(lo, hi):
        if start > pos:
            yield pos, start
        pos = end
    if pos < hi:
        yield pos, hi


# -- cmdline and environment ----------------------------------------------------------


def _strings(space: AddressSpace, start: int, end: int) -> list[str]:
    if end <= start:
        return []
    data = space.read(start, end - start, zero_fill=True)
    if data.endswith(b"\0"):
        data = data[:-1]
    return [s.decode("utf-8", "backslashreplace") for s in data.split(b"\0")]


def cmdline(space: AddressSpace, mm: Message | None = None) -> list[str]:
    """argv as the process left it (``mm_arg_start..mm_arg_end``, NUL-separated)."""
    mm = mm if mm is not None else space.mm
    return _strings(space, mm.mm_arg_start, mm.mm_arg_end) if mm is not None else []


def cmdline_of(task: Task) -> list[str]:
    """``task.cmdline`` without indexing the whole address space: only the pages holding argv are resolved
    (the whole pagemap is parsed and its order checked, the pages files only where argv is; a fragmented
    GiB-sized pagemap is not held in memory)."""
    mm = task.mm
    if mm is None or "memory" in task.__dict__:   # nothing to read, or already indexed
        return task.cmdline
    store = DumpMemory(task.dump, (mm.mm_arg_start, max(mm.mm_arg_end, mm.mm_arg_start + 1)))
    try:
        return cmdline(_space(task, store), mm)
    except ImgtoolError:
        return []
    finally:
        store.close()


def environ(space: AddressSpace, mm: Message | None = None) -> list[str]:
    """The environment strings (``mm_env_start..mm_env_end``, NUL-separated)."""
    mm = mm if mm is not None else space.mm
    return _strings(space, mm.mm_env_start, mm.mm_env_end) if mm is not None else []


__all__ = [
    "AddressSpace", "DumpMemory", "Extent", "ExtentIndex", "NotDumpedError", "PagesFile", "Run",
    "UnmappedAddressError", "Vma", "address_space", "cmdline", "cmdline_of", "environ", "memory_of", "page_size_of",
    "release", "shmem_id", "status_names", "vma_from_entry",
]
