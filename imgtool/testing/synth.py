"""Synthetic checkpoints written with imgtool's own encoder, for tests and benchmarks.

``build_dump(dir, [SynthTask(...)])`` writes what ``imgtool.open`` needs to
see processes and their memory: inventory, pstree, core-N (tc.comm,
task_state 1), ids-N, mm-N (VMAs, auxv with AT_PAGESZ), fs-N, files and an
empty fdinfo, pagemap-N + pages-M, and shared-memory objects
(pagemap-shmem-<id>, memfd.img).  Page contents are streamed: a source is
bytes or an iterable of byte chunks (a generator), so a GiB-sized dump never
needs a GiB of RAM.

Pagemap shape is chosen per dump: ``entry_pages=None`` writes one entry per
contiguous run (dense), ``entry_pages=1`` one entry per page (fragmented).
Ranges listed in ``parent_runs`` are written as PE_PARENT entries and need a
``parent`` dump (a ``parent`` symlink, or a file holding the relative path,
is written into the directory).
"""

from __future__ import annotations

import os
import random
import shutil
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import IO, TYPE_CHECKING

from google.protobuf.message import Message

from imgtool.format.flags import (
    MAP_ANONYMOUS,
    MAP_GROWSDOWN,
    MAP_PRIVATE,
    MAP_SHARED,
    PE_LAZY,
    PE_PARENT,
    PE_PRESENT,
    PROT_READ,
    PROT_WRITE,
    VMA_ANON_PRIVATE,
    VMA_ANON_SHARED,
    VMA_AREA_MEMFD,
    VMA_AREA_REGULAR,
    VMA_AREA_STACK,
    VMA_FILE_SHARED,
)
from imgtool.format.image import image_bytes
from imgtool.format.pb import message_class
from imgtool.memory.vma import AT_PAGESZ

if TYPE_CHECKING:
    from imgtool.memory.space import AddressSpace
    from imgtool.memory.vma import Vma
    from imgtool.model.dump import Dump, Task

TASK_ALIVE = 1
O_RDWR = 0o2
ROOT_FILE_ID = 1             # files.img entry for "/": cwd, root and exe of every task

PageSource = bytes | bytearray | memoryview | Iterable[bytes]

_ENTRY = message_class("pagemap_entry")
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class SynthVma:
    """A mapping; the defaults make a private anonymous rw-p one."""

    start: int
    end: int
    prot: int = PROT_READ | PROT_WRITE
    flags: int = MAP_PRIVATE | MAP_ANONYMOUS
    status: int = VMA_AREA_REGULAR | VMA_ANON_PRIVATE
    shmid: int = 0
    pgoff: int = 0

    @classmethod
    def anon(cls, start: int, size: int) -> SynthVma:
        return cls(start, start + size)

    @classmethod
    def anon_shared(cls, start: int, size: int, shmid: int, pgoff: int = 0) -> SynthVma:
        """MAP_SHARED|MAP_ANONYMOUS as CRIU < 3.17 dumped it: contents in pagemap-shmem-<shmid>."""
        return cls(start, start + size, flags=MAP_SHARED | MAP_ANONYMOUS,
                   status=VMA_AREA_REGULAR | VMA_ANON_SHARED, shmid=shmid, pgoff=pgoff)

    @classmethod
    def memfd(cls, start: int, size: int, file_id: int, pgoff: int = 0) -> SynthVma:
        """A shared mapping of the memfd that files.img entry ``file_id`` describes."""
        return cls(start, start + size, flags=MAP_SHARED,
                   status=VMA_AREA_REGULAR | VMA_FILE_SHARED | VMA_AREA_MEMFD, shmid=file_id, pgoff=pgoff)


@dataclass
class SynthTask:
    """A process: VMAs, page contents by address and pages left to the parent dump or lazy."""

    pid: int
    comm: str = "synth"
    vmas: Sequence[SynthVma] = ()
    pages: Mapping[int, PageSource] = field(default_factory=dict)   # vaddr -> data (padded to pages)
    parent_runs: Sequence[tuple[int, int]] = ()    # (vaddr, nr_pages) written as PE_PARENT
    lazy_runs: Sequence[tuple[int, int]] = ()      # (vaddr, nr_pages) written as PE_LAZY, no data
    ppid: int = 0
    mm: Mapping[str, int] = field(default_factory=dict)   # more mm_entry fields (mm_arg_start, ...)
    fds: Sequence[tuple[int, str]] = ()            # (fd, path) of open regular files


