"""Note builders: NT_PRPSINFO, NT_AUXV, NT_FILE for a process; NT_PRSTATUS and the register notes per thread,
for x86_64 and aarch64, in the layouts of the kernel's ``struct elf_prstatus`` / ``elf_prpsinfo``."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from google.protobuf.message import Message

from imgtool.analysis.core import elf
from imgtool.analysis.core.elf import note

PRSTATUS_HEAD = struct.Struct("<iiih2xQQiiii64x")   # elf_siginfo, cursig, sigpend, sighold, ids, 4 timevals: 112
PRPSINFO = struct.Struct("<bcbb4xQIIiiii16s80s")     # 136 bytes
SIGINFO_SIZE = 128
PRARGSZ = 80


class Ids(NamedTuple):
    """The ids of one thread as NT_PRSTATUS carries them."""

    pid: int      # the thread id
    ppid: int
    pgrp: int
    sid: int


def signal_mask(queues: Iterable[Message | None]) -> int:
    """The pending-signal mask of signal queues (each siginfo blob starts with si_signo)."""
    mask = 0
    for queue in queues:
        for entry in queue.signals if queue is not None else ():
            signo = struct.unpack_from("<i", entry.siginfo)[0] if len(entry.siginfo) >= 4 else 0
            if 0 < signo <= 64:
                mask |= 1 << (signo - 1)
    return mask


def prstatus(ids: Ids, regs: bytes, sigpend: int, sighold: int, cursig: int = 0) -> bytes:
    """NT_PRSTATUS: the common head, ``pr_reg`` (the arch's elf_gregset_t), ``pr_fpvalid`` and padding."""
    head = PRSTATUS_HEAD.pack(cursig, 0, 0, cursig, sigpend, sighold, ids.pid, ids.ppid, ids.pgrp, ids.sid)
    return note("CORE", elf.NT_PRSTATUS, head + regs + struct.pack("<i4x", 1))


def siginfo(signo: int = 0) -> bytes:
    """NT_SIGINFO: the siginfo_t of the signal that stopped the thread (none: a checkpoint is no crash)."""
    return note("CORE", elf.NT_SIGINFO, struct.pack("<iii", signo, 0, 0).ljust(SIGINFO_SIZE, b"\0"))


def psargs(argv: Sequence[str]) -> bytes:
    """pr_psargs: the arguments joined by spaces, cut to 79 bytes and NUL-terminated (as the kernel does)."""
    return " ".join(argv).encode("utf-8", "surrogateescape")[:PRARGSZ - 1]


def prpsinfo(state: str, comm: str, argv: Sequence[str], uid: int, gid: int, ids: Ids, flags: int = 0,
             nice: int = 0) -> bytes:
    """NT_PRPSINFO; ``state`` is one letter of "RSDTZW"."""
    index = max("RSDTZW".find(state), 0)
    body = PRPSINFO.pack(index, state.encode(), int(state == "Z"), nice, flags, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF,
                         ids.pid, ids.ppid, ids.pgrp, ids.sid, comm.encode()[:15], psargs(argv))
    return note("CORE", elf.NT_PRPSINFO, body)


def auxv(saved: Sequence[int]) -> bytes:
    """NT_AUXV: the saved (key, value) pairs up to and including AT_NULL."""
    pairs = list(zip(saved[0::2], saved[1::2], strict=False))
    end = next((i for i, (key, _) in enumerate(pairs) if key == 0), len(pairs))
    words = [w for pair in pairs[:end] for w in pair] + [0, 0]
    return note("CORE", elf.NT_AUXV, struct.pack(f"<{len(words)}Q", *words))


class Mapped(NamedTuple):
    start: int
    end: int
    offset: int     # byte offset of ``start`` in the file
    path: str


def nt_file(mappings: Sequence[Mapped], page_size: int) -> bytes:
    """NT_FILE: count, page size, (start, end, offset in pages) per mapping, then the NUL-terminated paths."""
    head = struct.pack("<QQ", len(mappings), page_size)
    table = b"".join(struct.pack("<QQQ", m.start, m.end, m.offset // page_size) for m in mappings)
    names = b"".join(m.path.encode("utf-8", "surrogateescape") + b"\0" for m in mappings)
    return note("CORE", elf.NT_FILE, head + table + names)


# -- x86_64 ---------------------------------------------------------------------------------------

X86_GREGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
             "orig_ax", "ip", "cs", "flags", "sp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")
FXSAVE_HEAD = struct.Struct("<HHHHQQII")
XCR0_AT, XSTATE_BV_AT = 464, 512     # gdb reads XCR0 from the software-reserved bytes of the fxsave area
# xsave components in the standard (non-compacted) format: feature bit -> (field, offset, size, element format).
# Intel's offsets, which gdb 13 assumes (its gcore writes them on AMD too); an AMD Zen CPU's own layout puts
# AVX-512 lower (the kernel's cores there are 2432 bytes for XCR0 0xe7), which only gdb >= 14 guesses.
XSAVE_PARTS = {2: ("ymmh_space", 576, 256, "I"), 3: ("bndreg_state", 960, 64, "Q"),
               4: ("bndcsr_state", 1024, 64, "Q"), 5: ("opmask_reg", 1088, 64, "Q"),
               6: ("zmm_upper", 1152, 512, "Q"), 7: ("hi16_zmm", 1664, 1024, "Q"), 9: ("pkru", 2688, 8, "I")}
X87_SSE = 0x3


def x86_gregs(gp: Message) -> bytes:
    """elf_gregset_t of x86_64: user_regs_struct, 27 words."""
    return struct.pack("<27Q", *(getattr(gp, name) & (1 << 64) - 1 for name in X86_GREGS))


def fxsave(fp: Message) -> bytes:
    """The 512-byte fxsave area (user_fpregs_struct)."""
    head = FXSAVE_HEAD.pack(fp.cwd & 0xFFFF, fp.swd & 0xFFFF, fp.twd & 0xFFFF, fp.fop & 0xFFFF, fp.rip, fp.rdp,
                            fp.mxcsr, fp.mxcsr_mask)
    st = struct.pack(f"<{len(fp.st_space)}I", *fp.st_space).ljust(128, b"\0")[:128]
    xmm = struct.pack(f"<{len(fp.xmm_space)}I", *fp.xmm_space).ljust(256, b"\0")[:256]
    return (head + st + xmm).ljust(512, b"\0")


def xcr0_of(fp: Message, mask: int | None = None) -> int:
    """The xsave feature mask: the dump's (cpuinfo's xfeatures_mask) or the components the image carries."""
    if mask:
        return mask
    xs = fp.xsave if fp.HasField("xsave") else None
    if xs is None:
        return X87_SSE
    return X87_SSE | sum(1 << bit for bit, (name, *_) in XSAVE_PARTS.items() if len(getattr(xs, name)))


def xsave_size(xcr0: int) -> int:
    """The size of the standard-format xsave area holding every feature of ``xcr0`` (what gdb expects)."""
    return max([576] + [offset + size for bit, (_, offset, size, _) in XSAVE_PARTS.items() if xcr0 >> bit & 1])


def xsave_area(fp: Message, xcr0: int) -> bytes:
    """NT_X86_XSTATE's descriptor: fxsave, XCR0 in the software bytes, the xsave header, then the components."""
    area = bytearray(xsave_size(xcr0))
    area[:512] = fxsave(fp)
    struct.pack_into("<Q", area, XCR0_AT, xcr0)
    xs = fp.xsave if fp.HasField("xsave") else None
    bv = (xs.xstate_bv if xs is not None else X87_SSE) & xcr0
    struct.pack_into("<Q", area, XSTATE_BV_AT, bv)
    for bit, (name, offset, size, fmt) in XSAVE_PARTS.items():
        values = list(getattr(xs, name)) if xs is not None and xcr0 >> bit & 1 else []
        if values:
            area[offset:offset + size] = struct.pack(f"<{len(values)}{fmt}", *values).ljust(size, b"\0")[:size]
    return bytes(area)


def x86_thread(ids: Ids, info: Message, sigpend: int, sighold: int, xcr0: int) -> bytes:
    """The notes of one x86_64 thread: NT_PRSTATUS, NT_FPREGSET, NT_X86_XSTATE, NT_SIGINFO."""
    return b"".join([prstatus(ids, x86_gregs(info.gpregs), sigpend, sighold),
                     note("CORE", elf.NT_FPREGSET, fxsave(info.fpregs)),
                     note("LINUX", elf.NT_X86_XSTATE, xsave_area(info.fpregs, xcr0)), siginfo()])


# -- aarch64 --------------------------------------------------------------------------------------


def aarch64_gregs(gp: Message) -> bytes:
    """elf_gregset_t of aarch64: x0..x30, sp, pc, pstate."""
    regs = list(gp.regs)[:31]
    regs += [0] * (31 - len(regs))
    return struct.pack("<34Q", *regs, gp.sp, gp.pc, gp.pstate)


def fpsimd(fp: Message) -> bytes:
    """user_fpsimd_state: v0..v31 (128 bits each), fpsr, fpcr, padding: 528 bytes."""
    vregs = list(fp.vregs)[:64]
    vregs += [0] * (64 - len(vregs))
    return struct.pack("<64QII8x", *vregs, fp.fpsr, fp.fpcr)


def aarch64_thread(ids: Ids, info: Message, sigpend: int, sighold: int) -> bytes:
    """The notes of one aarch64 thread: NT_PRSTATUS, NT_FPREGSET, NT_ARM_TLS, NT_SIGINFO."""
    return b"".join([prstatus(ids, aarch64_gregs(info.gpregs), sigpend, sighold),
                     note("CORE", elf.NT_FPREGSET, fpsimd(info.fpsimd)),
                     note("LINUX", elf.NT_ARM_TLS, struct.pack("<Q", info.tls)), siginfo()])


__all__ = ["Ids", "Mapped", "aarch64_thread", "auxv", "nt_file", "prpsinfo", "prstatus", "signal_mask",
           "x86_thread", "xcr0_of", "xsave_area", "xsave_size"]
