"""Generic field-level differences of JSON-like values and of whole images (entry by entry)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import zip_longest
from typing import Any

from imgtool.analysis.changes import Change
from imgtool.crit.convert import to_dict
from imgtool.errors import RawImageError
from imgtool.model.dump import Dump


def diff_values(facet: str, path: tuple[str, ...], old: Any, new: Any) -> Iterator[Change]:
    """Field-level differences between two JSON-like values (dicts, lists, scalars)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if key not in new:
                yield Change(facet, (*path, str(key)), "removed", old[key], None)
            elif key not in old:
                yield Change(facet, (*path, str(key)), "added", None, new[key])
            else:
                yield from diff_values(facet, (*path, str(key)), old[key], new[key])
    elif isinstance(old, list) and isinstance(new, list) and old and isinstance(old[0], dict):
        for i in range(max(len(old), len(new))):
            if i >= len(new):
                yield Change(facet, (*path, f"[{i}]"), "removed", old[i], None)
            elif i >= len(old):
                yield Change(facet, (*path, f"[{i}]"), "added", None, new[i])
            else:
                yield from diff_values(facet, (*path, f"[{i}]"), old[i], new[i])
    elif old != new:
        yield Change(facet, path, "changed", old, new)


def _entry_key(entry: dict[str, Any], index: int) -> Any:
    for key in ("id", "mnt_id", "ns_id", "ino", "pid"):
        if key in entry:
            return f"{key} {entry[key]}"
    return f"entry {index}"


def diff_image(facet: str, name: str, a: Dump, b: Dump) -> Iterator[Change]:
    """Entry-by-entry, field-by-field difference of one image present in both dumps."""
    old = [to_dict(m, pretty=True) for m in a.entries(name)]
    new = [to_dict(m, pretty=True) for m in b.entries(name)]
    old_by = {_entry_key(e, i): e for i, e in enumerate(old)}
    new_by = {_entry_key(e, i): e for i, e in enumerate(new)}
    for key in list(old_by) + [k for k in new_by if k not in old_by]:
        path = (f"image {name}", key)
        if key not in new_by:
            yield Change(facet, path, "removed", old_by[key], None)
        elif key not in old_by:
            yield Change(facet, path, "added", None, new_by[key])
        else:
            yield from diff_values(facet, path, old_by[key], new_by[key])


def image_names(dump: Dump) -> set[str]:
    return {p.name for p in dump.path.iterdir() if p.is_file() and p.name != "parent"}


def same_bytes(a: Iterator[bytes], b: Iterator[bytes]) -> bool:
    """Whether two files of the same size, read a chunk of the same size at a time, hold the same bytes (ghost
    files, tmpfs tarballs and GPU pages can be big: never read whole; the first difference ends the read)."""
    return all(x == y for x, y in zip_longest(a, b))


def same_file(a: Dump, b: Dump, name: str) -> bool:
    """Whether file ``name`` of both dumps holds the same bytes: sizes first, then a chunk at a time."""
    if (a.path / name).stat().st_size != (b.path / name).stat().st_size:
        return False
    return same_bytes(a.chunks(a.path / name), b.chunks(b.path / name))


def diff_image_files(facet: str, names: list[str], a: Dump, b: Dump) -> Iterator[Change]:
    """Image files ``names`` (sorted) of either dump: added, removed, or compared entry by entry (raw: as bytes)."""
    names_a, names_b = image_names(a), image_names(b)
    for name in names:
        if name not in names_b:
            yield Change(facet, (f"image {name}",), "removed")
        elif name not in names_a:
            yield Change(facet, (f"image {name}",), "added")
        elif name.endswith(".img") and not same_file(a, b, name):
            try:
                yield from diff_image(facet, name.removesuffix(".img"), a, b)
            except RawImageError:
                yield Change(facet, (f"image {name}",), "changed", "(raw data)", "(raw data)")
