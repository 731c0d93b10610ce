"""Address spaces: a task's VMAs joined with the dumped bytes behind them, read at any address.

Private pages come from ``pagemap-<pid>.img`` resolved through the parent dumps (``chain``), shared memory
from the shmem pagemaps (``shmem``).  Nothing is copied until bytes are asked for, and nothing is written
into the dump directory.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Protocol

from google.protobuf.message import Message

from imgtool.errors import ImgtoolError, NotDumpedError, UnmappedAddressError
from imgtool.memory.chain import DumpMemory
from imgtool.memory.extents import Cursor, Extent, ExtentIndex, ExtentSpan, Run, joined
from imgtool.memory.pages import PagesFile
from imgtool.memory.shmem import shmem_ident, with_shared
from imgtool.memory.sources import TaskSource
from imgtool.memory.vma import DEFAULT_PAGE_SIZE, Vma, page_size_of, vma_from_entry


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
        self._walks: dict[str, tuple[int, Cursor]] = {}
        self._seen: dict[int, PagesFile] = {}
        self._vma_starts = [v.start for v in self.vmas]

    def __repr__(self) -> str:
        return f"<AddressSpace pid {self.pid}: {len(self.vmas)} VMAs>"

    @property
    def problems(self) -> list[str]:
        """Parts that cannot be resolved (memfd inode, parent pages...); resolves every extent to tell."""
        if self._unresolved is None:
            return list(dict.fromkeys(self._problems))
        self.index   # noqa: B018 - a complete walk records what it could not find
        return list(dict.fromkeys(self._problems + self._unresolved()))

    @property
    def files(self) -> list[PagesFile]:
        """The pages files read so far (all of them once the index is built)."""
        return self._index.files if self._index is not None else list(self._seen.values())

    # -- extents -------------------------------------------------------------------

    @property
    def indexed(self) -> bool:
        """Whether the index of every extent is built (reads at any address are then cheap)."""
        return self._index is not None

    @property
    def index(self) -> ExtentIndex:
        """The index of every extent (built on first use)."""
        if self._index is None:
            self._index = joined(self._stream())
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
            cursor = Cursor(self._stream)
        self._walks[walk] = (lo, cursor)
        return cursor.cover(lo, hi)

    # -- VMAs ----------------------------------------------------------------------

    def vma_at(self, address: int) -> Vma | None:
        i = bisect_right(self._vma_starts, address) - 1
        return self.vmas[i] if i >= 0 and address < self.vmas[i].end else None

    def vma_span(self, address: int) -> tuple[Vma | None, int]:
        """The VMA holding ``address`` (None if none does) and where that stretch ends: the VMA's end, or the
        next VMA's start (the end of the address space if there is none)."""
        i = bisect_right(self._vma_starts, address) - 1
        if i >= 0 and address < self.vmas[i].end:
            return self.vmas[i], self.vmas[i].end
        return None, self.vmas[i + 1].start if i + 1 < len(self.vmas) else 1 << 64

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
        index = self.index     # reads at any address: index everything once (check then uses it too)
        self.check(address, size, zero_fill)
        return bytes(index.copy(address, address + size))

    def raw(self, address: int, size: int) -> bytearray:
        """Dumped bytes of ``[address, address + size)`` with gaps as zeros, without VMA checks."""
        return self.index.copy(address, address + size)

    def locate(self, address: int) -> tuple[PagesFile, int] | None:
        """The pages file and offset holding the byte at ``address``, or None if it is not dumped."""
        return self.index.locate(address)

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
        index = self.index
        starts, ends, count = index.starts, index.ends, len(index)
        lo = 0
        for hi in range(1, count + 1):
            if hi == count or starts[hi] != ends[hi - 1]:     # a gap (or the end): the run is over
                yield Run(starts[lo], ends[hi - 1] - starts[lo], ExtentSpan(index, lo, hi))
                lo = hi

    def dumped_bytes(self, start: int = 0, end: int | None = None) -> int:
        """How many bytes of ``[start, end)`` (default: everything) are in the dump (streamed)."""
        end = (1 << 64) if end is None else end
        return sum(stop - lo for segment in self._stream() for lo, stop, _, _ in segment.slices(start, end))


def address_space(task: TaskSource) -> AddressSpace:
    """The address space of ``task`` from its mm, pagemap and shared-memory images (nothing is indexed yet)."""
    return _space(task, task.dump.memory_store)


def _space(task: TaskSource, store: DumpMemory) -> AddressSpace:
    dump, mm = task.dump, task.mm
    vmas = [vma_from_entry(v) for v in mm.vmas] if mm is not None else []
    page_size = page_size_of(mm)
    name = f"pagemap-{task.pid}"
    problems: list[str] = []
    objects = [(vma, f"pagemap-shmem-{ident}") for vma in vmas if vma.shared_object
               for ident in [shmem_ident(dump, store, vma, problems)] if ident is not None]

    def walk(pagemap: str) -> Cursor:
        return Cursor(lambda: store.stream(pagemap, page_size))

    def source() -> Iterator[ExtentIndex]:
        private = store.stream(name, page_size) or iter(())
        return with_shared(private, [(vma, walk(shmem)) for vma, shmem in objects]) if objects else private

    def unresolved() -> list[str]:
        for _, shmem in objects:     # a VMA's walk may stop before the end of its object: walk them whole
            for _ in store.stream(shmem, page_size) or ():
                pass
        return [*store.unresolved(name), *(problem for _, shmem in objects for problem in store.unresolved(shmem))]

    return AddressSpace(task.pid, vmas, source, page_size, mm, problems, unresolved, dump)


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


class _TaskWithArgv(TaskSource, Protocol):
    @property
    def memory_built(self) -> bool:
        """Whether the task's address space is built already (then reading argv from it costs nothing)."""
        ...

    @property
    def cmdline(self) -> list[str]: ...


def cmdline_of(task: _TaskWithArgv) -> list[str]:
    """``task.cmdline`` without indexing the whole address space: only the pages holding argv are resolved
    (the whole pagemap is parsed and its order checked, the pages files only where argv is; a fragmented
    GiB-sized pagemap is not held in memory)."""
    mm = task.mm
    if mm is None or task.memory_built:   # nothing to read, or already built
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


__all__ = ["AddressSpace", "address_space", "cmdline", "cmdline_of", "environ"]
