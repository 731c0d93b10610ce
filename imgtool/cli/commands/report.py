"""``imgtool report DIR [--against OLD] -o FILE.html``: one self-contained HTML page about a checkpoint."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack

from imgtool.cli.commands.inspect import open_named


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="an HTML page about a checkpoint (and what changed since another)",
                       description="Write one self-contained HTML page (works offline, from file://) about a "
                                   "checkpoint: findings, process tree, files, sockets, memory maps; with "
                                   "--against, what changed since an older checkpoint.")
    p.add_argument("dir", help="image directory or checkpoint archive")
    p.add_argument("--against", metavar="OLD", help="an older checkpoint to compare with (dir or archive)")
    p.add_argument("--dump", metavar="NAME", help="which dump of a directory holding several (its folder name)")
    p.add_argument("--against-dump", metavar="NAME", help="which dump of OLD when it holds several")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html", help="where to write the page (- for stdout)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from imgtool.cli.app import _replacing
    from imgtool.render.report import report_html

    with ExitStack() as stack:
        dump = stack.enter_context(open_named(args.dir, args.dump))
        dump.require_pstree()
        old = stack.enter_context(open_named(args.against, args.against_dump, "--against-dump")) \
            if args.against else None
        html = report_html(dump, against=old)
    if args.output == "-":
        sys.stdout.buffer.write(html.encode())
        return 0
    with _replacing(args.output, "wb") as out:
        out.write(html.encode())
    return 0
