"""``imgtool extract``, ``imgtool mem yara`` and ``imgtool scan``: hidden content, YARA, many checkpoints.

The work is in ``imgtool.analysis.forensics``; these are thin.  ``mem yara`` joins the ``mem`` verbs that
``mem.py`` defines (this module comes after it in ``COMMAND_MODULES``).

Exit status: extract 0 written; mem yara and scan 0 something found, 1 nothing found, 2 bad input (scan:
every checkpoint failed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from imgtool.cli.app import EXIT_DIFFERENT, EXIT_ERROR, EXIT_OK
from imgtool.cli.commands.inspect import add_dump_option, open_checkpoint
from imgtool.errors import UsageError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="write the content hidden in a checkpoint (deleted files, memfds, shm, "
                                       "queues...) under a directory, with manifest.json")
    p.add_argument("dir", help="image directory or checkpoint archive")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="directory to write into (made if absent)")
    p.add_argument("--force", action="store_true", help="write into OUT even if it is not empty")
    p.add_argument("--json", action="store_true", help="print the manifest's items as JSON")
    add_dump_option(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("scan", help="search the memory of many checkpoints (JSON Lines; exit 1: no match, "
                                    "2: every checkpoint failed)")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="image directories or archives (globs)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--string", metavar="S", help="UTF-8 text")
    what.add_argument("--hex", metavar="H", help="bytes as hex digits (spaces allowed)")
    what.add_argument("--regex", metavar="R", help="Python bytes regex (DOTALL)")
    what.add_argument("--yara", metavar="RULES", help="a YARA rules file (needs imgtool[yara])")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--jobs", "-j", type=int, metavar="N", help="local worker processes (default: one per CPU)")
    where.add_argument("--dask", metavar="ADDRESS", help="an existing Dask scheduler, tcp://HOST:8786 (needs "
                                                         "imgtool[dask]; workers read checkpoints by path)")
    p.add_argument("--regex-window", type=int, default=4096, metavar="N", help="longest regex match (default 4096)")
    p.add_argument("--pid", type=int, help="only this process")
    p.add_argument("--context", type=int, default=16, metavar="N", help="bytes shown before and after (default 16)")
    p.add_argument("-m", "--max-count", type=int, metavar="N", help="stop after N matches per checkpoint")
    p.add_argument("--json", action="store_true", help="JSON Lines: one object per hit or failed checkpoint")
    p.set_defaults(func=cmd_scan)

    verbs = _mem_verbs(sub)
    p = verbs.add_parser("yara", help="YARA rules over process memory (needs imgtool[yara]; exit 1: no match)")
    p.add_argument("dir", help="image directory or checkpoint archive")
    p.add_argument("rules", metavar="RULES", help="a YARA rules file")
    p.add_argument("--pid", type=int, help="only this process")
    p.add_argument("--extracted", action="store_true", help="also the content `imgtool extract` finds")
    p.add_argument("--context", type=int, default=16, metavar="N", help="bytes shown before and after (default 16)")
    p.add_argument("--overlap", type=int, default=4096, metavar="N",
                   help="longest string found across a chunk boundary (default 4096)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_dump_option(p)
    p.set_defaults(func=cmd_mem_yara)


def _mem_verbs(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The subcommands of ``mem`` (mem.py's parser, built before this module's)."""
    mem = sub.choices.get("mem")
    for action in mem._actions if mem is not None else ():
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("imgtool.cli.commands.forensics must come after mem in COMMAND_MODULES")


# -- extract ---------------------------------------------------------------------------------------------------


def cmd_extract(args: argparse.Namespace) -> int:
    from imgtool.analysis.forensics.extract import write_contents
    from imgtool.render.console import console, emit_json, human_bytes, table

    with open_checkpoint(args, tasks=False) as dump:
        written = write_contents(dump, args.output, force=args.force)
    if args.json:
        emit_json([w.to_json() for w in written])
        return EXIT_OK
    rows = [(w.item.kind, _opt(w.item.pid), _opt(w.item.fd), human_bytes(w.size), w.sha256[:12], _shown(w.file),
             _shown(w.item.name)) for w in written]
    console().print(table(f"{len(written)} items written to {_shown(args.output)} (manifest.json)",
                          ["kind", "pid", "fd", "size", "sha256", "file", "name"], rows,
                          right=("pid", "fd", "size")))
    return EXIT_OK


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _shown(text: str) -> str:
    """Text from a dump, safe for a terminal and for rich markup."""
    from rich.markup import escape

    return escape("".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text))


# -- mem yara --------------------------------------------------------------------------------------------------


