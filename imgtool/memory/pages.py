"""Pages files: the dumped page contents, mapped read-only and read with pread.

A pages file may live inside a bigger file (a member of an uncompressed tar, read in place) or be produced
on first use (a member of a compressed archive, unpacked when memory is first read).  Its dump says where the
bytes really are (``ImageSource.backing``: format/located.py), and ``PagesFile`` reads them there.
"""

from __future__ import annotations

import mmap
import os
from functools import cached_property
from pathlib import Path

from imgtool.format.located import Backing, Mapped


class PagesFile:
    """One ``pages-<id>.img``, mapped read-only (an empty file is ``b""``)."""

    def __init__(self, path: Path, backing: Backing | None = None) -> None:
        self.path = path
        self._mapped = Mapped(path, backing)
        self.base = self._mapped.base        # where the pages start in the file fd() opens (a tar member: > 0)
        self.data = self._mapped.data
        self.view = self._mapped.view
        self._fd: int | None = None          # for read_into, opened on first use

    def __len__(self) -> int:
        return len(self.view)

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
        """A descriptor of the file for pread (opened on first use): the pages start at ``base`` in it."""
        if self._fd is None:
            self._fd = os.open(self._mapped.file, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd

    def read_into(self, buf: memoryview, offset: int) -> None:
        """Fill ``buf`` from ``offset`` with pread: one kernel copy, no page faults, nothing mapped."""
        fd, done = self.fd(), 0
        while done < len(buf):
            n = os.preadv(fd, [buf[done:]], self.base + offset + done)
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
        self._mapped.close()


__all__ = ["Backing", "PagesFile"]
