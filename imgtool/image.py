"""One CRIU image file: lazy entries, counting, crit-style dicts, writing back."""

from __future__ import annotations

import contextlib
import io
import mmap
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message

from . import framing, magic, pagemap
from .convert import compile_to_dict, from_dict
from .errors import DecodeError, EncodeError, FormatError, RawImageError, TruncatedError
from .extras import Extra, ExtraError, ExtraTruncated, human_size
from .registry import KINDS, EntrySpec, ImageKind

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

    def __init__(self, data: Buffer, path: str = "<stream>", *, _owned: mmap.mmap | None = None) -> None:
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
    def open(cls, path: str | os.PathLike[str]) -> Image:
        """Open an image file; the file is memory-mapped, not read."""
        path = os.fspath(path)
        name = os.path.basename(path)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except OSError as exc:
            raise FormatError(f"cannot read: {exc.strerror}", path=name) from None
        raw = magic.raw_kind(name)
        if raw is not None and not _has_magic(mapped or b""):
            raise RawImageError(f"raw {raw} image with no entries to decode", path=name)
        try:
            return cls(mapped if mapped is not None else b"", name, _owned=mapped)
        except FormatError:
            if mapped is not None:
                mapped.close()
            raise

    @classmethod
    def from_stream(cls, stream: IO[bytes], name: str = "<stdin>") -> Image:
        """Read a whole binary stream (stdin, a pipe) and open it as an image."""
        return cls(stream.read(), name)

    def close(self) -> None:
        self._view.release()
        if self._owned is not None:
            with contextlib.suppress(BufferError):  # entries still reference it; the GC will unmap
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
        for entry in self.entries():
            yield entry.message

    # -- crit-style dicts ----------------------------------------------------

    def dicts(self, pretty: bool = False, nopl: bool = False) -> Iterator[dict[str, Any]]:
        """crit's dict of every entry, with its "extra" as crit shows it."""
        if self.kind.entry.extra is None and (self.kind.first is None or self.kind.first.extra is None):
            yield from self._plain_dicts(pretty)
            return
        for entry in self.entries():
            yield self._dict(entry, pretty, nopl)

    def _dict(self, entry: Entry, pretty: bool, nopl: bool) -> dict[str, Any]:
        d = compile_to_dict(entry.spec.message.DESCRIPTOR, pretty)(entry.message)
        codec = entry.spec.extra
        if entry.extra is not None and codec is not None:
            if not nopl:
                d["extra"] = self._extra_json(entry)
            else:
                size = codec.payload_size(entry.message, entry.extra, self.header.byteorder)
                d["extra"] = f"... <{human_size(size)}>"
        return d

    def _plain_dicts(self, pretty: bool) -> Iterator[dict[str, Any]]:
        """dicts() for kinds without extras: no Entry objects."""
        for msg in self._plain_messages():
            yield compile_to_dict(msg.DESCRIPTOR, pretty)(msg)

    def _plain_messages(self) -> Iterator[Message]:
        view, path, kind, order = self._view, self.path, self.kind, self.header.byteorder
        pos, index, end = self.header.size, 0, len(view)
        unpack = framing.size_reader(order)
        while pos < end:
            if end - pos < 4 or unpack(view, pos)[0] > end - pos - 4:
                framing.read_size(view, pos, order, path=path, index=index)  # raises
            stop = pos + 4 + unpack(view, pos)[0]
            yield _parse(kind.spec(index).message, view[pos + 4:stop], path, index, pos)
            pos, index = stop, index + 1

    def json_batches(self, pretty: bool = False, nopl: bool = False) -> Iterator[tuple[int, str]]:
        """crit's JSON text of the entries, in (count, text) batches (see jsonout)."""
        from .jsonout import dict_batches, join_items  # imports json: only JSON output needs it

        if self.magic != "PAGEMAP":
            yield from dict_batches(self.dicts(pretty, nopl), pretty)
            return
        head = next(self.entries(), None)
        if head is None:
            return
        yield from dict_batches([self._dict(head, pretty, nopl)], pretty)
        for item in pagemap.read(self._view, head.end, self.header.byteorder, self.path, 1):
            if isinstance(item, pagemap.Columns):
                yield len(item), join_items(pagemap.json_items(item, pretty), pretty)
            else:
                yield from dict_batches([compile_to_dict(item.DESCRIPTOR, pretty)(item)], pretty)

    def _extra_json(self, entry: Entry) -> Any:
        try:
            return entry.spec.extra.to_json(entry.message, entry.extra, self.header.byteorder)
        except ExtraError as exc:
            raise FormatError(f"extra payload: {exc}", path=self.path, entry=entry.index,
                              offset=entry.offset + 4 + entry.size) from None

    def to_dict(self, pretty: bool = False, nopl: bool = False) -> dict[str, Any]:
        """The whole image as crit's ``{"magic": ..., "entries": [...]}``."""
        return {"magic": self.magic, "entries": list(self.dicts(pretty, nopl))}


