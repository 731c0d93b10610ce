"""Pages files: the dumped page contents, mapped read-only and read with pread."""

from __future__ import annotations

import contextlib
import mmap
import os
from functools import cached_property
from pathlib import Path


class PagesFile:
    """One ``pages-<id>.img``, mapped read-only (an empty file is ``b""``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            self.data: mmap.mmap | bytes = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.view = memoryview(self.data)
        self._fd: int | None = None          # for read_into, opened on first use

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<PagesFile {self.path}>"

    @cached_property
    def real_path(self) -> Path:
        """The path with symlinks resolved (computed once)."""
        return self.path.resolve()

    @cached_property
    def real_dir(self) -> Path:
        """The resolved directory holding the file (computed once)."""
        return self.path.parent.resolve()

    def fd(self) -> int:
        """A descriptor of the file for pread (opened on first use)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd

    def read_into(self, buf: memoryview, offset: int) -> None:
        """Fill ``buf`` from ``offset`` with pread: one kernel copy, no page faults, nothing mapped."""
        fd, done = self.fd(), 0
        while done < len(buf):
            n = os.preadv(fd, [buf[done:]], offset + done)
            if n <= 0:    # the file shrank under us: the mapping says what there is to say
                buf[done:] = self.view[offset + done:offset + len(buf)]
                return
            done += n

    def release(self) -> None:
        """Drop our page-table entries (the page cache keeps the data): keeps RSS flat while streaming."""
        if isinstance(self.data, mmap.mmap) and not self.data.closed:
            self.data.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.view.release()
        if isinstance(self.data, mmap.mmap):
            with contextlib.suppress(BufferError):  # a caller still holds a view; the GC unmaps it
                self.data.close()


__all__ = ["PagesFile"]
