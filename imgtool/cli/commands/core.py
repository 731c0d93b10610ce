"""``imgtool core DIR [--pid PID] -o OUT``: ELF core files of the dump's processes, for gdb.

Exit status: 0 written, 2 bad input (nothing is left behind: each core is written to a temporary file and
renamed when complete).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgtool.cli.app import EXIT_OK
from imgtool.cli.commands.inspect import add_dump_option, open_checkpoint
from imgtool.errors import UsageError
from imgtool.model.dump import Task

BAR_FROM = 64 << 20     # tasks with at least this many dumped bytes get a progress bar (on a terminal)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("core", help="write ELF core files (for gdb) of the dump's processes")
    p.add_argument("dir", help="image directory or checkpoint archive")
    p.add_argument("--pid", type=int, help="only this process: OUT is its core file")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the core file (with --pid), else a directory that gets core.PID per process")
    p.add_argument("--files-from", metavar="ROOT", type=Path,
                   help="fill file-backed pages that were not dumped from the files under ROOT")
    add_dump_option(p)
    p.set_defaults(func=cmd_core)


def _export(task: Task, path: Path, files_from: Path | None) -> None:
    from imgtool.analysis.core.export import dumped_size, export_task  # on first use: parser start-up
    from imgtool.render.console import progress

    total = dumped_size(task) if sys.stderr.isatty() else 0
    bar, bar_task = progress(total, f"core.{task.pid}", enabled=total >= BAR_FROM)
    with bar:
        export_task(task, path, files_from, lambda n: bar.advance(bar_task, n))


def cmd_core(args: argparse.Namespace) -> int:
    if args.files_from is not None and not args.files_from.is_dir():
        raise UsageError(f"--files-from {args.files_from}: not a directory")
    out = Path(args.output)
    with open_checkpoint(args) as dump:
        if args.pid is not None:
            _export(dump.task(args.pid), out, args.files_from)
            return EXIT_OK
        out.mkdir(parents=True, exist_ok=True)
        for task in dump.tasks:
            if not task.dead:
                _export(task, out / f"core.{task.pid}", args.files_from)
    return EXIT_OK
