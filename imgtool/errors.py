"""One exception hierarchy for everything imgtool raises on bad input."""

from __future__ import annotations


class ImgtoolError(Exception):
    """Root of every error imgtool raises on purpose."""


class FormatError(ImgtoolError):
    """An image file does not hold what the CRIU format says it must.

    The message names the file, the entry index and the byte offset:
    ``pstree.img: entry 3 at offset 0x1c: size prefix says 4096 bytes, 12 left``.
    """

    def __init__(self, what: str, *, path: str = "<stream>", entry: int | None = None,
                 offset: int | None = None) -> None:
        self.path, self.entry, self.offset, self.what = path, entry, offset, what
        where = [path]
        if entry is not None:
            where.append(f"entry {entry}")
        if offset is not None:
            where.append(("at " if entry is not None else "") + f"offset {offset:#x}")
        head = where[0] + (": " + " ".join(where[1:]) if len(where) > 1 else "")
        super().__init__(f"{head}: {what}")


class UnknownMagicError(FormatError):
    """The file starts with a magic number CRIU does not define."""


class TruncatedError(FormatError):
    """The file ends before a size prefix, an entry or a payload does."""


class DecodeError(FormatError):
    """An entry's bytes are not a valid protobuf message of the expected type."""


class RawImageError(FormatError):
    """A raw image (pages, ip tool dumps, tarballs) was asked for entries."""


class EncodeError(ImgtoolError):
    """A crit-style JSON document cannot be turned back into an image."""


class MissingImageError(ImgtoolError):
    """A checkpoint lacks an image file that another image refers to."""
