"""GNU build-ID of an ELF file, read the way CRIU does (PT_NOTE, NT_GNU_BUILD_ID)."""

from __future__ import annotations

import struct
from pathlib import Path

NT_GNU_BUILD_ID = 3
PT_NOTE = 4
_MAX_HEADERS = 4096


def build_id(path: Path) -> bytes | None:
    """The build-ID bytes, or None for a non-ELF file or one without the note."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF":
                return None
            wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
            if wide:
                phoff, = struct.unpack_from(order + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            else:
                phoff, = struct.unpack_from(order + "I", head, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
            for i in range(min(phnum, _MAX_HEADERS)):
                f.seek(phoff + i * phentsize)
                ph = f.read(phentsize)
                found = _note_in(f, ph, wide, order)
                if found is not None:
                    return found
    except (OSError, struct.error):
        return None
    return None


def _note_in(f, ph: bytes, wide: bool, order: str) -> bytes | None:
    if len(ph) < (56 if wide else 32):
        return None
    p_type, = struct.unpack_from(order + "I", ph, 0)
    if p_type != PT_NOTE:
        return None
    if wide:
        offset, size = struct.unpack_from(order + "Q", ph, 8)[0], struct.unpack_from(order + "Q", ph, 32)[0]
    else:
        offset, size = struct.unpack_from(order + "I", ph, 4)[0], struct.unpack_from(order + "I", ph, 16)[0]
    f.seek(offset)
    notes = f.read(min(size, 1 << 16))
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from(order + "III", notes, pos)
        desc = pos + 12 + (namesz + 3) // 4 * 4
        if ntype == NT_GNU_BUILD_ID and 0 < descsz <= 512:
            return notes[desc:desc + descsz]
        pos = desc + (descsz + 3) // 4 * 4
    return None


def as_words(data: bytes) -> list[int]:
    """The build-ID as CRIU stores it: little-endian u32 words, zero-padded."""
    data = data + b"\0" * (-len(data) % 4)
    return list(struct.unpack(f"<{len(data) // 4}I", data))