@dataclass
class SynthShmem:
    """A shared memory object: anonymous shared / SysV (``memfd_id=None``) or a memfd."""

    shmid: int
    size: int
    pages: Mapping[int, PageSource] = field(default_factory=dict)   # offset -> data
    parent_runs: Sequence[tuple[int, int]] = ()
    memfd_id: int | None = None                   # files.img id that memfd VMAs name in their shmid
    name: str = "synth"


# -- pagemap + pages ------------------------------------------------------------------


def _chunks(source: PageSource) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield bytes(source)
    else:
        yield from source


class _PagemapWriter:
    """Writes pagemap-<name>.img and pages-<id>.img side by side, entry by entry."""

    def __init__(self, directory: Path, name: str, pages_id: int, page_size: int, entry_pages: int | None) -> None:
        self.page_size, self.entry_pages = page_size, entry_pages
        self.pagemap: IO[bytes] = open(directory / f"{name}.img", "wb")  # noqa: SIM115 (closed in close())
        self.pages: IO[bytes] = open(directory / f"pages-{pages_id}.img", "wb")  # noqa: SIM115
        head = message_class("pagemap_head")(pages_id=pages_id)
        self.pagemap.write(image_bytes("PAGEMAP", [head]))
        self.end = 0

    def write(self, regions: Iterable[tuple[int, int, PageSource | None]]) -> None:
        """Regions (vaddr, flags, data) in address order; data only for PE_PRESENT, else (vaddr, flags, nr_pages)."""
        for vaddr, flags, data in sorted(regions, key=lambda r: r[0]):
            if vaddr < self.end:
                raise ValueError(f"synthetic regions overlap at {vaddr:#x}")
            nr = self._data(data) if flags & PE_PRESENT else data
            self._entries(vaddr, nr, flags)
            self.end = vaddr + nr * self.page_size

    def _data(self, source: PageSource) -> int:
        size = 0
        for chunk in _chunks(source):
            self.pages.write(chunk)
            size += len(chunk)
        pad = -size % self.page_size
        self.pages.write(b"\0" * pad)
        return (size + pad) // self.page_size

    def _entries(self, vaddr: int, nr: int, flags: int) -> None:
        step = self.entry_pages or max(nr, 1)
        frames = []
        for first in range(0, nr, step):
            payload = _ENTRY(vaddr=vaddr + first * self.page_size, compat_nr_pages=0, flags=flags,
                             nr_pages=min(step, nr - first)).SerializeToString()
            frames += [_U32.pack(len(payload)), payload]
            if len(frames) >= 8192:
                self.pagemap.write(b"".join(frames))
                frames.clear()
        self.pagemap.write(b"".join(frames))

    def close(self) -> None:
        self.pagemap.close()
        self.pages.close()


def _regions(pages: Mapping[int, PageSource], parent_runs: Sequence[tuple[int, int]],
             lazy_runs: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int, object]]:
    return ([(vaddr, PE_PRESENT, data) for vaddr, data in pages.items()]
            + [(vaddr, PE_PARENT, nr) for vaddr, nr in parent_runs]
            + [(vaddr, PE_LAZY, nr) for vaddr, nr in lazy_runs])


def write_pagemap(directory: Path, name: str, pages_id: int, regions: list[tuple[int, int, object]],
                  page_size: int = 4096, entry_pages: int | None = None) -> None:
    writer = _PagemapWriter(directory, name, pages_id, page_size, entry_pages)
    try:
        writer.write(regions)
    finally:
        writer.close()


# -- the other images -----------------------------------------------------------------


def _write(directory: Path, name: str, kind: str, messages: list) -> None:
    (directory / f"{name}.img").write_bytes(image_bytes(kind, messages))


def _ids(index: int) -> dict[str, int]:
    n = index + 1
    return {"vm_id": n, "files_id": n, "fs_id": n, "sighand_id": n}


def _core(task: SynthTask):
    core = message_class("core_entry")(mtype=1)   # X86_64
    core.tc.task_state, core.tc.exit_code, core.tc.personality = TASK_ALIVE, 0, 0
    core.tc.flags, core.tc.blk_sigset, core.tc.comm = 0, 0, task.comm
    return core


