"""Extraction: a range of a task's memory, as the process saw it, written to a file."""

from __future__ import annotations

from typing import IO

from imgtool.errors import SearchError
from imgtool.memory.space import AddressSpace
from imgtool.memory.stream import chunks

EXTRACT_CHUNK = 1 << 20      # bytes per write: a buffer that stays in the CPU caches


def extract(space: AddressSpace, start: int, end: int, out: IO[bytes], zero_fill: bool = True,
            chunk: int = EXTRACT_CHUNK) -> int:
    """Write ``[start, end)`` to ``out`` in chunks of the streaming read (gaps as zeros); return the byte count.

    The whole range is checked first, so nothing is written when it cannot be read (``AddressSpace.check``:
    UnmappedAddressError, or NotDumpedError unless ``zero_fill``).
    """
    if end < start:
        raise SearchError(f"range end {end:#x} is below its start {start:#x}")
    space.check(start, end - start, zero_fill)
    for piece in chunks(space, start, end, chunk, fill=True, walk="extract"):
        out.write(piece.data)
    return end - start


__all__ = ["EXTRACT_CHUNK", "extract"]
