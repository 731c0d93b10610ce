"""Where a file's bytes are: the file itself, or a range of a bigger one (a member of a plain tar, read in place).

A ``Backing`` is ``(file, offset, size)``; ``None`` stands for the file at its own path, whole.  ``Mapped``
maps those bytes read-only, ``read_chunks`` reads them a chunk at a time: nothing is copied anywhere.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator

Backing = tuple[str, int, int]      # file, offset of the bytes in it, size (-1: to its end)


def resolve(path: str | os.PathLike[str], backing: Backing | None) -> Backing:
    return backing if backing is not None else (os.fspath(path), 0, -1)


class Mapped:
    """A read-only mapping of a file's bytes: ``view`` (``b""`` when empty); ``close`` unmaps."""

    def __init__(self, path: str | os.PathLike[str], backing: Backing | None = None) -> None:
        self.file, self.base, size = resolve(path, backing)     # where they are: the file, and their offset in it
        with open(self.file, "rb") as f:
            if size < 0:
                size = max(f.seek(0, os.SEEK_END) - self.base, 0)
            start = self.base - self.base % mmap.ALLOCATIONGRANULARITY     # mmap offsets are page-aligned
            self.data: mmap.mmap | bytes = mmap.mmap(f.fileno(), size + self.base - start,
                                                     access=mmap.ACCESS_READ, offset=start) if size else b""
        self._whole = memoryview(self.data)
        self.view = self._whole[self.base - start:] if size else self._whole

    def __len__(self) -> int:
        return len(self.view)

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            self.view.release()
            self._whole.release()
        if isinstance(self.data, mmap.mmap):
            with contextlib.suppress(BufferError):     # a caller still holds a view: the GC unmaps it
                self.data.close()

    def __enter__(self) -> Mapped:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_chunks(path: str | os.PathLike[str], backing: Backing | None = None,
                chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes, ``chunk`` at a time (pread: nothing mapped, never more than a chunk held)."""
    file, pos, size = resolve(path, backing)
    fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        end = os.fstat(fd).st_size if size < 0 else pos + size
        while pos < end and (block := os.pread(fd, min(chunk, end - pos), pos)):
            pos += len(block)
            yield block
    finally:
        os.close(fd)

