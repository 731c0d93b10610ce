"""``imgtool diff A B``: what changed between two checkpoints (exit 0 equal, 1 different, 2 error)."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from imgtool.analysis.diff import DEFAULT_IGNORE, DumpDiff, compare, registered
from imgtool.cli.commands.inspect import open_named

PROGRESS_FROM = 256 << 20   # a progress bar when the memory compared is larger than this
PAGES_SHOWN = 8             # --page-ranges: byte ranges of at most this many pages per range of changed pages


def add_parsers(sub: argparse._SubParsersAction) -> None:
    facets = registered()
    listing = "\n".join(f"  {f.name:<11} {f.help}{'' if f.default else ' [not by default]'}" for f in facets)
    p = sub.add_parser("diff", help="what changed between two checkpoints (exit 0 same, 1 different)",
                       description="What changed between two checkpoints. Exit 0: equal, 1: different, 2: error.",
                       epilog=f"facets:\n{listing}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="first (older) checkpoint (dir or archive)")
    p.add_argument("b", help="second (newer) checkpoint (dir or archive)")
    p.add_argument("--dump-a", metavar="NAME", help="which dump of A when it holds several (its folder name)")
    p.add_argument("--dump-b", metavar="NAME", help="which dump of B when it holds several (its folder name)")
    p.add_argument("--only", help="comma-separated facets: " + ",".join(f.name for f in facets)
                   + " (default: all but " + ",".join(f.name for f in facets if not f.default) + ")")
    p.add_argument("--pid", type=int, action="append", help="only this task (repeatable)")
    p.add_argument("--ignore", action="append", default=[],
                   help="ignore changes whose path matches (a segment like 'pos', or a/b/c glob); repeatable")
    p.add_argument("--no-default-ignore", action="store_true",
                   help=f"also report {', '.join(DEFAULT_IGNORE)}")
    p.add_argument("--page-ranges", action="store_true",
                   help="list the changed page ranges of each mapping, and the changed byte ranges in each page")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--stat", action="store_true", help="counts per facet only")
    p.set_defaults(func=cmd_diff)


def _progress_bar(total: int):
    """The memory comparer's progress: a bar on stderr for comparisons big enough to wait for."""
    if total <= PROGRESS_FROM:
        return None
    from imgtool.render.console import progress

    bar, task = progress(total, "comparing memory")
    bar.start()

    class Sink:
        def advance(self, n: int) -> None:
            bar.advance(task, n)

        def close(self) -> None:
            bar.stop()
    return Sink()


def cmd_diff(args: argparse.Namespace) -> int:
    from imgtool.analysis.memdiff import MemoryComparer
    from imgtool.render.console import emit_json

    facets = [f.strip() for f in args.only.split(",")] if args.only else None
    ignore = list(args.ignore) + ([] if args.no_default_ignore else list(DEFAULT_IGNORE))
    memory = MemoryComparer(page_ranges=args.page_ranges, progress=None if args.json else _progress_bar)
    with ExitStack() as stack:
        a = stack.enter_context(open_named(args.a, args.dump_a, "--dump-a"))
        b = stack.enter_context(open_named(args.b, args.dump_b, "--dump-b"))
        result = compare(a, b, only=facets, pids=args.pid, ignore=ignore, memory=memory)
    result.a, result.b = args.a, args.b   # as given: an archive's unpacked directory is gone by now
    if args.json:
        emit_json(result.to_json())
    elif args.stat:
        print_stat(result)
    else:
        print_tree(result, page_ranges=args.page_ranges)
    return 0 if result.equal else 1


def print_stat(result: DumpDiff) -> None:
    from imgtool.render.console import console, table

    kinds = ["added", "removed", "changed"] + (["resized"] if any(c["resized"] for c in result.stat().values())
                                               else [])
    rows = [(facet, *(c[k] for k in kinds)) for facet, c in result.stat().items()]
    total = [sum(r[i] for r in rows) for i in range(1, len(kinds) + 1)]
    out = console()
    out.print(table(None, ["facet", *kinds], [*rows, ("total", *total)], right=kinds))


def print_tree(result: DumpDiff, page_ranges: bool = False) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    from imgtool.render.console import console

    out = console()
    if result.equal:
        out.print(f"No differences between {escape(result.a)} and {escape(result.b)}.")
        return
    root = Tree(f"[bold]{escape(result.a)}[/] → [bold]{escape(result.b)}[/]")
    pairs = [m for m in result.matches if m.a is not None and m.b is not None]
    if any(m.how == "key" for m in pairs):
        root.add("tasks matched by comm + cmdline + tree position: "
                 + ", ".join(f"{m.a}→{m.b}" for m in pairs if m.how == "key"))
    nodes: dict[tuple[str, ...], Tree] = {}
    colour = {"added": "green", "removed": "red", "changed": "yellow", "resized": "cyan"}
    for change in result.changes:
        parent = root
        for depth in range(1, len(change.path)):
            key = change.path[:depth]
            if key not in nodes:
                nodes[key] = parent.add(escape(key[-1]))
            parent = nodes[key]
        text = str(change).split(" › ")[-1]
        leaf = parent.add(f"[{colour.get(change.kind, 'yellow')}]{escape(text)}[/]")
        if page_ranges and change.facet == "memory" and isinstance(change.new, dict):
            _add_ranges(leaf, change.new)
    out.print(root)


def _add_ranges(leaf, detail: dict) -> None:
    """The changed pages of a mapping, as ranges, each with (if measured) the changed byte ranges of its first
    pages (--page-ranges)."""
    from rich.markup import escape

    from imgtool.render.console import human_bytes

    pages = sorted((int(addr, 16), ranges) for addr, ranges in (detail.get("byte_ranges") or {}).items())
    i = 0
    for start, end in detail.get("changed_ranges") or ():
        node = leaf.add(f"{start:#x}-{end:#x} ({human_bytes(end - start)})")
        while i < len(pages) and pages[i][0] < start:
            i += 1
        shown = 0
        while i < len(pages) and pages[i][0] < end:
            addr, ranges = pages[i]
            if shown < PAGES_SHOWN:
                node.add(escape(f"{addr:#x}: bytes " + ", ".join(f"{lo}-{hi - 1}" if hi - lo > 1 else f"{lo}"
                                                                 for lo, hi in ranges)))
            elif shown == PAGES_SHOWN:
                node.add("…")
            shown += 1
            i += 1
