"""``imgtool diff A B``: what changed between two checkpoints (exit 0 equal, 1 different, 2 error)."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from imgtool import open as open_dump
from imgtool.analysis.diff import DEFAULT_FACETS, DEFAULT_IGNORE, FACETS, DumpDiff, compare


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="what changed between two checkpoints (exit 0 same, 1 different)")
    p.add_argument("a", help="first checkpoint (dir or archive)")
    p.add_argument("b", help="second checkpoint (dir or archive)")
    p.add_argument("--only", help=f"comma-separated facets: {','.join(FACETS)} (default: all but registers)")
    p.add_argument("--pid", type=int, action="append", help="only this task (repeatable)")
    p.add_argument("--ignore", action="append", default=[],
                   help="ignore changes whose path matches (a segment like 'pos', or a/b/c glob); repeatable")
    p.add_argument("--no-default-ignore", action="store_true",
                   help=f"also report {', '.join(DEFAULT_IGNORE)}")
    p.add_argument("--page-ranges", action="store_true", help="show changed byte ranges inside changed pages")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--stat", action="store_true", help="counts per facet only")
    p.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    from imgtool.render.console import emit_json

    facets = [f.strip() for f in args.only.split(",")] if args.only else list(DEFAULT_FACETS)
    ignore = list(args.ignore) + ([] if args.no_default_ignore else list(DEFAULT_IGNORE))
    with ExitStack() as stack:
        a = stack.enter_context(open_dump(args.a))
        b = stack.enter_context(open_dump(args.b))
        memory = None
        if "memory" in facets:
            from imgtool.analysis.memdiff import MemoryComparer

            memory = MemoryComparer(page_ranges=args.page_ranges, progress=not args.json)
        result = compare(a, b, only=facets, pids=args.pid, ignore=ignore, memory=memory)
    if args.json:
        emit_json(result.to_json())
    elif args.stat:
        print_stat(result)
    else:
        print_tree(result)
    return 0 if result.equal else 1


def print_stat(result: DumpDiff) -> None:
    from imgtool.render.console import console, table

    rows = [(facet, c["added"], c["removed"], c["changed"]) for facet, c in result.stat().items()]
    total = [sum(r[i] for r in rows) for i in (1, 2, 3)]
    out = console()
    out.print(table(None, ["facet", "added", "removed", "changed"], [*rows, ("total", *total)],
                    right=["added", "removed", "changed"]))


def print_tree(result: DumpDiff) -> None:
    from rich.tree import Tree

    from imgtool.render.console import console

    out = console()
    if result.equal:
        out.print(f"No differences between {result.a} and {result.b}.")
        return
    root = Tree(f"[bold]{result.a}[/] → [bold]{result.b}[/]")
    pairs = [m for m in result.matches if m.a is not None and m.b is not None]
    if any(m.how == "key" for m in pairs):
        root.add("tasks matched by comm + cmdline + tree position: "
                 + ", ".join(f"{m.a}→{m.b}" for m in pairs if m.how == "key"))
    nodes: dict[tuple[str, ...], Tree] = {}
    colour = {"added": "green", "removed": "red", "changed": "yellow"}
    for change in result.changes:
        parent = root
        for depth in range(1, len(change.path)):
            key = change.path[:depth]
            if key not in nodes:
                nodes[key] = parent.add(key[-1])
            parent = nodes[key]
        text = str(change).split(" › ")[-1]
        parent.add(f"[{colour[change.kind]}]{text}[/]")
    out.print(root)
