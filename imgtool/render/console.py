"""Output for people (rich tables) and scripts (deterministic JSON); no parsing here."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import IO, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# Width of a console that is not a terminal: one record per line, nothing wrapped or padded to 80 columns.
PIPE_WIDTH = 1 << 16

# C0 controls but tab, DEL and C1: shown as \xNN, never sent raw to a terminal (a newline too: one value, one line).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0a, 0x20), *range(0x7f, 0xa0))}
# What the terminal writer rewrites: not ESC, BEL, BS and CR, which rich's own control sequences (progress bars,
# titles) use; rich's Text already drops BEL, BS, VT, FF and CR from the text it is given.
_TERMINAL_UNSAFE = {c: f"\\x{c:02x}" for c in (*range(0x07), *range(0x0e, 0x1b), *range(0x1c, 0x20), 0x7f)}
_NUMERIC = re.compile(r"(?=[^ ]*[0-9])[-+]?[0-9a-fA-F][0-9a-fA-FxX.,:_-]*( ?[KMGT]?i?B)?")


def clean(text: str) -> str:
    """``text`` with control characters (NUL, ESC, newline, ...) but tab written as ``\\xNN``: safe on a
    terminal, and one line."""
    return text.translate(_CONTROLS)


class _LineWriter:
    """A text stream for rich: trailing spaces cut from every line (pipes); on a terminal, control bytes that
    are no escape sequence of rich's own (NUL, BEL, ...) are shown as ``\\xNN``."""

    def __init__(self, stream: IO[str], *, terminal: bool) -> None:
        self.stream, self.terminal, self._pending = stream, terminal, ""

    def write(self, text: str) -> int:
        if self.terminal:
            return self.stream.write(text.translate(_TERMINAL_UNSAFE))
        text = self._pending + text
        head, sep, self._pending = text.rpartition("\n")
        if sep:
            self.stream.write("\n".join(line.rstrip(" ") for line in head.split("\n")) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.stream.write(self._pending.rstrip(" "))
            self._pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return self.terminal

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich exits with 1 here; the command line stops quietly with 0 instead (cli.main)."""
        self.quiet = True
        raise BrokenPipeError


def console(stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A rich console on stdout (or stderr, or ``file``).  On a terminal: its width, text wrapped at spaces,
    numbers and addresses never cut (see ``table``), no raw control bytes.  Elsewhere (a pipe, a file): no
    colours, nothing wrapped or padded, no trailing spaces: one record per line."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    terminal = _isatty(stream)
    writer = _LineWriter(stream, terminal=terminal)
    if terminal:
        return _Console(file=writer, highlight=False, soft_wrap=False, force_terminal=True)  # type: ignore[arg-type]
    return _Console(file=writer, highlight=False, soft_wrap=True, width=PIPE_WIDTH, color_system=None,  # type: ignore[arg-type]
                   force_terminal=False, force_jupyter=False, force_interactive=False)


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


class RecordTable(Table):
    """A table that never cuts a number or an address.  Numeric columns do not wrap and are as wide as their
    widest value; when the table is wider than the space at hand, the other columns share what is left, each at
    least as wide as the longest number or address in it, and wrap (folding longer words).  When even that does
    not fit, each row is shown as ``column: value`` lines instead."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        natural = Measurement.get(console, options.update_width(PIPE_WIDTH), self).maximum
        if natural <= options.max_width or not self.columns:
            yield from super().__rich_console__(console, options)
            return
        widths = self._fitted_widths(options.max_width)
        if widths is None:
            yield from self._records()
            return
        saved = [c.width for c in self.columns]
        try:
            for column, width in zip(self.columns, widths, strict=True):
                column.width = width
            yield from super().__rich_console__(console, options)
        finally:
            for column, width in zip(self.columns, saved, strict=True):
                column.width = width

    def _fitted_widths(self, max_width: int) -> list[int] | None:
        plain = [[_plain(v) for v in c.cells] for c in self.columns]
        lows, highs = [], []
        for column, cells in zip(self.columns, plain, strict=True):
            longest = max((len(line) for v in cells for line in v.split("\n")), default=0)
            longest = max(longest, len(str(column.header)) if column.no_wrap else 0)
            if column.no_wrap:
                lows.append(max(column.min_width or 0, longest))
                highs.append(lows[-1])
            else:
                numbers = max((len(w) for v in cells for w in v.split() if _NUMERIC.fullmatch(w)), default=0)
                lows.append(max(min(8, longest), numbers))
                highs.append(max(longest, lows[-1]))
        room = max_width - 2 * (len(self.columns) - 1)
        if sum(lows) > room:
            return None
        spare = room - sum(lows)
        want = [h - lo for lo, h in zip(lows, highs, strict=True)]
        total = sum(want)
        widths = [lo + (spare * w // total if total else 0) for lo, w in zip(lows, want, strict=True)]
        return [min(w, h) for w, h in zip(widths, highs, strict=True)]

    def _records(self) -> RenderResult:
        if self.title:
            yield Text.from_markup(str(self.title), style="bold") if isinstance(self.title, str) else self.title
        names = [str(c.header) for c in self.columns]
        cells = [list(c.cells) for c in self.columns]
        for i in range(self.row_count):
            for name, column in zip(names, cells, strict=True):
                value = column[i]
                if value not in ("", None):
                    yield Text.from_markup(f"  {name}: ") + (Text.from_markup(value) if isinstance(value, str)
                                                             else Text(str(value)))
            yield Text("")


def _plain(value: Any) -> str:
    return Text.from_markup(value).plain if isinstance(value, str) else str(value)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          right: Sequence[str] = ()) -> Table:
    """A table of ``rows`` (rich markup; control characters but newlines are shown as ``\\xNN``).

    Columns named in ``right`` are right-aligned; they and every column that holds only numbers, sizes or
    addresses never wrap or get cut; the other columns wrap, folding a word longer than the column."""
    cells = [["\n".join(map(clean, ("" if v is None else str(v)).split("\n"))) for v in row] for row in rows]
    t = RecordTable(title=clean(title) if title else None, title_justify="left", header_style="bold", box=None,
                    pad_edge=False)
    for i, name in enumerate(columns):
        values = [row[i] for row in cells if i < len(row) and row[i]]
        numeric = name in right or (bool(values) and all(_NUMERIC.fullmatch(v) for v in values))
        width = max([len(name), *map(len, values)]) if numeric else None
        t.add_column(name, justify="right" if name in right else "left", overflow="fold", no_wrap=numeric,
                     min_width=width)
    for row in cells:
        t.add_row(*row)
    return t


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def hexdump(data: bytes, base: int = 0, *, squeeze: bool = False) -> Iterable[str]:
    """Classic 16-bytes-per-line hexdump with addresses starting at ``base``; with ``squeeze``, repeated lines
    are one ``*`` line and the end address closes the dump, as ``hexdump -C`` does."""
    return hexdump_chunks([(base, data)], squeeze=squeeze)


def hexdump_chunks(chunks: Iterable[tuple[int, bytes]], *, squeeze: bool = True) -> Iterator[str]:
    """The hexdump of consecutive ``(address, bytes)`` chunks (each a multiple of 16 bytes but the last);
    squeezing works across chunks."""
    previous: bytes | None = None
    starred = False
    end = None
    for base, data in chunks:
        for off in range(0, len(data), 16):
            chunk = data[off:off + 16]
            end = base + off + len(chunk)
            if squeeze and chunk == previous and len(chunk) == 16:
                if not starred:
                    starred = True
                    yield "*"
                continue
            previous, starred = chunk, False
            hexes = " ".join(f"{b:02x}" for b in chunk)
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            yield f"{base + off:016x}  {hexes:<47}  |{text}|"
    if squeeze and end is not None:
        yield f"{end:016x}"


def progress(total: int | None, description: str, *, enabled: bool | None = None):
    """A rich progress bar on stderr (hidden when stderr is not a terminal)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    show = sys.stderr.isatty() if enabled is None else enabled
    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), console=console(stderr=True), disable=not show,
                   transient=True)
    return bar, bar.add_task(description, total=total)
