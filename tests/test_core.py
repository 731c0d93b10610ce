"""``imgtool core``: ELF core files of a dump's processes, checked with real debuggers.

Real criu + gdb: tests/programs/core_target.c (built with -g) is dumped, exported, and gdb must show its threads,
frames with arguments, locals, globals and heap string; the same images are restored and gdb's own gcore of the
restored process is compared with ours. Synthetic dumps (our encoder) cover the corpus of errors, --files-from,
sparse output and aarch64 (checked with gdb-multiarch). Tools missing: the tests needing them skip, naming the
Debian package (gdb, gdb-multiarch).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import pytest

import imgtool
from imgtool.analysis.core import export_task
from imgtool.analysis.core.elf import NT_FILE, NT_PRSTATUS, PT_LOAD, PT_NOTE
from imgtool.cli.app import main
from imgtool.format.flags import VMA_AREA_HEAP, VMA_FILE_PRIVATE
from imgtool.format.image import image_bytes
from imgtool.format.pb import message_class
from imgtool.memory.extract import extract
from imgtool.testing.synth import SynthTask, SynthVma, build_dump
from tests import realcriu

from corpus import CORPUS

TARGET_SRC = Path(__file__).resolve().parent / "programs" / "core_target.c"
INCREMENTAL = CORPUS / "incremental" / "images-1"
GNU_GREGS = {"r15": 0, "r14": 1, "r13": 2, "r12": 3, "rbp": 4, "rbx": 5, "rip": 16, "rsp": 19, "fs_base": 21}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        reason = f"{tool} is not installed (Debian package {tool})"
        if os.environ.get("IMGTOOL_REQUIRE_GDB") == "1":   # .ci/run installs them: they must not skip there
            pytest.fail(reason)
        pytest.skip(reason)
    return path


# -- reading a core file -------------------------------------------------------------------------------------


class Load(NamedTuple):
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: int


class Core:
    """The program headers and notes of an ELF64 core file, and its memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        phoff, = struct.unpack_from("<Q", self.data, 32)
        phnum, = struct.unpack_from("<H", self.data, 56)
        self.machine, = struct.unpack_from("<H", self.data, 18)
        self.loads: list[Load] = []
        self.notes: list[tuple[str, int, bytes]] = []
        for i in range(phnum):
            ptype, flags, off, vaddr, _, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", self.data, phoff + 56 * i)
            if ptype == PT_LOAD:
                self.loads.append(Load(off, vaddr, filesz, memsz, flags))
            elif ptype == PT_NOTE:
                self._read_notes(off, filesz)

    def _read_notes(self, off: int, size: int) -> None:
        end = off + size
        while off < end:
            namesz, descsz, ntype = struct.unpack_from("<III", self.data, off)
            off += 12
            name = self.data[off:off + namesz].rstrip(b"\0").decode()
            off += namesz + -namesz % 4
            self.notes.append((name, ntype, self.data[off:off + descsz]))
            off += descsz + -descsz % 4

    def read(self, address: int, size: int) -> bytes:
        for load in self.loads:
            if load.vaddr <= address and address + size <= load.vaddr + load.filesz:
                at = load.offset + address - load.vaddr
                return self.data[at:at + size]
        raise KeyError(f"{address:#x}+{size:#x} is not in {self.path}")

    def threads(self) -> dict[int, dict[str, int]]:
        """tid -> the general registers of GNU_GREGS (x86_64)."""
        found = {}
        for _, ntype, desc in self.notes:
            if ntype == NT_PRSTATUS:
                tid, = struct.unpack_from("<i", desc, 32)
                regs = struct.unpack_from("<27Q", desc, 112)
                found[tid] = {name: regs[i] for name, i in GNU_GREGS.items()}
        return found

    def note_types(self) -> set[tuple[str, int]]:
        return {(name, ntype) for name, ntype, _ in self.notes}


