"""A task of a dump → an ELF core file, as the Linux kernel and gdb's gcore write them.

One PT_NOTE, then one PT_LOAD per VMA.  Memory is copied extent by extent, in the address order of the task's
extents (``AddressSpace.around``, as the streaming read walks them): long extents with copy_file_range, short ones
gathered in a staging buffer and written with pwrite, each at its offset in the segment: pages never dumped stay
holes (sparse output), nothing of a task's memory is held.  File-backed pages that were not dumped are the
file's: without ``files_from`` they are left out (``p_filesz`` 0, as the kernel does for clean file text; gdb
reads them from the files NT_FILE names), with it they are copied from the file found under that root.  A
file-backed VMA that is partly dumped is cut into one PT_LOAD per dumped and per undumped stretch.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from google.protobuf.message import Message

from imgtool.analysis.core import notes
from imgtool.analysis.core.elf import EM_AARCH64, EM_X86_64, Segment, headers, layout, prot_flags
from imgtool.errors import CoreError, ImgtoolError
from imgtool.format.flags import VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE, VMA_FILE_SHARED
from imgtool.memory.pages import PagesFile
from imgtool.memory.space import AddressSpace, cmdline_of
from imgtool.memory.stream import WINDOW
from imgtool.memory.vma import Vma
from imgtool.model.dump import Dump, Task

COPY_CHUNK = 1 << 20
DIRECT = 256 << 10     # extents this long are copied with copy_file_range, shorter ones through the staging buffer
Progress = Callable[[int], None]     # called with the bytes just written


class Arch(NamedTuple):
    name: str
    machine: int
    field: str      # the core_entry field holding the registers


ARCHES = {"X86_64": Arch("x86_64", EM_X86_64, "thread_info"), "AARCH64": Arch("aarch64", EM_AARCH64, "ti_aarch64")}


class Piece(NamedTuple):
    """A PT_LOAD and where its bytes come from: the dump (``dumped``) over the file ``source`` (or zeros)."""

    segment: Segment
    dumped: bool                 # copy the dumped pages of the range
    source: Path | None = None   # fill from this file first
    file_offset: int = 0


# -- notes ------------------------------------------------------------------------------------------


def arch_of(task: Task) -> Arch:
    core = task.core
    name = core.DESCRIPTOR.fields_by_name["mtype"].enum_type.values_by_number.get(core.mtype)
    label = name.name if name is not None else str(core.mtype)
    if label not in ARCHES:
        raise CoreError(f"core-{task.pid}.img: architecture {label} is not supported (only x86_64 and aarch64)")
    return ARCHES[label]


def _thread_core(task: Task, tid: int, arch: Arch) -> Message:
    try:
        core = task.thread_core(tid)
    except ImgtoolError as exc:
        raise CoreError(f"thread {tid} of task {task.pid}: {exc}") from None
    if not core.HasField(arch.field):
        raise CoreError(f"{task.dump.location}/core-{tid}.img: no registers for thread {tid} ({arch.field} missing)")
    if arch.field == "thread_info" and core.thread_info.gpregs.mode == 2:
        raise CoreError(f"{task.dump.location}/core-{tid}.img: 32-bit (compat) x86 tasks are not supported")
    return core


def _xcr0(dump: Dump, fp: Message) -> int:
    """The dump's xsave feature mask (cpuinfo.img when present), else what the registers carry."""
    cpus = dump.entries("cpuinfo") if dump.image("cpuinfo") is not None else []
    mask = cpus[0].x86_entry[0].xfeatures_mask if cpus and cpus[0].x86_entry else 0
    return notes.xcr0_of(fp, mask)


def thread_notes(task: Task, arch: Arch) -> bytes:
    """The notes of every thread, the main thread first."""
    tids = [task.pid] + [t for t in task.threads if t != task.pid]
    tc = task.core.tc if task.core.HasField("tc") else None
    out, xcr0 = [], None
    for tid in tids:
        core = _thread_core(task, tid, arch)
        th = core.thread_core if core.HasField("thread_core") else None
        ids = notes.Ids(tid, task.ppid, task.pgid, task.sid)
        pending = notes.signal_mask([th.signals_p if th is not None and th.HasField("signals_p") else None])
        held = th.blk_sigset if th is not None and th.HasField("blk_sigset") else (tc.blk_sigset if tc else 0)
        info = getattr(core, arch.field)
        if arch.machine == EM_X86_64:
            xcr0 = _xcr0(task.dump, info.fpregs) if xcr0 is None else xcr0
            out.append(notes.x86_thread(ids, info, pending, held, xcr0))
        else:
            out.append(notes.aarch64_thread(ids, info, pending, held))
    return b"".join(out)


def _state(task: Task) -> str:
    # a checkpointed task is frozen, not running: "S" for a live one
    return {"zombie": "Z", "stopped": "T"}.get(task.state, "S")


