"""crit's ``decode``: an image's entries as crit's dicts and JSON text, raw or pretty, with extra payloads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imgtool.crit import payloads
from imgtool.crit.convert import compile_to_dict
from imgtool.crit.jsonout import dict_batches, join_items
from imgtool.crit.pagemap_json import json_items
from imgtool.format import pagemap
from imgtool.format.extras import human_size
from imgtool.format.image import Entry, Image


def dicts(image: Image, pretty: bool = False, nopl: bool = False) -> Iterator[dict[str, Any]]:
    """crit's dict of every entry, with its "extra" as crit shows it."""
    if not image.kind.has_extras:
        for msg in image.messages():
            yield compile_to_dict(msg.DESCRIPTOR, pretty)(msg)
        return
    for entry in image.entries():
        yield entry_dict(image, entry, pretty, nopl)


def entry_dict(image: Image, entry: Entry, pretty: bool, nopl: bool) -> dict[str, Any]:
    d = compile_to_dict(entry.spec.message.DESCRIPTOR, pretty)(entry.message)
    codec = entry.spec.extra
    if entry.extra is not None and codec is not None:
        if nopl:
            d["extra"] = f"... <{human_size(image.extra_size(entry))}>"
        else:
            d["extra"] = payloads.to_json(codec, image.extra_parts(entry))
    return d


def to_dict(image: Image, pretty: bool = False, nopl: bool = False) -> dict[str, Any]:
    """The whole image as crit's ``{"magic": ..., "entries": [...]}``."""
    return {"magic": image.magic, "entries": list(dicts(image, pretty, nopl))}


def json_batches(image: Image, pretty: bool = False, nopl: bool = False) -> Iterator[tuple[int, str]]:
    """crit's JSON text of the entries, in (count, text) batches (see jsonout)."""
    if image.magic != "PAGEMAP":
        yield from dict_batches(dicts(image, pretty, nopl), pretty)
        return
    head = next(image.entries(), None)
    if head is None:
        return
    yield from dict_batches([entry_dict(image, head, pretty, nopl)], pretty)
    # The pagemap's entries are read in columns, never as one message each (decode pagemap rows in bench/).
    for item in pagemap.read(image.view, head.end, image.header.byteorder, image.path, 1):
        if isinstance(item, pagemap.Columns):
            yield len(item), join_items(json_items(item, pretty), pretty)
        else:
            yield from dict_batches([compile_to_dict(item.DESCRIPTOR, pretty)(item)], pretty)
