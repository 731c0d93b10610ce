"""crit's JSON text of pagemap entries straight from their columns (no message or dict per entry)."""

from __future__ import annotations

from collections.abc import Iterator

from imgtool.crit.jsonout import ENTRY_INDENT
from imgtool.format.flags import FLAG_TABLES, format_flags
from imgtool.format.pagemap import Columns

_TRUE_FALSE = {True: "true", False: "false"}


def json_items(cols: Columns, pretty: bool) -> Iterator[str]:
    """crit's JSON text of each entry in ``cols`` (raw or pretty), without dicts."""
    names = cols.present()
    values = []
    parts = []
    for name in names:
        column = getattr(cols, name)
        if name == "in_parent":
            parts.append(f'"{name}": %s')
            values.append(map(_TRUE_FALSE.__getitem__, column))
        elif pretty and name == "vaddr":
            parts.append(f'"{name}": "0x%x"')
            values.append(column)
        elif pretty and name == "flags":
            labels = {v: format_flags(v, FLAG_TABLES["pmap.flags"]) for v in set(column)}
            parts.append(f'"{name}": "%s"')
            values.append(map(labels.__getitem__, column))
        else:
            parts.append(f'"{name}": %d')
            values.append(column)
    if pretty:
        inner = "\n" + ENTRY_INDENT + "    "
        template = "{" + inner + ("," + inner).join(parts) + "\n" + ENTRY_INDENT + "}"
    else:
        template = "{" + ", ".join(parts) + "}"
    return map(template.__mod__, zip(*values, strict=True))
