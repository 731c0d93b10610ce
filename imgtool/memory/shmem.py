"""Shared memory: anonymous shared, memfd and SysV shm mappings read from ``pagemap-shmem-<shmid>.img``.

The shmem pagemap's vaddr is an offset inside the object (criu/shmem.c).  A memfd VMA's ``shmid`` is the id
of a MEMFD entry in files.img; its inode in memfd.img has the shmem id (criu/cr-dump.c, criu/memfd.c).
Anonymous shared and SysV VMAs carry the shmem id itself (the inode number; for SysV the IPC id,
criu/ipc_ns.c).  A MAP_PRIVATE memfd mapping keeps its COW'ed pages in the private pagemap.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from itertools import chain

from imgtool.memory.chain import DumpMemory, ImageSource
from imgtool.memory.extents import Cursor, ExtentIndex
from imgtool.memory.pages import PagesFile
from imgtool.memory.vma import Vma


def shmem_id(dump: ImageSource, vma: Vma) -> int | None:
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


def shmem_ident(dump: ImageSource, store: DumpMemory, vma: Vma, problems: list[str]) -> int | None:
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


def with_shared(segments: Iterator[ExtentIndex], objects: list[tuple[Vma, Cursor]]) -> Iterator[ExtentIndex]:
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


__all__ = ["shmem_id", "shmem_ident", "with_shared"]
