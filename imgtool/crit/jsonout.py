"""crit-identical JSON text, written as it is produced.

``json.dump(doc, indent=4)`` uses the pure-Python encoder, which is slow for
images with hundreds of thousands of entries, and needs the whole document.
Here each entry is encoded on its own (C encoder for raw output, a small
indenting encoder for pretty output) and written in batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import IO, Any

_BATCH = 4096
_dumps = json.JSONEncoder().encode  # C-accelerated, json.dumps' defaults


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return _dumps(value)


def pretty(value: Any, indent: str = "") -> str:
    """``json.dumps(value, indent=4)`` at nesting ``indent``, for JSON-ready values."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "    "
        items = [f"{inner}{encode_basestring_ascii(k)}: {pretty(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        inner = indent + "    "
        return "[\n" + ",\n".join(inner + pretty(v, inner) for v in value) + "\n" + indent + "]"
    return _scalar(value)


ENTRY_INDENT = " " * 8  # where crit's pretty output puts each entry


def join_items(texts: Iterable[str], indent: bool) -> str:
    """Entry texts joined as they stand inside crit's "entries" list."""
    if indent:
        return ",".join("\n" + ENTRY_INDENT + t for t in texts)
    return ", ".join(texts)


def dict_batches(entries: Iterable[dict[str, Any]], indent: bool) -> Iterator[tuple[int, str]]:
    """(count, text) batches for entry dicts; raw output takes one C call per batch."""
    for chunk in _batches(entries):
        if indent:
            yield len(chunk), join_items((pretty(e, ENTRY_INDENT) for e in chunk), True)
        else:
            yield len(chunk), _dumps(chunk)[1:-1]


def write_document(out: IO[str], magic: str, batches: Iterable[tuple[int, str]], indent: bool) -> None:
    """Write crit's ``{"magic": ..., "entries": [...]}`` from (count, text) batches."""
    name = encode_basestring_ascii(magic)
    if indent:
        out.write('{\n    "magic": ' + name + ',\n    "entries": [')
        joiner, close = ",", "\n    ]\n}"
    else:
        out.write('{"magic": ' + name + ', "entries": [')
        joiner, close = ", ", "]}"
    count = 0
    for n, text in batches:
        out.write((joiner if count else "") + text)
        count += n
    out.write(close if count or not indent else "]\n}")


def _batches(items: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