def cmd_mem_yara(args: argparse.Namespace) -> int:
    from imgtool.analysis.forensics.yara import compile_rules, scan_dump, scan_stream

    if args.context < 0 or args.overlap < 0:
        raise UsageError("--context and --overlap must be >= 0")
    rules = compile_rules(args.rules)
    hits = []
    with open_checkpoint(args) as dump:
        hits += scan_dump(dump, rules, pids=[args.pid] if args.pid is not None else None, overlap=args.overlap,
                          context=args.context)
        if args.extracted:
            from imgtool.analysis.forensics.extract import contents

            for item, stream in contents(dump):
                hits += scan_stream(item.file, stream, rules, overlap=args.overlap, context=args.context)
    if args.json:
        from imgtool.render.console import emit_json

        emit_json([h.to_json() for h in hits])
    else:
        _print_yara(hits)
    return EXIT_OK if hits else EXIT_DIFFERENT


def _snippet(before: bytes, match: bytes, after: bytes) -> str:
    """The context of a match for people: printable ASCII, others as dots, the match in bold."""
    def printable(data: bytes) -> str:
        return _shown("".join(chr(b) if 32 <= b < 127 else "." for b in data))

    return f"{printable(before)}[bold red]{printable(match)}[/]{printable(after)}"


def _print_yara(hits: list[Any]) -> None:
    from imgtool.render.console import console, table

    out = console()
    if not hits:
        out.print("no match", style="dim")
        return
    rows = [(_shown(h.rule), _shown(h.string), h.pid if h.pid is not None else _shown(h.item or ""),
             f"{h.vaddr:#x}" if h.vaddr is not None else f"+{h.offset:#x}", _snippet(h.before, h.match, h.after))
            for h in hits]
    out.print(table(f"{len(hits)} YARA match{'es' if len(hits) != 1 else ''}",
                    ["rule", "string", "pid/item", "address", "context"], rows, right=("address",)))


# -- scan ------------------------------------------------------------------------------------------------------


def _query(args: argparse.Namespace) -> Any:
    from imgtool.analysis.forensics.scan import Query

    if args.context < 0 or (args.max_count is not None and args.max_count < 1):
        raise UsageError("--context must be >= 0 and --max-count >= 1")
    options = {"regex_window": args.regex_window, "context": args.context, "max_count": args.max_count,
               "pids": (args.pid,) if args.pid is not None else None}
    for kind in ("string", "hex", "regex", "yara"):
        text = getattr(args, kind)
        if text is not None:
            return Query.make(kind, text, **options)
    raise UsageError("give --string, --hex, --regex or --yara")


def cmd_scan(args: argparse.Namespace) -> int:
    from imgtool.analysis.forensics.scan import exit_status, expand, scan
    from imgtool.render.console import console, progress, table

    query = _query(args)
    paths = expand(args.checkpoints)
    results = []
    show = not args.json and sys.stderr.isatty()
    bar, task = progress(len(paths), "checkpoints", enabled=show)
    with bar:
        for result in scan(paths, query, jobs=args.jobs, dask=args.dask):
            results.append(result)
            bar.advance(task, 1)
            if args.json:
                _lines(result)
            elif result.error is not None:
                named = result.path in result.error or os.path.abspath(result.path) in result.error
                console(stderr=True).print(f"imgtool: {'' if named else result.path + ': '}{result.error}",
                                           markup=False)
    if not args.json:
        _print_scan(results, table, console)
    status = exit_status(results)
    return EXIT_ERROR if status == 2 else EXIT_DIFFERENT if status == 1 else EXIT_OK


def _lines(result: Any) -> None:
    """JSON Lines: a hit per line; a checkpoint that could not be read is a line of its own."""
    if result.error is not None:
        lines = [json.dumps({"checkpoint": result.path, "error": result.error}, sort_keys=True)]
    else:
        lines = [json.dumps(hit, sort_keys=True) for hit in result.hits]
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def _print_scan(results: list[Any], table: Any, console: Any) -> None:
    rows = []
    for result in results:
        for hit in result.hits:
            where = f"{hit['vaddr']:#x}" if hit.get("vaddr") is not None else ""
            label = hit.get("rule", "") + (f" {hit['string']}" if "string" in hit else "")
            context = _snippet(*(bytes.fromhex(hit[k]) for k in ("before", "match", "after")))
            rows.append((_shown(result.path), hit.get("pid", ""), where, _shown(label), context))
    failed = sum(r.error is not None for r in results)
    title = f"{len(rows)} matches in {len(results)} checkpoints" + (f" ({failed} could not be read)" if failed else "")
    if not rows:
        console().print(f"no match: {title}", style="dim")
        return
    console().print(table(title, ["checkpoint", "pid", "address", "rule", "context"], rows, right=("pid",)))