def _has_magic(data: Buffer) -> bool:
    try:
        framing.read_header(memoryview(data), "")
    except FormatError:
        return False
    return True


def open_image(path: str | os.PathLike[str]) -> Image:
    return Image.open(path)


# -- writing ---------------------------------------------------------------------


def _nopl_marker(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("... <")


def encode_entries(kind: str, entries: Iterable[Any], out: IO[bytes], byteorder: str = "<") -> None:
    """Write an image of ``kind`` from crit-style entry dicts to a binary stream."""
    if kind not in KINDS:
        raise EncodeError(f"unknown image magic name {kind!r}")
    image_kind = KINDS[kind]
    out.write(framing.header_for(kind, byteorder).build())
    for index, item in enumerate(entries):
        if not isinstance(item, dict):
            raise EncodeError(f"entry {index}: expected an object")
        spec = image_kind.spec(index)
        fields = {k: v for k, v in item.items() if k != "extra"}
        try:
            msg = from_dict(fields, spec.message())
            payload = msg.SerializeToString()
        except EncodeError as exc:
            raise EncodeError(f"entry {index}: {exc}") from None
        except Exception as exc:  # protobuf: missing required fields, out-of-range values
            raise EncodeError(f"entry {index}: {exc}") from None
        out.write(framing.build_frame(payload, byteorder))
        if spec.extra is not None:
            out.write(_extra_bytes(spec.extra, msg, item, byteorder, index))
        elif "extra" in item:
            raise EncodeError(f"entry {index}: {kind} entries carry no extra payload")


def _extra_bytes(codec: Extra, msg: Message, item: dict[str, Any], order: str, index: int) -> bytes:
    """The raw payload for an entry's "extra", checked against what the entry says follows it."""
    value = item.get("extra")
    if _nopl_marker(value):
        raise EncodeError(f"entry {index}: extra payload was left out (decoded with --nopl)")
    try:
        blob = codec.from_json(msg, value, order) if "extra" in item else b""
        expected = codec.length(msg, memoryview(blob), order)
    except (EncodeError, ExtraError) as exc:
        raise EncodeError(f"entry {index}: {exc}") from None
    if expected is None and blob:
        raise EncodeError(f"entry {index}: this entry takes no extra payload, {len(blob)} bytes given")
    if expected is not None and expected != len(blob):
        raise EncodeError(f"entry {index}: extra payload has {len(blob)} bytes, the entry says {expected}")
    return blob


def encode_dict(document: Any) -> bytes:
    """crit's ``encode``: a ``{"magic", "entries"}`` document to image bytes."""
    if not isinstance(document, dict) or "magic" not in document or "entries" not in document:
        raise EncodeError('expected a JSON object with "magic" and "entries"')
    if not isinstance(document["entries"], list):
        raise EncodeError('"entries" must be a list')
    buf = io.BytesIO()
    encode_entries(document["magic"], document["entries"], buf)
    return buf.getvalue()


def image_bytes(kind: str, frames: Iterable[bytes | tuple[Message, bytes]]) -> bytes:
    """Build image bytes from messages, optionally each with its raw extra payload."""
    parts = [framing.header_for(kind).build()]
    for item in frames:
        msg, extra = item if isinstance(item, tuple) else (item, b"")
        parts += [framing.build_frame(msg.SerializeToString() if isinstance(msg, Message) else msg), extra]
    return b"".join(parts)


__all__ = ["Entry", "Image", "encode_dict", "encode_entries", "image_bytes", "open_image"]
