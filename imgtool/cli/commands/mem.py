"""``imgtool mem read|search|dump``: process memory as the process saw it.

Exit status: 0 ok (search: something found), 1 search found nothing (like
grep), 2 bad input or an address that cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from typing import IO, TYPE_CHECKING

from imgtool.cli.app import EXIT_DIFFERENT, EXIT_OK
from imgtool.cli.commands.inspect import add_dump_option, open_checkpoint
from imgtool.errors import UsageError
from imgtool.memory.extract import extract
from imgtool.memory.search import CHUNK, REGEX_WINDOW, Hit, Literal, Pattern, Regex, search_space, spaces
from imgtool.memory.space import AddressSpace, address_space

if TYPE_CHECKING:
    from imgtool.model.dump import Dump

HEXDUMP_CHUNK = 1 << 16


def add_parsers(sub: argparse._SubParsersAction) -> None:
    mem = sub.add_parser("mem", help="read, search and extract process memory")
    verbs = mem.add_subparsers(dest="mem_command", required=True, metavar="VERB")

    p = verbs.add_parser("read", help="bytes at an address (hexdump on a terminal, raw otherwise)")
    _dir_pid(p)
    p.add_argument("addr", metavar="ADDR", help="start address (0x... or decimal)")
    p.add_argument("len", metavar="LEN", help="number of bytes (0x... or decimal)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the raw bytes to FILE")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--hexdump", "-C", action="store_true",
                     help="hexdump even when stdout is not a terminal (repeated lines as '*', like hexdump -C)")
    how.add_argument("--raw", action="store_true", help="raw bytes on stdout (refused on a terminal)")
    p.add_argument("-v", "--no-squeeze", dest="squeeze", action="store_false",
                   help="hexdump: show every line, repeated ones too (like hexdump -v)")
    p.add_argument("--zero-fill", action="store_true", help="read pages that are not in the dump as zeros")
    p.set_defaults(func=cmd_read)

    p = verbs.add_parser("search", help="find a string, bytes or a regex in dumped memory (exit 1: no match)")
    p.add_argument("dir", help="image directory or checkpoint archive")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--string", metavar="S", help="UTF-8 text")
    what.add_argument("--hex", metavar="H", help="bytes as hex digits (spaces allowed)")
    what.add_argument("--regex", metavar="R", help="Python bytes regex (DOTALL)")
    p.add_argument("--regex-window", type=int, default=REGEX_WINDOW, metavar="N",
                   help=f"longest regex match in bytes (default {REGEX_WINDOW})")
    p.add_argument("--pid", type=int, help="only this process")
    p.add_argument("--context", type=int, default=16, metavar="N", help="bytes shown before and after (default 16)")
    p.add_argument("-m", "--max-count", type=int, metavar="N", help="stop after N matches")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_dump_option(p)
    p.set_defaults(func=cmd_search)

    p = verbs.add_parser("dump", help="a whole mapping as the process saw it (missing pages as zeros)")
    _dir_pid(p)
    p.add_argument("--vma", required=True, metavar="ADDR", help="any address inside the mapping")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write it")
    p.set_defaults(func=cmd_dump)


def _dir_pid(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="image directory or checkpoint archive")
    p.add_argument("pid", type=int, help="process id")
    add_dump_option(p)


def parse_number(text: str, what: str) -> int:
    """An address or length: 0x-prefixed hex or decimal, not negative."""
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a number (use 0x... for hex)") from None
    if value < 0:
        raise UsageError(f"{what} must not be negative")
    return value


# -- read ---------------------------------------------------------------------------


def cmd_read(args: argparse.Namespace) -> int:
    addr, size = parse_number(args.addr, "ADDR"), parse_number(args.len, "LEN")
    with open_checkpoint(args) as dump:
        space = address_space(dump.task(args.pid))
        space.check(addr, size, args.zero_fill)
        if args.output and args.output != "-" and not args.hexdump:
            with open(args.output, "wb") as out:
                extract(space, addr, addr + size, out, args.zero_fill)
        elif args.hexdump or (sys.stdout.isatty() and not args.raw and args.output != "-"):
            if args.output and args.output != "-":
                with open(args.output, "w") as text:
                    _print_hexdump(space, addr, size, args.zero_fill, args.squeeze, text)
            else:
                _print_hexdump(space, addr, size, args.zero_fill, args.squeeze)
        elif sys.stdout.isatty():
            raise UsageError("refusing to write raw memory to a terminal: use a pipe, -o FILE or --hexdump")
        else:
            extract(space, addr, addr + size, sys.stdout.buffer, args.zero_fill)
            sys.stdout.flush()
    return EXIT_OK


def _print_hexdump(space: AddressSpace, addr: int, size: int, zero_fill: bool, squeeze: bool = True,
                   out: IO[str] | None = None) -> None:
    from imgtool.render.console import hexdump_chunks

    out = out or sys.stdout
    chunks = ((pos, space.read(pos, min(HEXDUMP_CHUNK, addr + size - pos), zero_fill))
              for pos in range(addr, addr + size, HEXDUMP_CHUNK))
    lines = hexdump_chunks(chunks, squeeze=squeeze)
    while batch := list(islice(lines, 4096)):
        out.write("".join(line + "\n" for line in batch))


# -- search -------------------------------------------------------------------------


def _pattern(args: argparse.Namespace) -> Pattern:
    if args.string is not None:
        return Literal(args.string.encode("utf-8", "surrogateescape"))
    if args.hex is not None:
        try:
            return Literal(bytes.fromhex(args.hex))
        except ValueError:
            raise UsageError(f"--hex {args.hex!r} is not an even number of hex digits") from None
    return Regex(args.regex, window=args.regex_window)


def cmd_search(args: argparse.Namespace) -> int:
    from imgtool.render.console import emit_json

    pattern = _pattern(args)
    if args.context < 0 or (args.max_count is not None and args.max_count < 1):
        raise UsageError("--context must be >= 0 and --max-count >= 1")
    with open_checkpoint(args) as dump:
        hits = _collect(dump, [args.pid] if args.pid is not None else None, pattern, args)
    if args.json:
        emit_json([hit.to_json() for hit in hits])
    else:
        _print_hits(hits)
    return EXIT_OK if hits else EXIT_DIFFERENT


def _collect(dump: Dump, pids: list[int] | None, pattern: Pattern, args: argparse.Namespace) -> list[Hit]:
    from imgtool.render.console import progress

    hits: list[Hit] = []
    show = sys.stderr.isatty()   # the bar's total costs a first pass over the pagemaps: only for people
    bar, task = progress(sum(s.dumped_bytes() for s in spaces(dump, pids)) if show else None, "searching",
                         enabled=show)
    with bar:
        for space in spaces(dump, pids):
            found = search_space(space, pattern, context=args.context, chunk=CHUNK,
                                 progress=lambda n: bar.advance(task, n))
            for hit in found:
                hits.append(hit)
                if args.max_count is not None and len(hits) >= args.max_count:
                    found.close()
                    return hits
    return hits


def _printable(data: bytes) -> str:
    from rich.markup import escape

    return escape("".join(chr(b) if 32 <= b < 127 else "." for b in data))


def _print_hits(hits: list[Hit]) -> None:
    from imgtool.render.console import console, table

    out = console()
    if not hits:
        out.print("no match", style="dim")
        return
    from rich.markup import escape

    rows = [(hit.pid, f"{hit.vaddr:#x}", escape(str(hit.vma)) if hit.vma else "-",
             f"{_printable(hit.before)}[bold red]{_printable(hit.match)}[/]{_printable(hit.after)}")
            for hit in hits]
    out.print(table(f"{len(hits)} match{'es' if len(hits) != 1 else ''}", ["pid", "address", "vma", "context"],
                    rows, right=["pid", "address"]))


# -- dump ---------------------------------------------------------------------------


def cmd_dump(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from imgtool.render.console import console

    addr = parse_number(args.vma, "--vma")
    with open_checkpoint(args) as dump:
        space = address_space(dump.task(args.pid))
        vma = space.require_vma(addr)
        with _binary_output(args.output) as out:
            written = extract(space, vma.start, vma.end, out, zero_fill=True)
        dumped = space.dumped_bytes(vma.start, vma.end)
    console(stderr=True).print(f"{escape(args.output)}: VMA {escape(str(vma))}, {written} bytes "
                               f"({dumped} from the dump, {written - dumped} zero-filled)")
    return EXIT_OK


def _binary_output(path: str) -> IO[bytes]:
    if path == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write binary memory to a terminal: use -o FILE")
        return open(sys.stdout.fileno(), "wb", closefd=False)
    return open(path, "wb")