def _mm(task: SynthTask, page_size: int):
    fields = dict.fromkeys(("mm_start_code", "mm_end_code", "mm_start_data", "mm_end_data", "mm_start_stack",
                            "mm_start_brk", "mm_brk", "mm_arg_start", "mm_arg_end", "mm_env_start",
                            "mm_env_end"), 0)
    fields.update(task.mm)
    mm = message_class("mm_entry")(exe_file_id=ROOT_FILE_ID, mm_saved_auxv=[AT_PAGESZ, page_size], **fields)
    for v in task.vmas:
        mm.vmas.add(start=v.start, end=v.end, pgoff=v.pgoff, shmid=v.shmid, prot=v.prot, flags=v.flags,
                    status=v.status, fd=-1)
    return mm


def _owner():
    return message_class("fown_entry")(uid=0, euid=0, signum=0, pid_type=0, pid=0)


def _reg_file(file_id: int, name: str, flags: int = 0):
    entry = message_class("file_entry")(type=_fd_type("REG"), id=file_id)
    entry.reg.CopyFrom(message_class("reg_file_entry")(id=file_id, flags=flags, pos=0, fown=_owner(), name=name))
    return entry


def _fd_ids(tasks: Sequence[SynthTask], shmem: Sequence[SynthShmem]) -> list[list[int]]:
    """files.img ids of each task's ``fds``: numbered after every other file id."""
    first = max([ROOT_FILE_ID] + [o.memfd_id for o in shmem if o.memfd_id is not None]) + 1
    ids = []
    for task in tasks:
        ids.append(list(range(first, first + len(task.fds))))
        first += len(task.fds)
    return ids


def _files(shmem: Sequence[SynthShmem], tasks: Sequence[SynthTask] = ()) -> list:
    file_entry, owner = message_class("file_entry"), _owner()
    entries = [_reg_file(ROOT_FILE_ID, "/")]
    for inode, obj in enumerate((o for o in shmem if o.memfd_id is not None), 1):
        entry = file_entry(type=_fd_type("MEMFD"), id=obj.memfd_id)
        entry.memfd.CopyFrom(message_class("memfd_file_entry")(id=obj.memfd_id, flags=2, pos=0, fown=owner,
                                                                 inode_id=inode))
        entries.append(entry)
    for task, ids in zip(tasks, _fd_ids(tasks, shmem), strict=True):
        entries += [_reg_file(file_id, path, O_RDWR) for file_id, (_, path) in zip(ids, task.fds, strict=True)]
    return entries


def _fd_type(name: str) -> int:
    return message_class("file_entry").DESCRIPTOR.fields_by_name["type"].enum_type.values_by_name[name].number


def _memfd_inodes(shmem: Sequence[SynthShmem]) -> list:
    inode = message_class("memfd_inode_entry")
    memfds = [o for o in shmem if o.memfd_id is not None]
    return [inode(name=o.name, uid=0, gid=0, size=o.size, shmid=o.shmid, seals=1, inode_id=n)
            for n, o in enumerate(memfds, 1)]


def _link_parent(directory: Path, parent: Path, as_file: bool) -> None:
    target = os.path.relpath(parent, directory)
    link = directory / "parent"
    if as_file:
        link.write_text(target)
    else:
        link.symlink_to(target)


# -- the whole dump -------------------------------------------------------------------


def build_dump(directory: str | os.PathLike[str], tasks: Sequence[SynthTask], *, parent: str | os.PathLike[str]
               | None = None, shmem: Sequence[SynthShmem] = (), page_size: int = 4096,
               entry_pages: int | None = None, parent_as_file: bool = False, pre_dump: bool = False) -> Path:
    """Write a checkpoint of ``tasks`` into ``directory`` (created) and return its path.

    ``pre_dump`` writes only what ``criu pre-dump`` does (inventory, pagemaps, pages).
    """
    directory = _prepare(directory, parent, parent_as_file)
    pages_id = 0
    for obj in shmem:
        pages_id += 1
        write_pagemap(directory, f"pagemap-shmem-{obj.shmid}", pages_id, _regions(obj.pages, obj.parent_runs),
                      page_size, entry_pages)
    for task in tasks:
        pages_id += 1
        write_pagemap(directory, f"pagemap-{task.pid}", pages_id,
                      _regions(task.pages, task.parent_runs, task.lazy_runs), page_size, entry_pages)
    _write_inventory(directory)
    if not pre_dump:
        _write_tasks(directory, tasks, shmem, page_size)
    return directory


