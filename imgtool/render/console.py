"""Output for people (rich tables) and scripts (deterministic JSON); no parsing here."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import IO, Any

from rich.console import Console
from rich.table import Table


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def emit_json(value: Any, out: IO[str] | None = None) -> None:
    """JSON for scripts: sorted keys, integers for addresses, one trailing newline; the text of
    ``json.dump(value, indent=2, sort_keys=True)``, written as it is made.  What has an ``iter_json()`` (diff's
    changed page runs) is written item by item from that iterator, never held as a list."""
    out = out or sys.stdout
    pending: list[str] = []
    size = 0
    for text in _encode(value, "\n"):
        pending.append(text)
        size += len(text)
        if size >= 1 << 16:
            out.write("".join(pending))
            pending, size = [], 0
    pending.append("\n")
    out.write("".join(pending))


def _encode(value: Any, newline: str) -> Iterator[str]:
    """JSON text of ``value``; ``newline`` is a line break and the indentation of the current level."""
    value = _jsonable(value)
    inner = newline + "  "
    if isinstance(value, dict):
        if not value:
            yield "{}"
            return
        for i, key in enumerate(sorted(value)):
            yield ("," if i else "{") + inner + encode_basestring_ascii(_key(key)) + ": "
            yield from _encode(value[key], inner)
        yield newline + "}"
    elif isinstance(value, (list, Iterator)):
        opened = False
        for item in value:
            yield ("," if opened else "[") + inner
            yield from _encode(item, inner)
            opened = True
        yield newline + "]" if opened else "[]"
    else:
        yield json.dumps(value)


def _key(key: Any) -> str:
    """A dict key as json writes it."""
    return key if isinstance(key, str) else json.dumps(key) if isinstance(key, (bool, type(None))) else str(key)


def _jsonable(value: Any) -> Any:
    """``value`` as what JSON can show (dict, list, iterator or scalar)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "iter_json"):
        return value.iter_json()
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if value is None or isinstance(value, (str, int, float, dict, list, Iterator)):
        return value
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          right: Sequence[str] = ()) -> Table:
    """A rich table; columns named in ``right`` are right-aligned (numbers)."""
    t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for i, name in enumerate(columns):  # only the last column wraps
        t.add_column(name, justify="right" if name in right else "left", overflow="fold",
                     no_wrap=i < len(columns) - 1)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def hexdump(data: bytes, base: int = 0) -> Iterable[str]:
    """Classic 16-bytes-per-line hexdump with addresses starting at ``base``."""
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        yield f"{base + off:016x}  {hexes:<47}  |{text}|"


def progress(total: int | None, description: str, *, enabled: bool | None = None):
    """A rich progress bar on stderr (hidden when stderr is not a terminal)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    show = sys.stderr.isatty() if enabled is None else enabled
    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), console=console(stderr=True), disable=not show,
                   transient=True)
    return bar, bar.add_task(description, total=total)
