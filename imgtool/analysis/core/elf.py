"""ELF64 structures of a core file (little endian): the file header, program headers and notes."""

from __future__ import annotations

import struct
from typing import NamedTuple

ET_CORE = 4
EM_X86_64, EM_AARCH64 = 62, 183
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")     # Elf64_Ehdr: 64 bytes
PHDR = struct.Struct("<IIQQQQQQ")             # Elf64_Phdr: 56 bytes
NHDR = struct.Struct("<III")                  # Elf64_Nhdr: namesz, descsz, type

# note types (include/uapi/linux/elf.h)
NT_PRSTATUS, NT_FPREGSET, NT_PRPSINFO, NT_AUXV = 1, 2, 3, 6
NT_SIGINFO, NT_FILE = 0x53494749, 0x46494C45
NT_X86_XSTATE, NT_ARM_TLS = 0x202, 0x401


class Segment(NamedTuple):
    """One PT_LOAD: ``memsz`` addresses from ``vaddr``, the first ``filesz`` of them with bytes in the file."""

    vaddr: int
    memsz: int
    filesz: int
    flags: int     # PF_*


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def note(name: str, ntype: int, desc: bytes) -> bytes:
    """One ELF note: header, NUL-terminated name and descriptor, each padded to 4 bytes."""
    raw = name.encode() + b"\0"
    return NHDR.pack(len(raw), len(desc), ntype) + _pad4(raw) + _pad4(desc)


def ehdr(machine: int, phnum: int) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1, 0])          # ELFCLASS64, ELFDATA2LSB, EV_CURRENT, SYSV ABI
    return EHDR.pack(ident, ET_CORE, machine, 1, 0, EHDR.size, 0, 0, EHDR.size, PHDR.size, phnum, 0, 0, 0)


def phdr(ptype: int, flags: int, offset: int, vaddr: int, filesz: int, memsz: int, align: int) -> bytes:
    return PHDR.pack(ptype, flags, offset, vaddr, 0, filesz, memsz, align)


class Layout(NamedTuple):
    """Where everything goes: the headers, the notes at ``notes_at``, segment ``i``'s bytes at ``offsets[i]``."""

    notes_at: int
    offsets: list[int]
    size: int        # the file size


def layout(notes_size: int, segments: list[Segment], page_size: int) -> Layout:
    """The kernel's layout: headers, notes, then the segments' bytes from the next page boundary."""
    notes_at = EHDR.size + PHDR.size * (len(segments) + 1)
    pos = notes_at + notes_size
    pos += -pos % page_size
    offsets = []
    for seg in segments:
        offsets.append(pos)
        pos += seg.filesz
    return Layout(notes_at, offsets, pos)


def headers(machine: int, notes_size: int, segments: list[Segment], where: Layout, page_size: int) -> bytes:
    """The ELF header and every program header (PT_NOTE first) for ``where``."""
    out = [ehdr(machine, len(segments) + 1), phdr(PT_NOTE, 0, where.notes_at, 0, notes_size, 0, 0)]
    out += [phdr(PT_LOAD, s.flags, off, s.vaddr, s.filesz, s.memsz, page_size)
            for s, off in zip(segments, where.offsets, strict=True)]
    return b"".join(out)


def prot_flags(prot: str) -> int:
    """PF_* of a VMA's "rwxp" protection."""
    return (PF_R if prot[0] == "r" else 0) | (PF_W if prot[1] == "w" else 0) | (PF_X if prot[2] == "x" else 0)


__all__ = ["EM_AARCH64", "EM_X86_64", "NT_ARM_TLS", "NT_AUXV", "NT_FILE", "NT_FPREGSET", "NT_PRPSINFO",
           "NT_PRSTATUS", "NT_SIGINFO", "NT_X86_XSTATE", "Layout", "Segment", "headers", "layout", "note",
           "prot_flags"]