def _prepare(directory: str | os.PathLike[str], parent: str | os.PathLike[str] | None, parent_as_file: bool) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if parent is not None:
        _link_parent(directory, Path(parent), parent_as_file)
    return directory


def _write_inventory(directory: Path) -> None:
    root_ids = message_class("task_kobj_ids_entry")(**_ids(0))
    _write(directory, "inventory", "INVENTORY",
           [message_class("inventory_entry")(img_version=2, fdinfo_per_id=True, root_ids=root_ids)])


def _write_tasks(directory: Path, tasks: Sequence[SynthTask], shmem: Sequence[SynthShmem], page_size: int) -> None:
    pstree, fdinfo = message_class("pstree_entry"), message_class("fdinfo_entry")
    sid = tasks[0].pid if tasks else 0
    _write(directory, "pstree", "PSTREE",
           [pstree(pid=t.pid, ppid=t.ppid, pgid=sid, sid=sid, threads=[t.pid]) for t in tasks])
    for index, (task, file_ids) in enumerate(zip(tasks, _fd_ids(tasks, shmem), strict=True)):
        ids = _ids(index)
        _write(directory, f"core-{task.pid}", "CORE", [_core(task)])
        _write(directory, f"ids-{task.pid}", "IDS", [message_class("task_kobj_ids_entry")(**ids)])
        _write(directory, f"mm-{task.pid}", "MM", [_mm(task, page_size)])
        _write(directory, f"fs-{task.pid}", "FS", [message_class("fs_entry")(cwd_id=ROOT_FILE_ID,
                                                                              root_id=ROOT_FILE_ID)])
        _write(directory, f"fdinfo-{ids['files_id']}", "FDINFO",
               [fdinfo(id=file_id, flags=0, type=_fd_type("REG"), fd=fd)
                for file_id, (fd, _) in zip(file_ids, task.fds, strict=True)])
    _write(directory, "files", "FILES", _files(shmem, tasks))
    if any(o.memfd_id is not None for o in shmem):
        _write(directory, "memfd", "MEMFD_INODE", _memfd_inodes(shmem))


# -- content helpers ----------------------------------------------------------------


