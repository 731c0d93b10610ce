"""One dump's pages files and pagemaps, and PE_PARENT pages resolved through its parent dumps.

``DumpMemory.stream`` resolves a pagemap one batch of entries at a time into ``ExtentIndex`` segments in
address order, reading the parent dump's pagemap of the same name (as many levels up as needed) with a
cursor of its own.  Each dump owns its store (``ImageSource.memory_store``); a windowed store keeps only the
extents of one address range (``cmdline_of``) and is the caller's to close.
"""

from __future__ import annotations

import weakref
from bisect import bisect_right
from collections.abc import Iterator
from itertools import compress, repeat
from operator import add, and_, eq, gt, le, lt, or_, sub
from pathlib import Path
from typing import Protocol

from google.protobuf.message import Message

from imgtool.errors import FormatError, ImgtoolError, MissingImageError
from imgtool.format import pagemap
from imgtool.format.flags import PE_PARENT, PE_PRESENT
from imgtool.format.located import Mapped
from imgtool.memory.coalesce import Runs, entry_runs, kind_stretches, read_head
from imgtool.memory.extents import Cursor, ExtentIndex, Window
from imgtool.memory.pages import Backing, PagesFile


class ImageSource(Protocol):
    """A dump directory: its images, its parent dump, and the store of its pages files it owns."""

    @property
    def path(self) -> Path: ...

    @property
    def location(self) -> str:
        """Where the images are, as the user finds them (an archive's are in a temp dir at ``path``)."""
        ...

    @property
    def parent(self) -> ImageSource | None: ...

    @property
    def memory_store(self) -> DumpMemory:
        """The dump's pages files and pagemaps (one per dump, created on first use, closed with the dump)."""
        ...

    def entries(self, name: str) -> list[Message]: ...

    def backing(self, path: Path, window: tuple[int, int] | None = None) -> Backing | None:
        """Where the bytes of the file at ``path`` really are (a member of an archive), or None: in it.
        ``window``: the addresses a reader of a pages file needs (None: any)."""
        ...



class DumpMemory:
    """Pages files of one dump (shared by its tasks: ``ImageSource.memory_store``) and its pagemaps, streamed."""

    def __init__(self, dump: ImageSource, window: tuple[int, int] | None = None) -> None:
        self._dump = weakref.ref(dump)     # the dump owns its store: no cycle
        self.path = dump.path
        self.window = window       # keep only what private memory has in [lo, hi) (see Window); not cached
        self._pages: dict[int, PagesFile] = {}
        self._parents: list[DumpMemory] = []               # windowed stores of the parent dumps
        self.missing_parent_bytes: dict[str, int] = {}   # PE_PARENT ranges no parent has

    def pages(self, pages_id: int) -> PagesFile:
        if pages_id not in self._pages:
            path = self.path / f"pages-{pages_id}.img"
            dump = self._dump()
            if dump is None:   # an archive's placeholder would read as zeros: never guess
                raise ImgtoolError(f"{self.path}: the dump of these pages files is gone")
            if not path.is_file():
                raise MissingImageError(f"{dump.location}: pages-{pages_id}.img is missing (named by a pagemap)")
            self._pages[pages_id] = PagesFile(path, dump.backing(path, self.window))   # argv: the window
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
        return ExtentIndex() if window is None else Window(*window)

    def _parent_stream(self, name: str, page_size: int, seen: frozenset[Path]) -> Iterator[ExtentIndex] | None:
        dump = self._dump()
        parent = dump.parent if dump is not None else None
        if parent is None or parent.path.resolve() in seen:
            return None
        if self.window is None:
            return parent.memory_store.stream(name, page_size, seen)
        self._parents.append(DumpMemory(parent, self.window))
        return self._parents[-1].stream(name, page_size, seen)

    def _stream(self, path: Path, name: str, page_size: int, seen: frozenset[Path]) -> Iterator[ExtentIndex]:
        dump = self._dump()
        if dump is None:
            raise ImgtoolError(f"{self.path}: the dump of this pagemap is gone")
        with Mapped(path, dump.backing(path)) as mapped:
            if not len(mapped):
                raise FormatError("empty pagemap", path=path.name)
            yield from self._segments_from(mapped.view, path.name, name, page_size, seen)

    def _segments_from(self, view: memoryview, file: str, name: str, page_size: int,
                       seen: frozenset[Path]) -> Iterator[ExtentIndex]:
        pages_id, head_end, order = read_head(view, file)
        lo, hi = self._window_of(name) or (0, 1 << 64)
        parent = Cursor(lambda: self._parent_stream(name, page_size, seen))     # opened on first PE_PARENT
        missing = 0
        batches = pagemap.batches(view, head_end, order, file)
        for kinds, starts, ends, offsets in entry_runs(batches, page_size, file, lo):
            if not kinds or starts[0] >= hi or ends[-1] <= lo:
                continue
            segment = self._new_index(name)
            if not self._bulk(segment, pages_id, parent, kinds, starts, ends, offsets):
                missing += self._one_by_one(segment, pages_id, parent, (kinds, starts, ends, offsets), file)
            if len(segment):
                yield segment
        if missing:
            self.missing_parent_bytes[name] = missing

    def _one_by_one(self, segment: ExtentIndex, pages_id: int, parent: Cursor, runs: Runs, file: str) -> int:
        """Add a batch of runs one stretch of a kind at a time, raising the first error in order; return how
        many bytes of PE_PARENT runs no parent has."""
        kinds, starts, ends, offsets = runs
        missing = 0
        for first, last, kind in kind_stretches(kinds):
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

    # Fast path for 'mem search (2-dump chain)' and 'diff --only memory (parent, child)': a whole batch of runs,
    # parent pages included, in one ``extend``; ``_one_by_one`` is the plain loop it must agree with
    # (tests/test_fast_paths.py).
    def _bulk(self, index: ExtentIndex, pages_id: int, parent: Cursor, kinds: list[int],
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
        if isinstance(index, Window):
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
    if not isinstance(index, Window):
        return starts, ends
    keep = index.overlapping(starts, ends)
    return list(compress(starts, keep)), list(compress(ends, keep))


# Fast path for 'mem search (2-dump chain)': PE_PARENT stretches of a mostly unchanged child, in bulk.
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


__all__ = ["DumpMemory", "ImageSource"]
