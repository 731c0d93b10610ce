"""``imgtool check`` (will criu restore succeed here?) and ``imgtool restore`` (check, then restore)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from imgtool.cli.commands.inspect import add_dump_option, open_named
from imgtool.errors import ImgtoolError

if TYPE_CHECKING:
    from imgtool.analysis.checks import Context, Finding

# Severities as imgtool.analysis.checks spells them: importing the checks (and the model) waits for a check command
# to run, so that building the parser of every other command stays cheap.
ERROR, WARNING, INFO = "error", "warning", "info"

STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "dim"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="predict whether criu restore of a dump will succeed on this host")
    _common(p)
    p.add_argument("--offline", action="store_true", help="image checks only, nothing about this host")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--for-container", metavar="CONTAINER_DIR", help="check a restore through Docker into this "
                   "container (its dir <data-root>/containers/<id>, or its config.v2.json)")
    p.set_defaults(func=cmd_check)
    _criu_usage(p)
    p = sub.add_parser("restore", help="check a dump, then run the real criu restore")
    _common(p)
    p.add_argument("--force", action="store_true", help="restore even when checks predict failure")
    p.add_argument("--auto-options", action="store_true", help="add the criu options the dump needs")
    p.set_defaults(func=cmd_restore)
    _criu_usage(p)


def _criu_usage(p: argparse.ArgumentParser) -> None:
    """The usage line ends with ``[-- CRIU-OPTIONS ...]``: what follows "--" goes to criu restore."""
    usage = p.format_usage().removeprefix("usage: ").rstrip()
    p.usage = usage.replace("%", "%%") + " [-- CRIU-OPTIONS ...]"
    p.epilog = ((p.epilog + "\n\n") if p.epilog else "") + \
        "CRIU-OPTIONS: criu restore options, after '--' (e.g. -- --tcp-established --shell-job)."


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="image directory or checkpoint archive")
    add_dump_option(p)
    p.add_argument("--root", help="where the dump's files are expected (default /, or criu's --root)")
    p.add_argument("--criu", help="criu binary (default: $IMGTOOL_CRIU, scripts/get-criu.sh's build, PATH)")


def _context(args: argparse.Namespace, dump) -> Context:
    from imgtool.analysis.checks import Context
    from imgtool.analysis.checks.host import find_criu

    options = list(args.extra)  # what follows "--" on the command line
    ctx = Context(dump, criu_options=options, criu=find_criu(args.criu), offline=getattr(args, "offline", False))
    if getattr(args, "for_container", None):
        from imgtool.model.docker import read_container  # only --for-container needs it

        ctx.container = read_container(args.for_container)
    root = args.root or ctx.option_value("--root")
    if root:
        ctx.root = Path(root)
    return ctx


def show(findings: list[Finding], ctx: Context) -> None:
    from rich.markup import escape

    from imgtool.render.console import console

    out = console()
    for f in findings:   # messages quote names from the dump: escaped, "[" in them is text
        where = f" [dim]({escape(f.image)}{'' if f.entry is None else f' entry {f.entry}'})[/]" if f.image else ""
        out.print(f"[{STYLE[f.severity]}]{f.severity:7}[/] [bold]{f.code}[/]: {escape(f.message)}{where}",
                  highlight=False)
        if f.hint:
            out.print(f"         [cyan]→ {escape(f.hint)}[/]", highlight=False)
    errors = sum(f.severity == ERROR for f in findings)
    warnings = sum(f.severity == WARNING for f in findings)
    what = f"criu restore with criu options {ctx.describe_options()}"
    if ctx.container is not None:   # --for-container: Docker restores, runc picks the options
        what = f"docker start --checkpoint into {ctx.container.name}"
    what = escape(what)
    if errors:
        out.print(f"[bold red]{what} will fail[/]: {errors} error(s), {warnings} warning(s).")
    else:
        out.print(f"[bold green]No errors[/]: {what} should succeed ({warnings} warning(s)).")


def cmd_check(args: argparse.Namespace) -> int:
    from imgtool.analysis.checks import run_checks
    from imgtool.render.console import emit_json

    with open_named(args.dir, args.dump) as dump:
        ctx = _context(args, dump)
        findings = run_checks(ctx)
        if args.json:
            emit_json({"dump": dump.location, "criu_options": ctx.criu_options,
                       "errors": sum(f.severity == ERROR for f in findings),
                       "findings": [f.to_json() for f in findings]})
        else:
            show(findings, ctx)
    return 1 if any(f.severity == ERROR for f in findings) else 0


def cmd_restore(args: argparse.Namespace) -> int:
    from imgtool.analysis.checks import run_checks
    from imgtool.render.console import console

    with open_named(args.dir, args.dump) as dump:
        ctx = _context(args, dump)
        findings = run_checks(ctx)
        if args.auto_options:
            added = sorted({f.option for f in findings if f.option and not ctx.has_option(f.option)})
            if added:
                console(stderr=True).print(f"adding criu options: {' '.join(added)}")
                ctx.criu_options += added
                findings = run_checks(ctx)
        errors = [f for f in findings if f.severity == ERROR]
        if errors:
            show(findings, ctx)
            if not args.force:
                console(stderr=True).print("refusing to restore (use --force to try anyway)")
                return 1
        if ctx.criu is None:
            raise ImgtoolError("no criu binary: install CRIU >= 4.1 or pass --criu PATH")
        with dump.on_disk() as images:   # an archive is unpacked whole: criu reads every pages file
            return run_criu_restore(ctx.criu, images, ctx.criu_options)


def run_criu_restore(criu: Path, images: Path, options: list[str]) -> int:
    """Run criu restore, its output passed through; logs go to a work dir outside the dump."""
    cmd = [str(criu), "restore", "-D", str(images), *options]
    if not any(o in ("-W", "--work-dir") or o.startswith("--work-dir=") for o in options):
        work = tempfile.mkdtemp(prefix="imgtool-restore-")
        cmd += ["--work-dir", work]
        print(f"imgtool: criu work dir (logs, stats): {work}", file=sys.stderr)
    print("imgtool: running " + " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=False).returncode
