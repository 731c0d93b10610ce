"""imgtool explain LOG: why a criu dump/restore failed and what to do about it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgtool.analysis.explain import Explanation

EXIT_OK, EXIT_FAILED = 0, 1  # an unreadable file gives 2 through cli.main's OSError handling

_VERDICT_STYLE = {"ok": "bold green", "failed": "bold red", "unknown": "bold yellow"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain a criu dump/restore/pre-dump/check log: cause and fix",
                       description="Find the first real error in a CRIU -v4 log, name its cause and say what to "
                                   "do. Exit status: 0 the log shows success, 1 it shows a failure or no result, "
                                   "2 the file cannot be read.")
    p.add_argument("log", help="CRIU log file (criu ... -v4 -o FILE), or the error text of docker, containerd, "
                               "podman or runc around a failed criu run (CRIU's log it names is explained too)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from imgtool.analysis.explain import explain_file
    from imgtool.render.console import emit_json

    explanation = explain_file(args.log)
    if args.json:
        emit_json({"log": args.log, **explanation.to_json()})
    else:
        print_explanation(args.log, explanation)
    return EXIT_OK if explanation.verdict == "ok" else EXIT_FAILED


def _detail_text(value: Any) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def print_explanation(log: str, explanation: Explanation) -> None:
    from rich.markup import escape

    from imgtool.render.console import console, table

    """The explanation for people: verdict headline, then one row per fact."""
    out = console()
    style = _VERDICT_STYLE[explanation.verdict]
    operation = f"criu {explanation.operation}" if explanation.operation else "CRIU run"
    out.print(f"[{style}]{explanation.verdict.upper()}[/]  {escape(operation)}  [dim]{escape(log)}[/]")
    rows: list[tuple[str, str]] = []
    if explanation.first_error is not None:
        rows.append(("first error", f"line {explanation.first_error_line}: {explanation.first_error}"))
    rows += [("cause", explanation.cause), ("what it means", explanation.summary),
             ("what to do", explanation.fix)]
    rows += [(key.replace("_", " "), _detail_text(value)) for key, value in explanation.details.items()]
    facts = table(None, ["fact", "text"], [(escape(k), escape(v)) for k, v in rows])
    facts.show_header = False
    out.print(facts)