def process_notes(task: Task, arch: Arch, space: AddressSpace, mappings: list[notes.Mapped]) -> bytes:
    """NT_PRPSINFO, the threads' notes, NT_AUXV and NT_FILE (gcore's order)."""
    creds, tc = task.creds, task.core.tc
    nice = task.core.thread_core.sched_nice if task.core.HasField("thread_core") else 0
    info = notes.prpsinfo(_state(task), task.comm, cmdline_of(task), creds.uid if creds else 0,
                          creds.gid if creds else 0, notes.Ids(task.pid, task.ppid, task.pgid, task.sid),
                          tc.flags, nice)
    saved = list(task.mm.mm_saved_auxv) if task.mm is not None else []
    return b"".join([info, thread_notes(task, arch), notes.auxv(saved), notes.nt_file(mappings, space.page_size)])


# -- segments ---------------------------------------------------------------------------------------


def _file_backed(vma: Vma) -> bool:
    return bool(vma.status_bits & (VMA_FILE_PRIVATE | VMA_FILE_SHARED)) and vma.shared_object is None


def file_mappings(task: Task, space: AddressSpace) -> list[notes.Mapped]:
    """Every file-backed VMA with the path of its file (NT_FILE)."""
    table = task.dump.file_table
    found = []
    for vma in space.vmas:
        path = table.path(vma.shmid) if _file_backed(vma) else None
        if path:
            found.append(notes.Mapped(vma.start, vma.end, vma.pgoff, path))
    return found


def _dumped_runs(space: AddressSpace, vma: Vma) -> Iterator[tuple[int, int]]:
    """The address-contiguous dumped stretches of ``vma`` (streamed)."""
    run: list[int] = []
    for lo, hi, _, _ in space.around(vma.start, vma.end, "core-plan").slices(vma.start, vma.end):
        if run and run[1] == lo:
            run[1] = hi
            continue
        if run:
            yield run[0], run[1]
        run = [lo, hi]
    if run:
        yield run[0], run[1]


def _split(space: AddressSpace, vma: Vma, flags: int) -> Iterator[Piece]:
    """A file-backed VMA without its file: dumped stretches with bytes, the rest with none."""
    pos = vma.start
    for lo, hi in _dumped_runs(space, vma):
        if lo > pos:
            yield Piece(Segment(pos, lo - pos, 0, flags), False)
        yield Piece(Segment(lo, hi - lo, hi - lo, flags), True)
        pos = hi
    if pos < vma.end:
        yield Piece(Segment(pos, vma.end - pos, 0, flags), False)


def plan(space: AddressSpace, paths: dict[int, str], files_from: Path | None) -> list[Piece]:
    """The PT_LOADs of the task's VMAs (``paths``: file-backed VMA start → path)."""
    pieces: list[Piece] = []
    for vma in space.vmas:
        flags = prot_flags(vma.prot)
        if vma.status_bits & (VMA_AREA_VVAR | VMA_AREA_VSYSCALL):
            pieces.append(Piece(Segment(vma.start, vma.size, 0, flags), False))
        elif not _file_backed(vma):
            pieces.append(Piece(Segment(vma.start, vma.size, vma.size, flags), True))
        elif files_from is not None and vma.start in paths and (files_from / paths[vma.start].lstrip("/")).is_file():
            source = files_from / paths[vma.start].lstrip("/")
            pieces.append(Piece(Segment(vma.start, vma.size, vma.size, flags), True, source, vma.pgoff))
        else:
            pieces.extend(_split(space, vma, flags))
    return pieces


# -- bytes ------------------------------------------------------------------------------------------


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _copy(src: int, offset: int, length: int, fd: int, at: int) -> int:
    """Up to ``length`` bytes of ``src`` from ``offset`` to ``fd`` at ``at``, fewer at the end of ``src``; the count.

    copy_file_range, a copy inside the kernel (as cp makes); pread and pwrite where the kernel refuses it."""
    done = 0
    with contextlib.suppress(OSError):    # EXDEV, EINVAL, ENOSYS...: copied by hand below
        while done < length:
            n = os.copy_file_range(src, fd, length - done, offset + done, at + done)
            if n <= 0:
                break
            done += n
    while done < length:
        data = os.pread(src, min(COPY_CHUNK, length - done), offset + done)
        if not data:
            break
        _pwrite_all(fd, memoryview(data), at + done)
        done += len(data)
    return done


def _copy_file(source: Path, offset: int, length: int, fd: int, at: int) -> None:
    """``length`` bytes of ``source`` from ``offset`` to ``fd`` at ``at`` (up to the file's end)."""
    with open(source, "rb") as src:
        _copy(src.fileno(), offset, length, fd, at)


