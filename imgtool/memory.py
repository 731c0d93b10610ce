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

Everything resolves into one sorted index of extents (address range -> slice
of an mmapped pages file) held in bisect-able arrays; nothing is copied until
bytes are asked for, and nothing is written into the dump directory.
"""

from __future__ import annotations

import contextlib
import mmap
import weakref
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, compress, pairwise
from operator import add, lt, mul, ne, or_
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message

from . import framing, pagemap
from .convert import FLAG_TABLES
from .errors import FormatError, ImgtoolError, MissingImageError
from .pagemap import PE_PARENT, PE_PRESENT
from .pb import message_class

if TYPE_CHECKING:
    from .dump import Dump, Task

DEFAULT_PAGE_SIZE = 4096
AT_PAGESZ = 6          # auxv key of the page size (include/uapi/linux/auxvec.h)
MAP_SHARED = 0x1

# criu/include/image.h
VMA_ANON_SHARED = 1 << 8
VMA_AREA_SYSVIPC = 1 << 10
VMA_AREA_MEMFD = 1 << 14
_MORE_STATUS = [("VMA_AREA_GUARD", 1 << 16), ("VMA_EXT_PLUGIN", 1 << 27), ("VMA_CLOSE", 1 << 28),
                ("VMA_NO_PROT_WRITE", 1 << 29), ("VMA_PREMMAPED", 1 << 30)]
_STATUS_NAMES = [(name, bit) for name, bit in FLAG_TABLES["mmap.status"] + _MORE_STATUS if bit]

_PAGEMAP_HEAD = message_class("pagemap_head")


class UnmappedAddressError(ImgtoolError):
    """An address no VMA of the task covers."""

    def __init__(self, pid: int, address: int, below: Vma | None, above: Vma | None) -> None:
        self.pid, self.address = pid, address
        near = ", ".join(f"{side} {vma}" for side, vma in (("below:", below), ("above:", above)) if vma)
        super().__init__(f"pid {pid}: address {address:#x} is not mapped (no VMA covers it"
                         + (f"; nearest {near}" if near else "") + ")")


class NotDumpedError(ImgtoolError):
    """A mapped address whose page is in no pages file of the dump chain."""

    def __init__(self, pid: int, address: int, vma: Vma) -> None:
        self.pid, self.address, self.vma = pid, address, vma
        super().__init__(f"pid {pid}: address {address:#x} in VMA {vma} is mapped but its page is not in the "
                         "dump (never touched, or a clean file page); zero fill (--zero-fill) reads it as zeros")


# -- VMAs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Vma:
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


def status_names(status: int) -> tuple[str, ...]:
    names = [name for name, bit in _STATUS_NAMES if status & bit]
    rest = status & ~sum(bit for _, bit in _STATUS_NAMES)
    return (*names, f"{rest:#x}") if rest else tuple(names)


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

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<PagesFile {self.path}>"

    def release(self) -> None:
        """Drop our page-table entries (the page cache keeps the data): keeps RSS flat while streaming."""
        if isinstance(self.data, mmap.mmap) and not self.data.closed:
            self.data.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
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
    extents: tuple[Extent, ...]

    @property
    def end(self) -> int:
        return self.vaddr + self.length


class ExtentIndex:
    """Sorted, non-overlapping extents in parallel arrays (bisect on ``starts``).

    Neighbours contiguous both in memory and in the same pages file are
    merged as they are appended.
    """

    def __init__(self) -> None:
        self.starts = array("Q")
        self.ends = array("Q")
        self.file_ids = array("I")
        self.offsets = array("Q")
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

    def extents(self) -> Iterator[Extent]:
        files = self.files
        for start, end, file_id, offset in zip(self.starts, self.ends, self.file_ids, self.offsets, strict=True):
            yield Extent(start, end - start, files[file_id], offset)

    def copy(self, lo: int, hi: int) -> bytearray:
        """The bytes of ``[lo, hi)``; gaps are zeros."""
        out = bytearray(hi - lo)
        for start, end, pages, offset in self.slices(lo, hi):
            out[start - lo:end - lo] = pages.view[offset:offset + end - start]
        return out

    def covered(self) -> int:
        return sum(self.ends) - sum(self.starts)


# -- pagemaps -----------------------------------------------------------------------


Batch = tuple[list[int], list[int], list[int]]   # vaddrs, page counts, flags of consecutive entries


def _pagemap_batches(view: memoryview, pos: int, order: str, path: str) -> Iterator[Batch]:
    """Entries in column batches, with CRIU's compat rules (init_compat_pagemap_entry)."""
    try:
        for item in pagemap.read(view, pos, order, path, 1):
            if isinstance(item, pagemap.Columns):
                yield item.vaddr, item.pages(), _column_flags(item)
            else:
                pages = item.nr_pages if item.HasField("nr_pages") else item.compat_nr_pages
                yield [item.vaddr], [pages], [_entry_flags(item.flags if item.HasField("flags") else None,
                                                            item.in_parent)]
    except PbDecodeError as exc:   # pagemap.read's columnar path can let one through
        raise FormatError(f"invalid pagemap entries ({exc})", path=path) from None


