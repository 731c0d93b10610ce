"""One exception hierarchy for everything imgtool raises on bad input: every class is here, under ImgtoolError.

Imports nothing of imgtool, so every layer may raise any of them.
"""

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


class WrongKindError(FormatError):
    """An image file holds a valid image of another kind than its name says (a ghost file saved as pstree.img)."""


class ParentLinkError(ImgtoolError):
    """A dump's ``parent`` link cannot be followed: it loops, or points back at a dump of its own chain."""


class EncodeError(ImgtoolError):
    """A crit-style JSON document cannot be turned back into an image."""


class MissingImageError(ImgtoolError):
    """A checkpoint lacks an image file that another image refers to."""


class ExtraError(ImgtoolError):
    """An extra payload is inconsistent (raised by the codecs; the image reader re-raises with file and offset)."""


class ExtraTruncated(ExtraError):
    """The data ends before the extra payload does."""


class ArchiveError(FormatError):
    """A checkpoint archive cannot be read or unpacked (corrupt, truncated, not an archive).

    ``checkpoint.tar.gz: member '../x': path leaves the extraction directory``; ``.member`` is the
    member's name as the archive spells it, or None.
    """

    def __init__(self, what: str, *, path: str = "<archive>", member: str | None = None) -> None:
        self.member = member
        what = " ".join(what.split())  # one line, whatever a library put in its message
        super().__init__(what if member is None else f"member {member!r}: {what}", path=path)


class UnsafeMemberError(ArchiveError):
    """A member would write outside the directory or is not a file, directory or allowed link."""


class ArchiveLimitError(ArchiveError):
    """The archive goes past one of the ``Limits`` (members, bytes, path length, header data)."""


class NoImageDirError(ArchiveError):
    """The archive unpacked but holds no directory with a CRIU ``inventory.img``."""


class SearchError(ImgtoolError):
    """A search pattern cannot be used."""


class UnmappedAddressError(ImgtoolError):
    """An address no VMA of the task covers."""

    def __init__(self, pid: int, address: int, below: object | None, above: object | None) -> None:
        self.pid, self.address = pid, address
        near = ", ".join(f"{side} {vma}" for side, vma in (("below:", below), ("above:", above)) if vma)
        super().__init__(f"pid {pid}: address {address:#x} is not mapped (no VMA covers it"
                         + (f"; nearest {near}" if near else "") + ")")


class NotDumpedError(ImgtoolError):
    """A mapped address whose page is in no pages file of the dump chain."""

    def __init__(self, pid: int, address: int, vma: object) -> None:
        self.pid, self.address, self.vma = pid, address, vma
        super().__init__(f"pid {pid}: address {address:#x} in VMA {vma} is mapped but its page is not in the "
                         "dump (never touched, or a clean file page); zero fill (--zero-fill) reads it as zeros")


class UsageError(ImgtoolError):
    """The command line asks for something that cannot be done."""


class CoreError(ImgtoolError):
    """A core file cannot be written from this dump (architecture, missing registers)."""