class _Writer:
    """pwrite through a staging buffer: dumped pieces a small gap apart go out as one write, the gap as zeros (a
    fragmented pagemap would otherwise make a write, and a file extent, per page); bigger gaps stay holes."""

    GAP = 64 << 10

    def __init__(self, fd: int, size: int = COPY_CHUNK) -> None:
        assert size >= DIRECT, "read_from stages extents shorter than DIRECT whole"
        self.fd, self.buffer = fd, bytearray(size)
        self.at, self.length = 0, 0         # the file offset of the staged bytes, their count

    def flush(self) -> None:
        if self.length:
            with memoryview(self.buffer) as view:
                _pwrite_all(self.fd, view[:self.length], self.at)
            self.length = 0

    def read_from(self, pages: PagesFile, offset: int, length: int, at: int) -> None:
        """Stage ``length`` (at most the buffer's size) bytes of ``pages`` from ``offset``, to go out at ``at``."""
        end = self.at + self.length
        if self.length and not (end <= at <= end + self.GAP and at + length - self.at <= len(self.buffer)):
            self.flush()
        if not self.length:
            self.at = at
        here = at - self.at
        self.buffer[self.length:here] = bytes(here - self.length)
        with memoryview(self.buffer) as view:
            pages.read_into(view[here:here + length], offset)
        self.length = here + length


def _copy_pages(pages: PagesFile, offset: int, length: int, fd: int, at: int) -> None:
    """``length`` bytes of ``pages`` from ``offset`` to ``fd`` at ``at``; all of them, or a CoreError."""
    if _copy(pages.fd(), pages.base + offset, length, fd, at) < length:
        raise CoreError(f"{pages.path}: ends before the {length} bytes its pagemap places at {offset:#x}")


# 'core of a 1024 MiB task': a long extent goes from the pages file to the core inside the kernel; short ones
# (a fragmented pagemap) are gathered in the staging buffer, a small gap apart, and written together.
def _copy_dumped(space: AddressSpace, seg: Segment, out: _Writer, at: int, progress: Progress | None) -> None:
    pos, end = seg.vaddr, seg.vaddr + seg.filesz
    while pos < end:
        hi = min(pos + WINDOW, end)
        for lo, stop, pages, offset in space.around(pos, hi, "core").slices(pos, hi):
            length, dest = stop - lo, at + lo - seg.vaddr
            if length >= DIRECT:
                out.flush()
                _copy_pages(pages, offset, length, out.fd, dest)
            else:
                out.read_from(pages, offset, length, dest)
            if progress is not None:
                progress(length)
        pos = hi
    out.flush()


def write_core(task: Task, out: BinaryIO, files_from: Path | None = None, progress: Progress | None = None) -> int:
    """Write the core file of ``task`` to ``out`` (a seekable file with a descriptor); return its size.

    Holes stay holes: the file is sized with ftruncate, bytes are written with pwrite where they are."""
    arch = arch_of(task)
    space = task.memory
    mappings = file_mappings(task, space)
    body = process_notes(task, arch, space, mappings)
    pieces = plan(space, {m.start: m.path for m in mappings}, files_from)
    segments = [p.segment for p in pieces]
    where = layout(len(body), segments, space.page_size)
    out.flush()
    fd = out.fileno()
    _pwrite_all(fd, memoryview(headers(arch.machine, len(body), segments, where, space.page_size)), 0)
    _pwrite_all(fd, memoryview(body), where.notes_at)
    writer = _Writer(fd)
    for piece, at in zip(pieces, where.offsets, strict=True):     # in file order: writes extend the file
        seg = piece.segment
        if piece.source is not None:
            _copy_file(piece.source, piece.file_offset, seg.filesz, fd, at)
        if piece.dumped and seg.filesz:
            _copy_dumped(space, seg, writer, at, progress)
    os.ftruncate(fd, where.size)     # the holes at the end
    return where.size


def dumped_size(task: Task) -> int:
    """The bytes ``write_core`` copies from the dump (for a progress bar)."""
    return task.memory.dumped_bytes() if task.mm is not None else 0


def export_task(task: Task, path: str | os.PathLike[str], files_from: Path | None = None,
                progress: Progress | None = None) -> int:
    """Write ``task``'s core to ``path`` through a temporary file renamed at the end: no partial core is left."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            size = write_core(task, out, files_from, progress)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return size


def export_dump(dump: Dump, directory: str | os.PathLike[str], files_from: Path | None = None,
                progress: Progress | None = None) -> list[Path]:
    """``core.PID`` in ``directory`` for every live process of ``dump``; the paths written."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for task in dump.tasks:
        if task.dead:
            continue
        target = folder / f"core.{task.pid}"
        export_task(task, target, files_from, progress)
        written.append(target)
    return written


__all__ = ["ARCHES", "CoreError", "arch_of", "dumped_size", "export_dump", "export_task", "plan", "write_core"]
