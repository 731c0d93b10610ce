"""One CRIU image file: lazy entries and counting; ``image_bytes`` frames messages into a new one."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Iterator
from typing import IO

from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message

from imgtool.errors import DecodeError, ExtraError, ExtraTruncated, FormatError, RawImageError, TruncatedError
from imgtool.format import framing, magic
from imgtool.format.located import Backing, Mapped
from imgtool.format.registry import KINDS, EntrySpec, ImageKind

Buffer = bytes | bytearray | memoryview | mmap.mmap


class Entry:
    """One entry: its place in the file, its protobuf bytes and any extra payload."""

    __slots__ = ("_message", "extra", "index", "offset", "path", "payload", "size", "spec")

    def __init__(self, index: int, offset: int, size: int, payload: memoryview, spec: EntrySpec,
                 extra: memoryview | None, path: str = "<stream>") -> None:
        self.index = index
        self.offset = offset            # where its size prefix starts
        self.size = size                # protobuf payload length
        self.payload = payload
        self.spec = spec
        self.extra = extra              # raw bytes CRIU wrote after the message, if any
        self.path = path
        self._message: Message | None = None

    def __repr__(self) -> str:
        return f"<Entry {self.index} of {self.path} at {self.offset}: {self.size} bytes of {self.spec.message_name}>"

    @property
    def message(self) -> Message:
        if self._message is None:
            self._message = _parse(self.spec.message, self.payload, self.path, self.index, self.offset)
        return self._message

    @property
    def end(self) -> int:
        return self.offset + 4 + self.size + (len(self.extra) if self.extra is not None else 0)


def _parse(cls: type[Message], payload: memoryview, path: str, index: int, offset: int) -> Message:
    try:
        return cls.FromString(payload)
    except PbDecodeError as exc:
        raise DecodeError(f"{len(payload)} bytes are not a valid {cls.DESCRIPTOR.name} ({exc})",
                          path=path, entry=index, offset=offset) from None


class Image:
    """A decodable CRIU image over a buffer (mmap for files, bytes for streams).

    Nothing is decoded until entries are asked for; ``entries()`` walks the
    frames lazily and yields each with its offset and size.
    """

    def __init__(self, data: Buffer, path: str = "<stream>", *, _owned: Mapped | None = None) -> None:
        self.path = path
        self._data = data
        self._owned = _owned
        self._view = memoryview(data)
        try:
            self.header = framing.read_header(self._view, path)
        except FormatError:
            self._view.release()
            raise
        self.kind: ImageKind = KINDS[self.header.kind]

    # -- opening -------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], backing: Backing | None = None) -> Image:
        """Open an image file (or the bytes ``backing`` says are its: a member of a plain tar); mapped, not read."""
        name = os.path.basename(os.fspath(path))
        try:
            mapped = Mapped(path, backing)
        except OSError as exc:
            raise FormatError(f"cannot read: {exc.strerror}", path=name) from None
        raw = magic.raw_kind(name)
        try:
            if raw is not None and not _has_magic(mapped.view):
                raise RawImageError(f"raw {raw} image with no entries to decode", path=name)
            return cls(mapped.view, name, _owned=mapped)
        except FormatError:
            mapped.close()
            raise

    @classmethod
    def from_stream(cls, stream: IO[bytes], name: str = "<stdin>") -> Image:
        """Read a whole binary stream (stdin, a pipe) and open it as an image."""
        return cls(stream.read(), name)

    def close(self) -> None:
        self._view.release()
        if self._owned is not None:     # entries may still reference it: then the GC unmaps it
            self._owned.close()

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def magic(self) -> str:
        return self.header.kind

    def __len__(self) -> int:
        return len(self._view)

    # -- walking ---------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """Yield every entry lazily, in file order."""
        view, order, path, kind = self._view, self.header.byteorder, self.path, self.kind
        pos, index, end = self.header.size, 0, len(view)
        while pos < end:
            size = framing.read_size(view, pos, order, path=path, index=index)
            start = pos + 4
            spec = kind.spec(index)
            entry = Entry(index, pos, size, view[start:start + size], spec, None, path)
            pos = start + size
            if spec.extra is not None:
                pos += self._attach_extra(entry, pos)
            yield entry
            index += 1

    __iter__ = entries

    def _attach_extra(self, entry: Entry, pos: int) -> int:
        rest = self._view[pos:]
        try:
            length = entry.spec.extra.length(entry.message, rest, self.header.byteorder)
        except ExtraTruncated as exc:
            raise TruncatedError(f"extra payload: {exc}", path=self.path, entry=entry.index, offset=pos) from None
        except ExtraError as exc:
            raise FormatError(f"extra payload: {exc}", path=self.path, entry=entry.index, offset=pos) from None
        if length is None:
            return 0
        if length > len(rest):
            raise TruncatedError(f"extra payload of {length} bytes expected, {len(rest)} left",
                                 path=self.path, entry=entry.index, offset=pos)
        entry.extra = rest[:length]
        return length

    def count(self) -> int:
        """Number of entries (pagemap head included), decoding only what extras need."""
        return sum(1 for _ in self.entries())

    def messages(self) -> Iterator[Message]:
        """Every entry's message; kinds without extra payloads skip the Entry objects."""
        if self.kind.has_extras:
            for entry in self.entries():
                yield entry.message
            return
        view, path, kind, order = self._view, self.path, self.kind, self.header.byteorder
        pos, index, end = self.header.size, 0, len(view)
        unpack = framing.size_reader(order)
        while pos < end:
            if end - pos < 4 or unpack(view, pos)[0] > end - pos - 4:
                framing.read_size(view, pos, order, path=path, index=index)  # raises
            stop = pos + 4 + unpack(view, pos)[0]
            yield _parse(kind.spec(index).message, view[pos + 4:stop], path, index, pos)
            pos, index = stop, index + 1

    @property
    def view(self) -> memoryview:
        """The image's bytes (a read-only view of the mapping)."""
        return self._view

    def extra_parts(self, entry: Entry) -> object:
        """What ``entry``'s extra payload holds (see format.extras), errors naming file and offset."""
        try:
            return entry.spec.extra.parts(entry.message, entry.extra, self.header.byteorder)
        except ExtraError as exc:
            raise FormatError(f"extra payload: {exc}", path=self.path, entry=entry.index,
                              offset=entry.offset + 4 + entry.size) from None

    def extra_size(self, entry: Entry) -> int:
        """The payload size crit's --nopl shows for ``entry``."""
        return entry.spec.extra.payload_size(entry.message, entry.extra, self.header.byteorder)


def _has_magic(data: Buffer) -> bool:
    try:
        framing.read_header(memoryview(data), "")
    except FormatError:
        return False
    return True


def open_image(path: str | os.PathLike[str]) -> Image:
    return Image.open(path)


def image_bytes(kind: str, frames: Iterable[bytes | tuple[Message, bytes]]) -> bytes:
    """Build image bytes from messages, optionally each with its raw extra payload."""
    parts = [framing.header_for(kind).build()]
    for item in frames:
        msg, extra = item if isinstance(item, tuple) else (item, b"")
        parts += [framing.build_frame(msg.SerializeToString() if isinstance(msg, Message) else msg), extra]
    return b"".join(parts)


__all__ = ["Entry", "Image", "image_bytes", "open_image"]
