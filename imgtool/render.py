"""Output for people (rich tables) and scripts (deterministic JSON); no parsing here."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def emit_json(value: Any) -> None:
    """JSON for scripts: sorted keys, integers for addresses, one trailing newline."""
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=_jsonable)
    sys.stdout.write("\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
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
