"""YARA rules over process memory as the process saw it, and over the content ``extract`` finds.

Memory is walked with the streaming read (``memory.stream.chunks``): each chunk is matched with ``overlap``
bytes after it and only string matches STARTING inside the chunk proper are kept, so a string across a
chunk or page boundary is found once (volatility3's yarascan contract).  As there, a rule's condition is
evaluated per chunk (plus overlap): conditions over several strings far apart, or over the whole file
(``filesize``, ``uint16(0)``), see one chunk at a time.  yara-python is an optional extra (``imgtool[yara]``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from imgtool.errors import SearchError, UsageError
from imgtool.memory.search import spaces
from imgtool.memory.sources import TaskSet
from imgtool.memory.space import AddressSpace
from imgtool.memory.stream import chunks
from imgtool.memory.vma import Vma

CHUNK = 4 << 20        # addresses per chunk
OVERLAP = 4096         # longest string match found across a chunk boundary, bytes
CONTEXT = 16           # bytes of context either side of a match


def load_yara() -> Any:
    """The yara module, or a UsageError naming the extra that brings it."""
    try:
        import yara  # optional extra: imported only by the commands that use it
    except ImportError:
        raise UsageError("YARA needs yara-python: pip install 'imgtool[yara]' (or pip install yara-python)") from None
    return yara


def compile_rules(path: str | os.PathLike[str] | None = None, source: str | None = None) -> Any:
    """Compiled rules from a file or from source text (SearchError on a syntax error)."""
    yara = load_yara()
    try:
        if source is not None:
            return yara.compile(source=source)
        return yara.compile(filepath=os.fspath(path))
    except yara.SyntaxError as exc:
        raise SearchError(f"{path or 'rules'}: YARA syntax error: {exc}") from None
    except yara.Error as exc:
        raise SearchError(f"{path or 'rules'}: {exc}") from None


class YaraHit(NamedTuple):
    """One string match of a rule: in a task's memory (pid, vaddr, vma) or in extracted content (item)."""

    rule: str
    string: str            # the string identifier, "$s"
    pid: int | None
    vaddr: int | None      # memory: the address of the match's first byte
    vma: Vma | None
    offset: int | None     # extracted content: the offset in the item
    item: str | None       # extracted content: the item's file under OUT (its name in ``extract``)
    match: bytes
    before: bytes
    after: bytes
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "string": self.string, "pid": self.pid, "vaddr": self.vaddr,
                "vma": self.vma.to_json() if self.vma is not None else None, "offset": self.offset,
                "item": self.item, "length": len(self.match), "match": self.match.hex(),
                "before": self.before.hex(), "after": self.after.hex(), "tags": list(self.tags)}


def _instances(rules: Any, data: memoryview, proper: int) -> Iterator[tuple[Any, str, int, int]]:
    """(match, string id, offset, length) of the string matches starting below ``proper``."""
    for match in rules.match(data=data):
        for string in match.strings:
            for instance in string.instances:
                if instance.offset < proper:
                    yield match, string.identifier, instance.offset, instance.matched_length


def scan_space(space: AddressSpace, rules: Any, *, chunk: int = CHUNK, overlap: int = OVERLAP,
               context: int = CONTEXT, progress: Callable[[int], None] | None = None) -> Iterator[YaraHit]:
    """Every string match of ``rules`` in one task's dumped memory, chunk by chunk in address order."""
    if chunk < 1 or overlap < 0:
        raise SearchError("the chunk must be at least 1 byte and the overlap not negative")
    tail, tail_end = b"", -1        # the last bytes of the chunk before: context before a match at a chunk start
    for piece in chunks(space, size=chunk, overlap=overlap + context, walk="yara"):
        proper = piece.size
        data = piece.data[:min(piece.length, proper + overlap)]
        found = sorted(_instances(rules, data, proper), key=lambda f: (f[2], f[0].rule, f[1]))
        for match, ident, offset, length in found:
            before = bytes(piece.buffer[max(offset - context, 0):offset])
            if len(before) < context and tail_end == piece.vaddr:
                before = (tail + before)[-context:] if context else b""
            after = bytes(piece.buffer[offset + length:min(offset + length + context, piece.length)])
            yield YaraHit(match.rule, ident, space.pid, piece.vaddr + offset, piece.vma, None, None,
                          bytes(piece.buffer[offset:offset + length]), before, after, tuple(match.tags))
        if context:
            tail = bytes(piece.buffer[max(proper - context, 0):proper])
            tail_end = piece.end
        if progress is not None:
            progress(proper)


def scan_dump(dump: TaskSet, rules: Any, *, pids: Iterable[int] | None = None, chunk: int = CHUNK,
              overlap: int = OVERLAP, context: int = CONTEXT,
              progress: Callable[[int], None] | None = None) -> Iterator[YaraHit]:
    """Every match in every task (pstree order), each task's view of shared memory included."""
    for space in spaces(dump, pids):
        yield from scan_space(space, rules, chunk=chunk, overlap=overlap, context=context, progress=progress)


def scan_stream(name: str, stream: Iterable[bytes], rules: Any, *, chunk: int = CHUNK, overlap: int = OVERLAP,
                context: int = CONTEXT) -> Iterator[YaraHit]:
    """Every match in a byte stream (extracted content): chunks of ``chunk`` bytes matched with ``overlap``
    more, only matches starting in the chunk proper kept."""
    source = iter(stream)
    window, wstart, pos, exhausted = bytearray(), 0, 0, False     # window holds bytes [wstart, wstart + len)
    while True:
        while not exhausted and wstart + len(window) < pos + chunk + overlap + context:
            part = next(source, None)
            if part is None:
                exhausted = True
            else:
                window += part
        stop = min(pos + chunk, wstart + len(window))       # the chunk proper is [pos, stop)
        if stop <= pos:
            return
        lo = pos - wstart
        with memoryview(window) as view, view[lo:min(len(window), stop - wstart + overlap)] as data:
            found = sorted(_instances(rules, data, stop - pos), key=lambda f: (f[2], f[0].rule, f[1]))
        for match, ident, offset, length in found:
            at = lo + offset
            yield YaraHit(match.rule, ident, None, None, None, pos + offset, name,
                          bytes(window[at:at + length]), bytes(window[max(at - context, 0):at]),
                          bytes(window[at + length:at + length + context]), tuple(match.tags))
        pos = stop
        drop = max(0, pos - context - wstart)               # keep ``context`` bytes before the next chunk
        del window[:drop]
        wstart += drop


__all__ = ["CHUNK", "OVERLAP", "YaraHit", "compile_rules", "load_yara", "scan_dump", "scan_space", "scan_stream"]