def _entry_flags(flags: int | None, in_parent: bool) -> int:
    if in_parent:
        return (flags or 0) | PE_PARENT
    return PE_PRESENT if flags is None else flags


def _column_flags(cols: pagemap.Columns) -> list[int]:
    if not cols.in_parent:
        return cols.effective_flags()
    flags = cols.flags or [None] * len(cols)
    return list(map(_entry_flags, flags, cols.in_parent))


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


class _Coalescer:
    """Turns batches of entries into runs (kind, start, end, pages file offset) of address-contiguous
    entries of one kind, with per-entry work done by C-level map/accumulate/compress.

    kind is PE_PARENT, PE_PRESENT or 0 (not in the dump).  The offset counts
    the bytes of earlier PE_PRESENT entries only (criu/pagemap.c skip_pagemap_pages).
    """

    def __init__(self, page_size: int, file: str) -> None:
        self.page_size, self.file = page_size, file
        self.kind = self.start = self.end = self.run_offset = self.offset = self.entries = 0

    def feed(self, vaddrs: list[int], pages: list[int], flags: list[int]) -> Iterator[tuple[int, int, int, int]]:
        if not vaddrs:
            return
        lengths = list(map(self.page_size.__mul__, pages))
        ends = list(map(add, vaddrs, lengths))
        self._check_order(vaddrs, ends)
        kinds = _lookup(_KIND, flags)
        offsets = list(accumulate(map(mul, lengths, _lookup(_HAS_DATA, flags)), initial=self.offset))
        starts_run = compress(range(1, len(vaddrs)), map(or_, map(ne, kinds[1:], kinds), map(ne, vaddrs[1:], ends)))
        for first, last in pairwise([0, *starts_run, len(vaddrs)]):
            if first == 0 and kinds[0] == self.kind and vaddrs[0] == self.end:
                self.end = ends[last - 1]   # continues the run of the previous batch
                continue
            yield from self.finish()
            self.kind, self.start, self.run_offset = kinds[first], vaddrs[first], offsets[first]
            self.end = ends[last - 1]
        self.offset = offsets[-1]
        self.entries += len(vaddrs)

    def _check_order(self, vaddrs: list[int], ends: list[int]) -> None:
        if max(ends) > 1 << 64:
            raise FormatError("a pagemap entry runs past the end of the 64-bit address space", path=self.file)
        bad = next(compress(range(len(vaddrs)), map(lt, vaddrs, [self.end, *ends[:-1]])), None)
        if bad is not None:
            below = ends[bad - 1] if bad else self.end
            raise FormatError(f"pagemap entries out of address order: {vaddrs[bad]:#x} is below the end "
                              f"{below:#x} of the previous entry", path=self.file, entry=self.entries + bad + 1)

    def finish(self) -> Iterator[tuple[int, int, int, int]]:
        if self.end > self.start:
            yield self.kind, self.start, self.end, self.run_offset
        self.start = self.end


def _runs(batches: Iterator[Batch], page_size: int, file: str) -> Iterator[tuple[int, int, int, int]]:
    coalescer = _Coalescer(page_size, file)
    for batch in batches:
        yield from coalescer.feed(*batch)
    yield from coalescer.finish()


