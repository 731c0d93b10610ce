"""Binary framing of CRIU images: header magics and u32 size-prefixed entries.

Layout (criu/image.c, criu/protobuf.c):

    image   := [prefix u32] magic u32 { entry }
    entry   := size u32, size bytes of protobuf, [extra payload]
    prefix  := IMG_COMMON | IMG_SERVICE  (absent in inventory.img and v1 images)

Integers are host-native; we detect the byte order from the magic (s390x
images are big-endian).  The construct definition of a frame (``frame``) is
the format's declaration and builds entries; the per-entry reader uses an
equivalent precompiled ``struct`` because construct's per-call cost would
dominate decoding of pagemaps with hundreds of thousands of entries.  construct
is imported on first build, so that reading does not pay for importing it.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

from imgtool.errors import TruncatedError, UnknownMagicError
from imgtool.format import magic, registry

if TYPE_CHECKING:
    from construct import Construct

_SIZE = {order: struct.Struct(order + "I") for order in "<>"}


@cache
def frame(byteorder: str) -> Construct:
    """One entry: a u32 size prefix in ``byteorder`` and that many bytes."""
    from construct import GreedyBytes, Int32ub, Int32ul, Prefixed

    return Prefixed(Int32ul if byteorder == "<" else Int32ub, GreedyBytes)


class Header(NamedTuple):
    kind: str              # magic name as crit prints it ("PSTREE")
    prefix: int | None     # IMG_COMMON / IMG_SERVICE, None when absent
    byteorder: str         # "<" or ">"
    size: int              # bytes taken by the magics

    def build(self) -> bytes:
        words = [w for w in (self.prefix, registry.BY_NAME[self.kind]) if w is not None]
        return b"".join(_SIZE[self.byteorder].pack(w) for w in words)


def header_for(kind: str, byteorder: str = "<") -> Header:
    """The header CRIU writes today for an image of ``kind``."""
    prefix = magic.prefix_for(kind)
    return Header(kind, prefix, byteorder, 4 if prefix is None else 8)


def _read_u32(buf: bytes | memoryview, pos: int, order: str) -> int | None:
    if len(buf) < pos + 4:
        return None
    return _SIZE[order].unpack_from(buf, pos)[0]


def read_header(buf: bytes | memoryview, path: str) -> Header:
    """Identify an image by its magic(s); raise UnknownMagicError otherwise."""
    first = _read_u32(buf, 0, "<")
    if first is None:
        raise TruncatedError(f"file is {len(buf)} bytes, too short for a magic", path=path, offset=0)
    for order in ("<", ">"):
        word = _read_u32(buf, 0, order)
        if word in (magic.IMG_COMMON, magic.IMG_SERVICE):
            second = _read_u32(buf, 4, order)
            if second is None:
                raise TruncatedError("file ends after the common magic", path=path, offset=4)
            if second in registry.BY_VALUE:
                return Header(registry.BY_VALUE[second], word, order, 8)
            raise UnknownMagicError(f"unknown image magic {second:#010x} after the common magic",
                                    path=path, offset=4)
        if word in registry.BY_VALUE:  # inventory, or an image v1 file
            return Header(registry.BY_VALUE[word], None, order, 4)
    hint = ""
    if first == magic.KDAT:
        hint = " (this is CRIU's kdat cache, not an image)"
    elif first == 0 or magic.raw_kind(path.rsplit("/", 1)[-1]):
        hint = " (raw data such as pages-*.img has no magic)"
    raise UnknownMagicError(f"unknown magic {first:#010x}{hint}", path=path, offset=0)


def read_size(buf: bytes | memoryview, pos: int, order: str, *, path: str, index: int) -> int:
    """The size prefix of the entry at ``pos``, checked against the data left."""
    left = len(buf) - pos
    if left < 4:
        raise TruncatedError(f"{left} bytes left, too few for a size prefix",
                             path=path, entry=index, offset=pos)
    size = _SIZE[order].unpack_from(buf, pos)[0]
    if size > left - 4:
        raise TruncatedError(f"size prefix says {size} bytes, {left - 4} left",
                             path=path, entry=index, offset=pos)
    return size


def size_reader(order: str):
    """``unpack_from(buf, pos) -> (size,)`` for size prefixes in ``order``."""
    return _SIZE[order].unpack_from


def build_frame(payload: bytes, byteorder: str = "<") -> bytes:
    return frame(byteorder).build(payload)
