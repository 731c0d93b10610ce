"""``imgtool ls CONTAINER_DIR``: the checkpoints of a Docker container (what ``docker checkpoint ls`` names), with
their sizes and processes, and the container they belong to."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from imgtool import open as open_dump
from imgtool.errors import ImgtoolError, UsageError
from imgtool.model import docker


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="the checkpoints of a Docker container dir",
                       description="List the checkpoints of a Docker container: CONTAINER_DIR is "
                                   "<data-root>/containers/<id> (or its config.v2.json, its checkpoints dir, or one "
                                   "checkpoint in it). Each checkpoint: name, size, time, processes.")
    p.add_argument("container", metavar="CONTAINER_DIR", help="Docker container dir (<data-root>/containers/<id>)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ls)


def container_dir(path: str) -> Path:
    """The container dir for what the user named: the dir, its config.v2.json, checkpoints/, or a checkpoint."""
    given = Path(path)
    if not given.exists():
        raise UsageError(f"{given}: no such file or directory")
    for candidate in (given, given.parent, given.parent.parent):
        if (candidate / docker.CONFIG).is_file():
            return candidate
    found = docker.container_dir_of(given)
    if found is None:
        raise UsageError(f"{given}: not a Docker container dir (no {docker.CONFIG}; Docker keeps them in "
                         "<data-root>/containers/<id>, e.g. /var/lib/docker/containers/<id>)")
    return found


def _processes(path: Path) -> tuple[int | None, str | None]:
    """(number of processes, root command) of a checkpoint, or (None, why not)."""
    try:
        with open_dump(path) as dump:
            dump.require_pstree()
            root = dump.root_task
            return len(dump.tasks), (root.comm if root is not None else None)
    except ImgtoolError as exc:
        return None, str(exc)


def listing(folder: Path) -> dict[str, Any]:
    container = docker.read_container(folder)
    rows = []
    for ck in container.checkpoints():
        count, what = _processes(ck.path) if ck.images else (None, "no CRIU images (inventory.img)")
        rows.append({**ck.to_json(), "processes": count,
                     ("root_comm" if count is not None else "problem"): what})
    return {"container": {**container.to_json(), "checkpoints": [r["name"] for r in rows]}, "checkpoints": rows}


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from imgtool.render.console import console, emit_json, human_bytes, table

    data = listing(container_dir(args.container))
    if args.json:
        emit_json(data)
        return 0
    c = data["container"]
    out = console()
    out.print(f"[bold]Container[/] {escape(c['name'])} [dim]{escape(c['id'][:12])}[/]  image {escape(c['image'])}"
              f"  runtime {escape(c['runtime'] or '?')}  tty {'yes' if c['tty'] else 'no'}"
              f"  network {escape(c['network_mode'] or '?')}")
    out.print(f"  [dim]{escape(c['container_dir'])}[/]")
    rows = [(escape(r["name"]), human_bytes(r["size"]), escape(r["created"]),
             "" if r["processes"] is None else r["processes"],
             escape(r.get("root_comm") or r.get("problem") or ""), escape(r["parent"] or ""))
            for r in data["checkpoints"]]
    if not rows:
        out.print("  no checkpoints (docker checkpoint create CONTAINER NAME makes one)")
        return 0
    out.print(table("Checkpoints", ["name", "size", "created", "processes", "root", "parent"], rows,
                    right=["size", "processes"]))
    return 0
