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
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .image import image_bytes
from .memory import AT_PAGESZ, MAP_SHARED, VMA_ANON_SHARED, VMA_AREA_MEMFD
from .pagemap import PE_LAZY, PE_PARENT, PE_PRESENT
from .pb import message_class

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x2, 0x20
VMA_AREA_REGULAR, VMA_FILE_SHARED, VMA_ANON_PRIVATE = 1, 1 << 7, 1 << 9
TASK_ALIVE = 1
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


def _files(shmem: Sequence[SynthShmem]) -> list:
    file_entry, fown = message_class("file_entry"), message_class("fown_entry")
    owner = fown(uid=0, euid=0, signum=0, pid_type=0, pid=0)
    root = file_entry(type=_fd_type("REG"), id=ROOT_FILE_ID)
    root.reg.CopyFrom(message_class("reg_file_entry")(id=ROOT_FILE_ID, flags=0, pos=0, fown=owner, name="/"))
    entries = [root]
    for inode, obj in enumerate((o for o in shmem if o.memfd_id is not None), 1):
        entry = file_entry(type=_fd_type("MEMFD"), id=obj.memfd_id)
        entry.memfd.CopyFrom(message_class("memfd_file_entry")(id=obj.memfd_id, flags=2, pos=0, fown=owner,
                                                                 inode_id=inode))
        entries.append(entry)
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
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if parent is not None:
        _link_parent(directory, Path(parent), parent_as_file)
    pages_id = 0
    for obj in shmem:
        pages_id += 1
        write_pagemap(directory, f"pagemap-shmem-{obj.shmid}", pages_id, _regions(obj.pages, obj.parent_runs),
                      page_size, entry_pages)
    for task in tasks:
        pages_id += 1
        write_pagemap(directory, f"pagemap-{task.pid}", pages_id,
                      _regions(task.pages, task.parent_runs, task.lazy_runs), page_size, entry_pages)
    root_ids = message_class("task_kobj_ids_entry")(**_ids(0))
    _write(directory, "inventory", "INVENTORY",
           [message_class("inventory_entry")(img_version=2, fdinfo_per_id=True, root_ids=root_ids)])
    if not pre_dump:
        _write_tasks(directory, tasks, shmem, page_size)
    return directory


def _write_tasks(directory: Path, tasks: Sequence[SynthTask], shmem: Sequence[SynthShmem], page_size: int) -> None:
    pstree = message_class("pstree_entry")
    sid = tasks[0].pid if tasks else 0
    _write(directory, "pstree", "PSTREE",
           [pstree(pid=t.pid, ppid=t.ppid, pgid=sid, sid=sid, threads=[t.pid]) for t in tasks])
    for index, task in enumerate(tasks):
        ids = _ids(index)
        _write(directory, f"core-{task.pid}", "CORE", [_core(task)])
        _write(directory, f"ids-{task.pid}", "IDS", [message_class("task_kobj_ids_entry")(**ids)])
        _write(directory, f"mm-{task.pid}", "MM", [_mm(task, page_size)])
        _write(directory, f"fs-{task.pid}", "FS", [message_class("fs_entry")(cwd_id=ROOT_FILE_ID,
                                                                              root_id=ROOT_FILE_ID)])
        _write(directory, f"fdinfo-{ids['files_id']}", "FDINFO", [])
    _write(directory, "files", "FILES", _files(shmem))
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


__all__ = ["PageSource", "SynthShmem", "SynthTask", "SynthVma", "build_dump", "marked_pages", "write_pagemap"]