def gdb(*args: str, tool: str = "gdb") -> str:
    done = subprocess.run([need(tool), "-batch", "-nx", *args], capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


# -- real criu ----------------------------------------------------------------------------------------------


class Dumped(NamedTuple):
    criu: Path
    binary: Path
    images: Path
    pid: int
    child: int
    tids: dict[int, int]      # thread number -> tid
    heap: int
    gcore: str | Path          # gdb's gcore of the restored process, or why there is none


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> Dumped:
    need("gdb")
    criu = realcriu.require_criu()
    cc = shutil.which("cc") or pytest.skip("no C compiler (cc)")
    work = tmp_path_factory.mktemp("core")
    binary = work / "core_target"
    subprocess.run([cc, "-g", "-O0", "-Wall", "-pthread", "-o", binary, TARGET_SRC], check=True)
    run = realcriu.dump_process(criu, [binary], work / "images")
    assert run.ok, run.log_text()[-3000:]
    report = dict(line.split(" ", 1) for line in run.report)
    tids = {int(line.split()[1]): int(line.split()[2]) for line in run.report if line.startswith("thread ")}
    gcore = _gcore_of_restored(criu, run.images, work / "gcore.core", int(report["child"]))
    yield Dumped(criu, binary, run.images, run.pid, int(report["child"]), tids, int(report["heap"], 16), gcore)
    realcriu.kill_all()


def _gcore_of_restored(criu: Path, images: Path, path: Path, child: int) -> str | Path:
    """Restore the images right after the dump (before other processes can take their pids), gcore the restored
    process, kill it: the core's path, or why there is none."""
    _reap(child)          # criu killed the dumped tree; its child's zombie may have been re-parented to us
    for _ in range(20):   # the dumped tree's pids can take a moment to be free again after criu killed it
        restored = realcriu.restore(criu, images)
        if restored.ok or "File exists" not in restored.log_text():
            break
        time.sleep(0.1)
    try:
        if not restored.ok:
            return "restore failed:\n" + restored.log_text()[-3000:]
        text = gdb("-ex", f"gcore {path}", "-p", str(restored.pid))
        return path if "Saved corefile" in text else text
    finally:
        restored.kill()
        _kill_child(child)


def test_gdb_reads_every_thread_frame_and_variable(dumped: Dumped, tmp_path: Path) -> None:
    out = tmp_path / "cores"
    assert main(["core", str(dumped.images), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([f"core.{dumped.pid}", f"core.{dumped.child}"])
    per_thread = [a for n in sorted(dumped.tids)
                  for a in ("-ex", f"thread {n + 1}", "-ex", "frame function worker_wait", "-ex", "print marker")]
    text = gdb(str(dumped.binary), str(out / f"core.{dumped.pid}"), "-ex", "info threads", "-ex",
               "thread apply all bt", "-ex", "print g_message", "-ex", "print g_counter", "-ex", "print g_heap",
               "-ex", "print *g_heap@5", *per_thread, "-ex", "thread 1", "-ex", "frame function main_wait",
               "-ex", "print main_marker")
    print(text)    # the transcript (pytest -s shows it)
    for tid in [dumped.pid, *dumped.tids.values()]:
        assert f"(LWP {tid})" in text, text
    for n in dumped.tids:
        assert f"worker_wait (id={n}, tag={0x1000 + n})" in text, text
        assert f"thread_main (arg=0x{n})" in text, text
        assert f"= {n * 1000 + 7}\n" in text, text
    assert 'main_wait (nthreads=3, label=' in text and '"main-label"' in text, text
    assert "= 31337\n" in text, text
    assert '"core-target-global-message"' in text and "= 424242\n" in text, text
    assert f'{dumped.heap:#x} "core-target-heap-string"' in text, text
    child = gdb(str(dumped.binary), str(out / f"core.{dumped.child}"), "-ex", "bt", "-ex",
                "frame function child_wait", "-ex", "print child_marker")
    assert f"child_wait (depth=3, tag={0xc41d})" in child and "= 33\n" in child, child


def _vma(dump_dir: Path, pid: int, test) -> tuple[int, int]:
    with imgtool.open(dump_dir) as dump:
        task = dump.task(pid)
        for vma in task.memory.vmas:
            if test(vma, dump.file_table.path(vma.shmid) if vma.status_bits & VMA_FILE_PRIVATE else None):
                return vma.start, vma.end
    raise AssertionError("no such VMA")


def test_core_matches_gdb_gcore_of_the_restored_process(dumped: Dumped, tmp_path: Path) -> None:
    ours_path = tmp_path / "ours.core"
    assert main(["core", str(dumped.images), "--pid", str(dumped.pid), "-o", str(ours_path)]) == 0
    assert isinstance(dumped.gcore, Path), dumped.gcore
    ours, theirs = Core(ours_path), Core(dumped.gcore)
    assert set(ours.threads()) == set(theirs.threads()) == {dumped.pid, *dumped.tids.values()}
    for tid, regs in ours.threads().items():
        other = theirs.threads()[tid]
        for name in ("rsp", "rbp", "rbx", "r12", "fs_base"):
            assert regs[name] == other[name], (tid, name)
        # criu rewinds a syscall to restart (rip back over the 2-byte syscall instruction); gdb's attach sees
        # the restored thread inside it again
        assert other["rip"] - regs["rip"] in (0, 2), tid
    assert ours.note_types() == theirs.note_types() - {("GDB", 0xFF000000)}   # NT_GDB_TDESC: gdb's own
    # the same file page behind every address (gdb 13 writes the offsets in bytes, the kernel in pages, as we do;
    # the restored process has some adjacent VMAs merged)
    assert _file_pages(ours, 4096) == _file_pages(theirs, 1)
    heap = _vma(dumped.images, dumped.pid, lambda v, path: v.status_bits & VMA_AREA_HEAP)
    data = _vma(dumped.images, dumped.pid, lambda v, path: path == str(dumped.binary) and "w" in v.prot)
    for lo, hi in (heap, data):
        assert ours.read(lo, hi - lo) == theirs.read(lo, hi - lo)


def _file_pages(core: Core, unit: int) -> set[tuple[int, str, int]]:
    """(page address, path, file offset) of every page NT_FILE maps; its offsets count ``unit`` bytes."""
    desc = next(desc for _, ntype, desc in core.notes if ntype == NT_FILE)
    count, _ = struct.unpack_from("<QQ", desc)
    names = desc[16 + 24 * count:].split(b"\0")[:count]
    pages = set()
    for i, name in enumerate(names):
        start, end, offset = struct.unpack_from("<QQQ", desc, 16 + 24 * i)
        pages |= {(a, name.decode(), offset * unit + a - start) for a in range(start, end, 4096)}
    return pages


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Wait until ``pid`` is gone, reaping it when it is our child (zombie re-parented to us, a subreaper)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def _kill_child(pid: int) -> None:
    """The restored child is re-parented to us (restore makes us a subreaper): kill and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


# -- incremental chain (corpus) ---------------------------------------------------------------------------


@pytest.mark.skipif(not INCREMENTAL.is_dir(), reason=f"no incremental corpus at {INCREMENTAL}")
def test_incremental_chain_exports_what_mem_dump_reads(tmp_path: Path) -> None:
    with imgtool.open(INCREMENTAL) as dump:
        task = dump.tasks[0]
        export_task(task, tmp_path / "core")
        core = Core(tmp_path / "core")
        space = task.memory
        compared = 0
        for load in core.loads:
            if load.filesz:
                with (tmp_path / "mem").open("wb") as out:
                    extract(space, load.vaddr, load.vaddr + load.filesz, out)
                assert core.read(load.vaddr, load.filesz) == (tmp_path / "mem").read_bytes(), hex(load.vaddr)
                compared += load.filesz
    assert compared > 16 << 20
    assert b"MODIFIED00000100-GEN1" in core.data and b"SHMMODIFIED-GEN1" in core.data


# -- synthetic dumps ----------------------------------------------------------------------------------------

PID, BASE, STACK = 4242, 0x7F0000000000, 0x7FFF00000000
ARGV = b"/usr/bin/synth\0--flag\0value\0"


def _x86_regs(core, rip: int, rsp: int) -> None:
    ti = core.thread_info
    ti.clear_tid_addr = 0
    names = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
             "orig_ax", "ip", "cs", "flags", "sp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")
    for i, name in enumerate(names):
        setattr(ti.gpregs, name, 0x1000 + i)
    ti.gpregs.ip, ti.gpregs.sp, ti.gpregs.fs_base = rip, rsp, 0x7F00DEAD0000
    fp = ti.fpregs
    fp.cwd, fp.swd, fp.twd, fp.fop, fp.rip, fp.rdp, fp.mxcsr, fp.mxcsr_mask = 0x37F, 0, 0, 0, 0, 0, 0x1F80, 0xFFFF
    fp.st_space.extend([0] * 32)
    fp.xmm_space.extend(range(64))
    fp.xsave.xstate_bv = 7
    fp.xsave.ymmh_space.extend(range(100, 164))


def _aarch64_regs(core, pc: int, sp: int) -> None:
    ti = core.ti_aarch64
    ti.clear_tid_addr, ti.tls = 0, 0xFFFF8000DEAD0000
    ti.gpregs.regs.extend(range(0x100, 0x100 + 31))
    ti.gpregs.sp, ti.gpregs.pc, ti.gpregs.pstate = sp, pc, 0x60000000
    ti.fpsimd.vregs.extend(range(64))
    ti.fpsimd.fpsr, ti.fpsimd.fpcr = 0x10, 0x20


def synth(tmp_path: Path, arch: str = "x86", threads: int = 1, **task) -> Path:
    """A one-process dump: 64 MiB of anonymous memory with the strings and argv in its first pages, a stack."""
    vmas = [SynthVma.anon(BASE, 64 << 20), SynthVma.anon(STACK, 1 << 20), *task.pop("vmas", ())]
    pages = {BASE: b"synthetic-core-string\0", BASE + 0x1000: ARGV, STACK + 0xFF000: b"stack-top",
             **task.pop("pages", {})}
    mm = {"mm_arg_start": BASE + 0x1000, "mm_arg_end": BASE + 0x1000 + len(ARGV)}
    images = build_dump(tmp_path / "images", [SynthTask(PID, "synth", vmas, pages, mm=mm, **task)])
    core_entry = message_class("core_entry")
    tids = [PID + i for i in range(threads)]
    for n, tid in enumerate(tids):
        core = core_entry()
        core.ParseFromString(_first_core(images, PID))
        if arch == "x86":
            _x86_regs(core, 0x401000 + n, STACK + 0xFF000)
        elif arch == "aarch64":
            core.mtype = 3
            _aarch64_regs(core, 0x401000 + 4 * n, STACK + 0xFF000)
        else:
            core.mtype = 4
        (images / f"core-{tid}.img").write_bytes(image_bytes("CORE", [core]))
    _set_threads(images, tids)
    return images


def _first_core(images: Path, pid: int) -> bytes:
    with imgtool.open(images) as dump:
        return dump.task(pid).core.SerializeToString()


def _set_threads(images: Path, tids: list[int]) -> None:
    with imgtool.open(images) as dump:
        entries = dump.entries("pstree")
    for entry in entries:
        del entry.threads[:]
        entry.threads.extend(tids)
    (images / "pstree.img").write_bytes(image_bytes("PSTREE", entries))


def test_synthetic_x86_core_is_sparse_and_readable_by_gdb(tmp_path: Path) -> None:
    images = synth(tmp_path, threads=2)
    out = tmp_path / "core"
    assert main(["core", str(images), "--pid", str(PID), "-o", str(out)]) == 0
    core = Core(out)
    assert core.read(BASE, 21) == b"synthetic-core-string"
    assert os.stat(out).st_blocks * 512 < 1 << 20 < out.stat().st_size        # 64 MiB of holes
    assert set(core.threads()) == {PID, PID + 1}
    text = gdb("-ex", f"core-file {out}", "-ex", "info threads", "-ex", f"x/s {BASE:#x}", "-ex", "p/x $rip",
               "-ex", "p/x $fs_base", "-ex", "p/x $rbx", "-ex", "p/x $ymm0.v8_int32[4]", "-ex", "thread 2",
               "-ex", "p/x $rip")
    assert f"LWP {PID + 1}" in text and '"synthetic-core-string"' in text, text
    assert "0x401000" in text and "0x7f00dead0000" in text and "0x1005" in text and "0x401001" in text, text
    assert "= 0x64" in text, text      # ymmh_space[0] from the xsave area
    assert "Core was generated by `/usr/bin/synth --flag value'" in text, text


def test_synthetic_aarch64_core_with_gdb_multiarch(tmp_path: Path) -> None:
    images = synth(tmp_path, arch="aarch64", threads=2)
    out = tmp_path / "core"
    assert main(["core", str(images), "--pid", str(PID), "-o", str(out)]) == 0
    assert Core(out).machine == 183
    text = gdb("-ex", f"core-file {out}", "-ex", "info threads", "-ex", "p/x $pc", "-ex", "p/x $sp",
               "-ex", "p/x $x5", "-ex", "p/x $cpsr", "-ex", "p/x $fpsr", "-ex", "p/x $tpidr", "-ex",
               f"x/s {BASE:#x}", "-ex", "thread 2", "-ex", "p/x $pc", tool="gdb-multiarch")
    assert f"LWP {PID + 1}" in text and '"synthetic-core-string"' in text, text
    for value in ("0x401000", hex(STACK + 0xFF000), "0x105", "0x60000000", "0x10", "0xffff8000dead0000",
                  "0x401004"):
        assert f"= {value}\n" in text, (value, text)


def test_files_from_fills_undumped_file_pages(tmp_path: Path) -> None:
    lib = 0x7E0000000000
    vma = SynthVma(lib, lib + 0x3000, prot=1, flags=2, status=1 | VMA_FILE_PRIVATE, shmid=2, pgoff=0x1000)
    images = synth(tmp_path, vmas=[vma], pages={lib + 0x1000: b"DIRTY"}, fds=[(3, "/lib/data.bin")])
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "data.bin").write_bytes(b"".join(bytes([65 + i]) * 0x1000 for i in range(4)))
    plain, filled = tmp_path / "plain", tmp_path / "filled"
    assert main(["core", str(images), "--pid", str(PID), "-o", str(plain)]) == 0
    assert main(["core", str(images), "--pid", str(PID), "-o", str(filled), "--files-from", str(root)]) == 0
    loads = [(ld.vaddr, ld.filesz, ld.memsz) for ld in Core(plain).loads if lib <= ld.vaddr < lib + 0x3000]
    assert loads == [(lib, 0, 0x1000), (lib + 0x1000, 0x1000, 0x1000), (lib + 0x2000, 0, 0x1000)]
    core = Core(filled)
    assert core.read(lib, 0x1000) == b"B" * 0x1000                 # file page 1 (pgoff 0x1000)
    assert core.read(lib + 0x1000, 6) == b"DIRTY\0"                # the dumped page wins
    assert core.read(lib + 0x2000, 0x1000) == b"D" * 0x1000
    nt_file = next(desc for _, ntype, desc in core.notes if ntype == NT_FILE)
    assert struct.unpack_from("<5Q", nt_file) == (1, 4096, lib, lib + 0x3000, 1)
    assert nt_file.endswith(b"/lib/data.bin\0")


def _fails(images: Path, out: Path, capsys: pytest.CaptureFixture[str], *expected: str) -> None:
    assert main(["core", str(images), "--pid", str(PID), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(e in err for e in expected), err
    assert list(out.parent.iterdir()) == [], "a partial core was left behind"


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = synth(tmp_path / "a", threads=2)
    (images / f"core-{PID + 1}.img").unlink()
    _fails(images, tmp_path / "out1" / "core", capsys, f"core-{PID + 1}.img")

    images = synth(tmp_path / "b", threads=2)
    core = message_class("core_entry")()
    core.ParseFromString(_first_core(images, PID))
    core.ClearField("thread_info")
    (images / f"core-{PID + 1}.img").write_bytes(image_bytes("CORE", [core]))
    _fails(images, tmp_path / "out2" / "core", capsys, f"core-{PID + 1}.img", "no registers")

    images = synth(tmp_path / "c")
    pages = next(images.glob("pages-*.img"))
    os.truncate(pages, pages.stat().st_size - 4096)
    _fails(images, tmp_path / "out3" / "core", capsys, pages.name)

    images = synth(tmp_path / "d", arch="ppc64")
    _fails(images, tmp_path / "out4" / "core", capsys, "PPC64", "x86_64 and aarch64")


@pytest.fixture(autouse=True)
def _out_dirs(tmp_path: Path) -> None:
    for n in range(1, 5):
        (tmp_path / f"out{n}").mkdir()


def test_fragmented_memory_equals_mem_dump_and_progress_counts_it(tmp_path: Path) -> None:
    pages = {BASE + 0x2000 * i: bytes([i % 251 + 1]) * 4096 for i in range(300)}      # every other page
    pages[BASE + (40 << 20)] = b"far-away"                                             # after a big hole
    images = synth(tmp_path, pages=pages)
    seen: list[int] = []
    with imgtool.open(images) as dump:
        task = dump.task(PID)
        export_task(task, tmp_path / "core", progress=seen.append)
        with (tmp_path / "mem").open("wb") as out:
            extract(task.memory, BASE, BASE + (64 << 20), out)
        assert sum(seen) == task.memory.dumped_bytes()
    assert Core(tmp_path / "core").read(BASE, 64 << 20) == (tmp_path / "mem").read_bytes()


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_long_and_short_extents_equal_mem_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               kernel_copy: bool) -> None:
    """Long extents go through copy_file_range (or, where the kernel refuses it, pread and pwrite), short ones
    through the staging buffer; the core holds what mem dump reads either way."""
    if not kernel_copy:
        def refuse(*args: object) -> int:
            raise OSError(errno.EXDEV, "cross-device copy refused")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    run = bytes(range(256)) * 4096                                         # 1 MiB: copied by the kernel
    pages = {BASE + (2 << 20): run * 2, BASE + (5 << 20): run[:300 << 10],  # 2 MiB, 300 KiB
             **{BASE + (8 << 20) + 0x3000 * i: bytes([i + 1]) * 4096 for i in range(50)},   # short, apart
             BASE + (9 << 20): run[:4096]}
    images = synth(tmp_path, pages=pages)
    with imgtool.open(images) as dump:
        task = dump.task(PID)
        export_task(task, tmp_path / "core")
        with (tmp_path / "mem").open("wb") as out:
            extract(task.memory, BASE, BASE + (64 << 20), out)
    assert Core(tmp_path / "core").read(BASE, 64 << 20) == (tmp_path / "mem").read_bytes()