class DumpMemory:
    """Pages files and resolved pagemaps of one dump, shared by its tasks (see ``memory_of``)."""

    def __init__(self, dump: Dump) -> None:
        self._dump = weakref.ref(dump)
        self.path = dump.path
        self._pages: dict[int, PagesFile] = {}
        self._indexes: dict[tuple[str, int], ExtentIndex | None] = {}
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

    def index(self, name: str, page_size: int, _seen: frozenset[Path] = frozenset()) -> ExtentIndex | None:
        """Pagemap ``name`` ("pagemap-42", "pagemap-shmem-7") resolved through the parent chain; None if absent."""
        key = (name, page_size)
        if key not in self._indexes:
            self._indexes[key] = self._build(name, page_size, _seen | {self.path.resolve()})
        return self._indexes[key]

    def _parent_index(self, name: str, page_size: int, seen: frozenset[Path]) -> ExtentIndex | None:
        dump = self._dump()
        parent = dump.parent if dump is not None else None
        if parent is None or parent.path.resolve() in seen:
            return None
        return memory_of(parent).index(name, page_size, seen)

    def _build(self, name: str, page_size: int, seen: frozenset[Path]) -> ExtentIndex | None:
        path = self.path / f"{name}.img"
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            if not f.seek(0, 2):
                raise FormatError("empty pagemap", path=path.name)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data, memoryview(data) as view:
                return self._build_from(view, path.name, name, page_size, seen)

    def _build_from(self, view: memoryview, file: str, name: str, page_size: int,
                    seen: frozenset[Path]) -> ExtentIndex:
        pages_id, head_end, order = _read_head(view, file)
        index = ExtentIndex()
        parent: ExtentIndex | None = None
        missing = 0
        for kind, start, end, offset in _runs(_pagemap_batches(view, head_end, order, file), page_size, file):
            if kind == PE_PARENT:
                if parent is None:
                    parent = self._parent_index(name, page_size, seen) or ExtentIndex()
                missing += _append_from(index, parent, start, end)
            elif kind == PE_PRESENT:
                pages = self.pages(pages_id)
                if offset + end - start > len(pages):
                    raise FormatError(f"pagemap needs {offset + end - start} bytes of pages-{pages_id}.img, "
                                      f"it has {len(pages)}", path=file)
                index.append(start, end - start, index.file_id(pages), offset)
        if missing:
            self.missing_parent_bytes[name] = missing
        return index

    def unresolved(self, name: str) -> list[str]:
        """What ``index(name)`` could not find, for AddressSpace.problems."""
        missing = self.missing_parent_bytes.get(name)
        return [f"{missing} bytes marked PE_PARENT in {name}.img are in no parent dump"] if missing else []

    def close(self) -> None:
        for pages in self._pages.values():
            pages.close()
        self._pages.clear()
        self._indexes.clear()


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
    """The memory of one task: its VMAs and the dumped bytes behind them."""

    def __init__(self, pid: int, vmas: list[Vma], extents: ExtentIndex, page_size: int = DEFAULT_PAGE_SIZE,
                 mm: Message | None = None, problems: list[str] | None = None) -> None:
        self.pid = pid
        self.vmas = sorted(vmas, key=lambda v: v.start)
        self.page_size = page_size
        self.mm = mm
        self.problems = list(dict.fromkeys(problems or []))   # unresolvable parts (memfd inode, parent pages...)
        self._extents = extents
        self._vma_starts = [v.start for v in self.vmas]

    def __repr__(self) -> str:
        return f"<AddressSpace pid {self.pid}: {len(self.vmas)} VMAs, {self.dumped_bytes()} bytes dumped>"

    @property
    def files(self) -> list[PagesFile]:
        return self._extents.files

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
        for start, stop, _, _ in self._extents.slices(address, end):
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
        self.check(address, size, zero_fill)
        return bytes(self._extents.copy(address, address + size))

    def raw(self, address: int, size: int) -> bytearray:
        """Dumped bytes of ``[address, address + size)`` with gaps as zeros, without VMA checks."""
        return self._extents.copy(address, address + size)

    def locate(self, address: int) -> tuple[PagesFile, int] | None:
        """The pages file and offset holding the byte at ``address``, or None if it is not dumped."""
        found = next(self._extents.slices(address, address + 1), None)
        return (found[2], found[3]) if found is not None else None

    # -- streaming -----------------------------------------------------------------

    def segments(self) -> Iterator[Extent]:
        """Every dumped extent in address order (contiguous ones in the same file merged)."""
        return self._extents.extents()

    def runs(self) -> Iterator[Run]:
        """Dumped bytes grouped into address-contiguous runs; gaps separate runs."""
        group: list[Extent] = []
        for extent in self._extents.extents():
            if group and extent.vaddr != group[-1].end:
                yield _run(group)
                group = []
            group.append(extent)
        if group:
            yield _run(group)

    def dumped_bytes(self, start: int = 0, end: int | None = None) -> int:
        """How many bytes of ``[start, end)`` (default: everything) are in the dump."""
        if start == 0 and end is None:
            return self._extents.covered()
        return sum(stop - lo for lo, stop, _, _ in self._extents.slices(start, (1 << 64) if end is None else end))


