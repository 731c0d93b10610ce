"""crit's ``encode``: crit-style JSON documents back into image bytes, refusing what CRIU could not read."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import IO, Any

from google.protobuf.message import Message

from imgtool.crit import payloads
from imgtool.crit.convert import from_dict
from imgtool.errors import EncodeError, ExtraError
from imgtool.format import framing
from imgtool.format.extras import Extra
from imgtool.format.registry import KINDS


def _nopl_marker(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("... <")


def encode_entries(kind: str, entries: Iterable[Any], out: IO[bytes], byteorder: str = "<") -> None:
    """Write an image of ``kind`` from crit-style entry dicts to a binary stream."""
    if not isinstance(kind, str) or kind not in KINDS:
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
        blob = codec.build(msg, payloads.from_json(codec, value), order) if "extra" in item else b""
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