def marked_pages(first: int, count: int, page_size: int = 4096, prefix: bytes = b"PAGE",
                 fill: bytes = b"", chunk_pages: int = 256) -> Iterator[bytes]:
    """Pages ``first..first+count-1``, each starting with ``prefix + b"%08d" % i``, the rest ``fill``
    repeated (zeros when empty); yielded ``chunk_pages`` at a time.
    """
    body = (fill * (page_size // max(len(fill), 1) + 1))[:page_size] if fill else bytes(page_size)
    for start in range(first, first + count, chunk_pages):
        pages = []
        for i in range(start, min(start + chunk_pages, first + count)):
            mark = prefix + b"%08d" % i
            pages.append(mark + body[len(mark):])
        yield b"".join(pages)


# -- big seeded dumps ------------------------------------------------------------------

PAGE = 4096
GIB_PAGES = (1 << 30) // PAGE
AREA_PAGES = 1 << 16            # private memory is cut into anonymous VMAs of at most 256 MiB
PRIVATE_BASE = 0x100000000000
AREA_GAP = 1 << 30
SHMEM_BASE = 0x7F0000000000
STACK_BASE = 0x7FFC00000000
STACK_PAGES = 32
SHMEM_ID = 4242
FIRST_PID = 1000
DIRTY_RUN = 8                   # a child level rewrites runs of 1..DIRTY_RUN pages
_POOL = 4 << 20
_MASK64 = (1 << 64) - 1


class PageContent:
    """Seeded pseudo-random page bytes, addressable by (salt, page number): any page can be regenerated.

    Each aligned block of 256 pages is a window of one random pool (``random.Random(seed).randbytes``)
    at an offset hashed from (seed, salt, block), so writing a GiB costs memcpy, not a generator call per byte.
    """

    BLOCK = 256

    def __init__(self, seed: int, page_size: int = PAGE) -> None:
        self.seed, self.page_size = seed, page_size
        self.pool = memoryview(random.Random(seed).randbytes(_POOL + self.BLOCK * page_size))

    def _offset(self, salt: int, block: int) -> int:
        h = (self.seed * 0x9E3779B97F4A7C15 + salt * 0xC2B2AE3D27D4EB4F + block * 0x165667B19E3779F9) & _MASK64
        h = ((h ^ (h >> 31)) * 0xBF58476D1CE4E5B9) & _MASK64
        return (h ^ (h >> 29)) % _POOL

    def chunks(self, salt: int, first: int, count: int) -> Iterator[memoryview]:
        """Pages ``first .. first + count - 1`` (page numbers: vaddr // page_size) of version ``salt``."""
        page, block = self.page_size, self.BLOCK
        pos, end = first, first + count
        while pos < end:
            stop = min(end, (pos // block + 1) * block)
            at = self._offset(salt, pos // block) + (pos % block) * page
            yield self.pool[at:at + (stop - pos) * page]
            pos = stop


@dataclass(frozen=True)
class _Area:
    """The pages of one VMA (or shared object) in the first dump: ``pages`` of them from ``start``, one every
    ``stride`` pages (2: one-page runs between one-page holes, i.e. a fragmented pagemap).  ``data`` gives
    fixed contents instead of seeded bytes, never rewritten by later dumps."""

    start: int
    pages: int
    stride: int = 1
    data: bytes | None = None

    @property
    def size(self) -> int:
        return self.pages * self.stride * PAGE


@dataclass(frozen=True)
class _Space:
    """One pagemap: a task's private memory or a shared memory object."""

    name: str
    salt: int
    areas: tuple[_Area, ...]


def _segments(rng: random.Random, pages: int, dirty: float) -> Iterator[tuple[int, int, bool]]:
    """(first, count, rewritten) covering ``[0, pages)``: rewritten runs of 1..DIRTY_RUN pages, ``dirty`` of all."""
    if not 0 < dirty < 1:
        yield 0, pages, dirty >= 1
        return
    gap_max = round((DIRTY_RUN + 1) * (1 - dirty) / dirty)     # mean gap / mean run = (1 - dirty) / dirty
    pos, run_start = 0, 0
    while pos < pages:
        gap = min(pages - pos, rng.randint(0, gap_max))
        if gap:
            if pos > run_start:
                yield run_start, pos - run_start, True
            yield pos, gap, False
            pos += gap
            run_start = pos
        pos += min(pages - pos, rng.randint(1, DIRTY_RUN))
    if pos > run_start:
        yield run_start, pos - run_start, True


def _area_entries(area: _Area, segments: Iterable[tuple[int, int, bool]]) -> Iterator[tuple[int, int, int]]:
    """(vaddr, nr_pages, flags) of the pagemap entries of ``area``, in address order."""
    step = area.stride * PAGE
    for first, count, rewritten in segments:
        flags = PE_PRESENT if rewritten else PE_PARENT
        if area.stride == 1:
            yield area.start + first * PAGE, count, flags
        else:
            yield from ((area.start + k * step, 1, flags) for k in range(first, first + count))


class _LevelWriter:
    """pagemap-<name>.img and pages-<id>.img of one space in one dump, entry by entry."""

    def __init__(self, directory: Path, name: str, pages_id: int, sparse: bool) -> None:
        self.sparse, self.frames, self.size = sparse, [], 0
        self.last_page = -1                                    # offset of the last page written
        self.pages_path = directory / f"pages-{pages_id}.img"
        self.pagemap: IO[bytes] = open(directory / f"{name}.img", "wb")  # noqa: SIM115 (closed in close())
        self.pages: IO[bytes] = open(self.pages_path, "wb", buffering=1 << 20)  # noqa: SIM115
        self.pagemap.write(image_bytes("PAGEMAP", [message_class("pagemap_head")(pages_id=pages_id)]))

    def entry(self, vaddr: int, nr: int, flags: int, data: Iterable[memoryview] | None) -> None:
        payload = _ENTRY(vaddr=vaddr, compat_nr_pages=0, flags=flags, nr_pages=nr).SerializeToString()
        self.frames += (_U32.pack(len(payload)), payload)
        if len(self.frames) >= 16384:
            self._flush()
        if not flags & PE_PRESENT:
            return
        if data is None:
            self.pages.seek(nr * PAGE, os.SEEK_CUR)
        else:
            for chunk in data:
                self.pages.write(chunk)
        self.size += nr * PAGE
        self.last_page = self.size - PAGE

    def _flush(self) -> None:
        self.pagemap.write(b"".join(self.frames))
        self.frames.clear()

    def close(self) -> None:
        self._flush()
        self.pagemap.close()
        if self.sparse:
            self.pages.truncate(self.size)
        self.pages.close()


def _areas(pages: int, stride: int) -> list[_Area]:
    areas, start = [], PRIVATE_BASE
    for first in range(0, pages, AREA_PAGES):
        areas.append(_Area(start, min(AREA_PAGES, pages - first), stride))
        start += areas[-1].size + AREA_GAP
    return areas


def _plan(tasks: int, gib: float, stride: int, shmem_mib: int, fds: int) -> tuple[list[_Space], list[SynthTask]]:
    """The pagemaps (shared object first, as build_dump numbers them) and the tasks of a generated dump."""
    total = round(gib * GIB_PAGES)
    spaces, synth = [], []
    shared: list[SynthVma] = []
    if shmem_mib:
        area = _Area(0, shmem_mib * ((1 << 20) // PAGE), stride)
        spaces.append(_Space(f"pagemap-shmem-{SHMEM_ID}", 1, (area,)))
        shared.append(SynthVma.anon_shared(SHMEM_BASE, area.size, SHMEM_ID))
    for i in range(tasks):
        pid = FIRST_PID + i
        areas = _areas(total // tasks + (i < total % tasks), stride)
        own_fds = [(3 + n, f"/srv/synth/{pid}/data-{n}.db") for n in range(fds // tasks + (i < fds % tasks))]
        stack, mm = _stack(pid, i)
        vmas = sorted([SynthVma.anon(a.start, a.size) for a in areas] + shared + [stack], key=lambda v: v.start)
        synth.append(SynthTask(pid, comm=f"worker-{i}" if i else "synth", ppid=FIRST_PID if i else 0,
                               vmas=vmas, fds=own_fds, mm=mm))
        spaces.append(_Space(f"pagemap-{pid}", 2 + i, (*areas, _Area(stack.end - PAGE, 1, data=_args_page(pid, i)))))
    return spaces, synth


def _args(pid: int, index: int) -> tuple[bytes, bytes]:
    """NUL-terminated argv and environment strings of a generated task."""
    argv = [b"/usr/bin/synth", b"--worker", b"%d" % index, b"--pid-file", b"/run/synth-%d.pid" % pid]
    env = [b"PATH=/usr/bin:/bin", b"HOME=/srv/synth", b"LANG=C.UTF-8"]
    return b"".join(a + b"\0" for a in argv), b"".join(e + b"\0" for e in env)


def _args_page(pid: int, index: int) -> bytes:
    argv, env = _args(pid, index)
    return (argv + env).ljust(PAGE, b"\0")


def _stack(pid: int, index: int) -> tuple[SynthVma, dict[str, int]]:
    """A 32-page stack VMA whose top page (the only one dumped) starts with argv and the environment."""
    argv, env = _args(pid, index)
    top = STACK_BASE + STACK_PAGES * PAGE
    vma = SynthVma(STACK_BASE, top, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN,
                   status=VMA_AREA_REGULAR | VMA_AREA_STACK | VMA_ANON_PRIVATE)
    arg = top - PAGE
    return vma, {"mm_start_stack": arg, "mm_arg_start": arg, "mm_arg_end": arg + len(argv),
                 "mm_env_start": arg + len(argv), "mm_env_end": arg + len(argv) + len(env)}


def _write_space(directory: Path, space: _Space, pages_id: int, level: int, seed: int, dirty: float,
                 content: PageContent, sparse: bool) -> _LevelWriter:
    """One pagemap of dump ``level``: everything in level 0, a seeded ``dirty`` share of it later (rest PE_PARENT)."""
    rng = random.Random(f"{seed}/{space.name}/{level}")
    salt = space.salt << 16 | level
    writer = _LevelWriter(directory, space.name, pages_id, sparse)
    try:
        for area in space.areas:
            if area.data is not None:
                writer.entry(area.start, area.pages, PE_PARENT if level else PE_PRESENT, [area.data])
                continue
            segments = [(0, area.pages, True)] if level == 0 else _segments(rng, area.pages, dirty)
            for vaddr, nr, flags in _area_entries(area, segments):
                data = None if sparse or not flags & PE_PRESENT else content.chunks(salt, vaddr // PAGE, nr)
                writer.entry(vaddr, nr, flags, data)
    finally:
        writer.close()
    return writer


def _plant(writer: _LevelWriter, needle: bytes) -> None:
    if writer.last_page < 0 or len(needle) > PAGE - 1024:
        raise ValueError("no page to plant the needle in (or the needle is longer than 3 KiB)")
    with open(writer.pages_path, "r+b") as f:
        f.seek(writer.last_page + 1000)
        f.write(needle)


def generate(directory: str | os.PathLike[str], *, seed: int = 0, tasks: int = 1, gib: float = 1.0,
             fragmented: bool = False, shmem_mib: int = 0, chain: int = 1, fds: int = 0, dirty: float = 0.1,
             needle: bytes | None = None, sparse: bool = False) -> list[Path]:
    """Write a seeded, reproducible chain of ``chain`` dumps into ``directory``/d0, d1, ...; return them, newest last.

    ``gib`` GiB of private memory are split among ``tasks`` processes (pids 1000, 1001, ...; anonymous VMAs
    of at most 256 MiB).  The first dump holds every page: one pagemap entry per VMA, or with ``fragmented``
    one-page runs between one-page holes (262,144 entries per GiB).  Each later dump rewrites a seeded
    ``dirty`` share of the pages (runs of 1..8 pages, fresh bytes) and marks the rest PE_PARENT.  A
    ``shmem_mib`` anonymous shared object is mapped into every task; ``fds`` regular files are spread over
    the tasks (files.img + fdinfo).  ``needle`` is written into the last page the newest dump holds for the
    last task.  ``sparse`` leaves the pages files as holes (zero pages, no disk space): for benchmarks that
    only read pagemaps.
    """
    root = Path(directory)
    spaces, synth_tasks = _plan(tasks, gib, 2 if fragmented else 1, shmem_mib, fds)
    content = PageContent(seed)
    dumps: list[Path] = []
    for level in range(chain):
        target = _prepare(root / f"d{level}", dumps[-1] if dumps else None, False)
        writers = [_write_space(target, space, pages_id, level, seed, dirty, content, sparse)
                   for pages_id, space in enumerate(spaces, 1)]
        if needle and level == chain - 1:
            _plant(writers[-1], needle)
        _write_inventory(target)
        _write_tasks(target, synth_tasks, (), PAGE)
        dumps.append(target)
    return dumps


# -- scaling a real dump -----------------------------------------------------------------


def scale_corpus_dump(src_dir: str | os.PathLike[str], dst_dir: str | os.PathLike[str], factor: float) -> Path:
    """Copy a real dump into ``dst_dir`` with about ``factor`` times its memory (``src_dir`` is only read).

    The dumped pages of the largest private anonymous VMA (of any task) are repeated in a new VMA with the
    same protections and pagemap shape, placed in a free gap of that task's address space: its mm image,
    pagemap and pages file are rewritten, every other file is copied.
    """
    from imgtool.model.dump import Dump

    if factor < 1:
        raise ValueError("the scale factor must be at least 1")
    src, dst = Path(src_dir), Path(dst_dir)
    _copy_dump(src, dst)
    with Dump.open(src) as dump:
        task, vma = _largest_anon_vma(dump)
        space = task.memory
        pattern = _dumped_pattern(space, vma)
        total = sum(p.stat().st_size for p in dump.path.glob("pages-*.img"))
        copies = max(1, round((factor - 1) * total / sum(length for _, length in pattern)))
        start = _free_gap(space.vmas, copies * vma.size)
        _rewrite_mm(task, dst, vma, start, copies * vma.size)
        _rewrite_pagemap(dump, task.pid, dst, _copies(space, vma, pattern, start, copies))
    return dst


def _copy_dump(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name == "parent" and item.is_dir():
            (dst / "parent").symlink_to(item.resolve())
        elif item.is_file():
            shutil.copyfile(item, dst / item.name)   # contents only: the source may be read-only


def _largest_anon_vma(dump: Dump) -> tuple[Task, Vma]:
    best = None
    for task in dump.tasks:
        if task.mm is None:
            continue
        space = task.memory
        for vma in space.vmas:
            if vma.flags & MAP_SHARED or not vma.status_bits & VMA_ANON_PRIVATE:
                continue
            dumped = space.dumped_bytes(vma.start, vma.end)
            if dumped and (best is None or dumped > best[0]):
                best = (dumped, task, vma)
    if best is None:
        raise ValueError(f"{dump.path}: no private anonymous VMA with dumped pages to scale")
    return best[1], best[2]


def _dumped_pattern(space: AddressSpace, vma: Vma) -> list[tuple[int, int]]:
    """(offset in the VMA, length) of its address-contiguous dumped runs."""
    runs: list[tuple[int, int]] = []
    for start, end, _, _ in space.index.slices(vma.start, vma.end):
        if runs and runs[-1][0] + runs[-1][1] == start - vma.start:
            runs[-1] = (runs[-1][0], runs[-1][1] + end - start)
        else:
            runs.append((start - vma.start, end - start))
    return runs


def _free_gap(vmas: Sequence[Vma], size: int, align: int = 2 << 20) -> int:
    """Start of a free, ``align``-ed range of ``size`` bytes with ``align`` bytes free on both sides."""
    bounds = sorted((v.start, v.end) for v in vmas)
    for (_, low), (high, _) in reversed(list(pairwise(bounds))):
        start = -(-(low + align) // align) * align
        if start + size + align <= high:
            return start
    raise ValueError(f"no free gap of {size} bytes between the VMAs")


def _rewrite_mm(task: Task, dst: Path, vma: Vma, start: int, size: int) -> None:
    mm = type(task.mm)()
    mm.CopyFrom(task.mm)
    template = next(v for v in mm.vmas if v.start == vma.start)
    added = type(template)()
    added.CopyFrom(template)
    added.start, added.end, added.pgoff = start, start + size, 0
    vmas = sorted([*mm.vmas, added], key=lambda v: v.start)
    del mm.vmas[:]
    for v in vmas:
        mm.vmas.add().CopyFrom(v)
    (dst / f"mm-{task.pid}.img").write_bytes(image_bytes("MM", [mm]))


def _copies(space: AddressSpace, vma: Vma, pattern: list[tuple[int, int]], start: int,
            copies: int) -> Iterator[tuple[int, int, Iterator[bytes]]]:
    """(vaddr, length, data) of the new VMA's runs: ``copies`` times the pattern of ``vma``."""
    for k in range(copies):
        for offset, length in pattern:
            yield start + k * vma.size + offset, length, _read(space, vma.start + offset, length)


def _read(space: AddressSpace, address: int, length: int, chunk: int = 8 << 20) -> Iterator[bytes]:
    for pos in range(address, address + length, chunk):
        yield space.raw(pos, min(chunk, address + length - pos))


def _entry_pages(msg: Message) -> tuple[int, bool]:
    """(bytes in the pages file, is PE_PRESENT) of a pagemap entry, as CRIU reads it."""
    nr = msg.nr_pages if msg.HasField("nr_pages") else msg.compat_nr_pages
    flags = msg.flags if msg.HasField("flags") else (PE_PARENT if msg.in_parent else PE_PRESENT)
    return nr, bool(flags & PE_PRESENT)


def _rewrite_pagemap(dump: Dump, pid: int, dst: Path, added: Iterator[tuple[int, int, Iterator[bytes]]]) -> None:
    """pagemap-<pid> and its pages file with the ``added`` runs spliced in at their address."""
    image = dump.require(f"pagemap-{pid}")
    if image.header.byteorder != "<":
        raise ValueError("only little-endian dumps can be scaled")
    entries = image.entries()
    head = next(entries).message
    page = PAGE
    pending = next(added, None)
    with open(dst / f"pagemap-{pid}.img", "wb") as pagemap, \
            open(dst / f"pages-{head.pages_id}.img", "wb") as pages, \
            open(dump.path / f"pages-{head.pages_id}.img", "rb") as old:
        pagemap.write(image_bytes("PAGEMAP", [head]))
        for entry in entries:
            while pending is not None and pending[0] < entry.message.vaddr:
                _write_run(pagemap, pages, *pending, page)
                pending = next(added, None)
            pagemap.write(_U32.pack(entry.size) + bytes(entry.payload))
            nr, present = _entry_pages(entry.message)
            if present:
                pages.write(old.read(nr * page))
        while pending is not None:
            _write_run(pagemap, pages, *pending, page)
            pending = next(added, None)


def _write_run(pagemap: IO[bytes], pages: IO[bytes], vaddr: int, length: int, data: Iterator[bytes],
               page: int) -> None:
    payload = _ENTRY(vaddr=vaddr, compat_nr_pages=0, flags=PE_PRESENT, nr_pages=length // page).SerializeToString()
    pagemap.write(_U32.pack(len(payload)) + payload)
    for chunk in data:
        pages.write(chunk)


__all__ = ["PageContent", "PageSource", "SynthShmem", "SynthTask", "SynthVma", "build_dump", "generate", "marked_pages",
           "scale_corpus_dump", "write_pagemap"]