def _run(extents: list[Extent]) -> Run:
    return Run(extents[0].vaddr, extents[-1].end - extents[0].vaddr, tuple(extents))


def address_space(task: Task) -> AddressSpace:
    """Build the address space of ``task`` from its mm, pagemap and shared-memory images."""
    dump, mm = task.dump, task.mm
    vmas = [vma_from_entry(v) for v in mm.vmas] if mm is not None else []
    page_size = page_size_of(mm)
    store = memory_of(dump)
    private = store.index(f"pagemap-{task.pid}", page_size) or ExtentIndex()
    problems = store.unresolved(f"pagemap-{task.pid}")
    shared = [v for v in vmas if v.shared_object]
    if not shared:
        return AddressSpace(task.pid, vmas, private, page_size, mm, problems)
    extents = _with_shared(dump, store, private, shared, page_size, problems)
    return AddressSpace(task.pid, vmas, extents, page_size, mm, problems)


def _with_shared(dump: Dump, store: DumpMemory, private: ExtentIndex, shared: list[Vma], page_size: int,
                 problems: list[str]) -> ExtentIndex:
    """A new index: the private extents, plus shared objects' pages where the private pagemap has none.

    A MAP_PRIVATE memfd mapping keeps its COW'ed pages in the private pagemap;
    the rest comes from the object.
    """
    pieces: list[tuple[int, int, PagesFile, int]] = []
    for vma in shared:
        obj = _shmem_index(dump, store, vma, page_size, problems)
        if obj is None:
            continue
        shift = vma.start - vma.pgoff
        for lo, hi in _gaps(private, vma.start, vma.end):
            pieces += [(s + shift, e + shift, p, o) for s, e, p, o in obj.slices(lo - shift, hi - shift)]
    merged = ExtentIndex()
    private_pieces = ((e.vaddr, e.end, e.pages, e.offset) for e in private.extents())
    for start, end, pages, offset in _merge_sorted(private_pieces, sorted(pieces, key=lambda p: p[0])):
        merged.append(start, end - start, merged.file_id(pages), offset)
    return merged


def _shmem_index(dump: Dump, store: DumpMemory, vma: Vma, page_size: int, problems: list[str]) -> ExtentIndex | None:
    ident = shmem_id(dump, vma)
    if ident is None:
        problems.append(f"VMA {vma}: {vma.shared_object} object {vma.shmid} not found in files.img/memfd.img")
        return None
    index = store.index(f"pagemap-shmem-{ident}", page_size)
    if index is None:
        problems.append(f"VMA {vma}: pagemap-shmem-{ident}.img is missing")
    problems += store.unresolved(f"pagemap-shmem-{ident}")
    return index


def _gaps(index: ExtentIndex, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    pos = lo
    for start, end, _, _ in index.slices(lo, hi):
        if start > pos:
            yield pos, start
        pos = end
    if pos < hi:
        yield pos, hi


def _merge_sorted(a: Iterator[tuple[int, int, PagesFile, int]],
                  b: list[tuple[int, int, PagesFile, int]]) -> Iterator[tuple[int, int, PagesFile, int]]:
    """Merge two address-sorted streams of disjoint pieces (b is short: shared VMAs only)."""
    j = 0
    for piece in a:
        while j < len(b) and b[j][0] < piece[0]:
            yield b[j]
            j += 1
        yield piece
    yield from b[j:]


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


def environ(space: AddressSpace, mm: Message | None = None) -> list[str]:
    """The environment strings (``mm_env_start..mm_env_end``, NUL-separated)."""
    mm = mm if mm is not None else space.mm
    return _strings(space, mm.mm_env_start, mm.mm_env_end) if mm is not None else []


__all__ = [
    "AddressSpace", "DumpMemory", "Extent", "ExtentIndex", "NotDumpedError", "PagesFile", "Run",
    "UnmappedAddressError", "Vma", "address_space", "cmdline", "environ", "memory_of", "page_size_of",
    "release", "shmem_id", "status_names", "vma_from_entry",
]
