"""Looking at a whole checkpoint: x (crit's explorers), ps, files, maps, summary."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from itertools import compress, islice, repeat
from operator import and_, lt
from typing import Any

from imgtool import open as open_dump
from imgtool.crit.explore import BATCHED, EXPLORERS, pagemap_batches, pagemap_runs, prot_text, vma_backing
from imgtool.format.fields import enum_name
from imgtool.format.flags import PE_LAZY, PE_PARENT, PE_PRESENT
from imgtool.memory.space import cmdline_of
from imgtool.model.dump import Dump, Task


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("x", help="crit's explorers: ps, fds, mems, rss (crit's text), and sk")
    p.add_argument("dir", help="image directory or checkpoint archive")
    p.add_argument("what", choices=sorted(EXPLORERS))
    add_dump_option(p)
    p.set_defaults(func=cmd_x)
    for name, func, text in (("ps", cmd_ps, "process tree"), ("files", cmd_files, "open files of every process"),
                             ("maps", cmd_maps, "memory mappings and how much of each was dumped"),
                             ("summary", cmd_summary, "one screen about a checkpoint")):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir", help="image directory or checkpoint archive")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("ps", "files", "maps"):
            p.add_argument("--pid", type=int, help="only this process" + (" and its children" if name == "ps" else ""))
        add_dump_option(p)
        p.set_defaults(func=func)


def add_dump_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dump", metavar="NAME", help="which dump of a directory holding several (its folder name)")


def open_checkpoint(args: argparse.Namespace, *, tasks: bool = True) -> Dump:
    """The dump args.dir (and --dump) name; with ``tasks``, one with a process tree (a pre-dump is an error)."""
    dump = open_dump(args.dir, getattr(args, "dump", None))
    if tasks:
        try:
            dump.require_pstree()
        except BaseException:
            dump.close()
            raise
    return dump


def cmd_x(args: argparse.Namespace) -> int:
    with open_checkpoint(args) as dump:
        if args.what in BATCHED:
            batches = BATCHED[args.what](dump)
        else:
            lines = EXPLORERS[args.what](dump)
            batches = iter(lambda: list(islice(lines, 4096)), [])
        for batch in batches:   # what print() per line writes, in fewer calls
            if batch:
                sys.stdout.write("\n".join(batch) + "\n")
    return 0


def _tasks(dump: Dump, pid: int | None) -> list[Task]:
    return [dump.task(pid)] if pid is not None else dump.tasks


def task_title(task: Task) -> str:
    """``PID COMM`` as rich markup (the name escaped: ``[`` in it is text)."""
    from rich.markup import escape

    return escape(f"{task.pid} {task.comm}")


def task_json(task: Task) -> dict[str, Any]:
    return {"pid": task.pid, "ppid": task.ppid, "pgid": task.pgid, "sid": task.sid, "comm": task.comm,
            "state": task.state, "exit_code": task.exit_code, "threads": task.threads, "cmdline": cmdline_of(task)}


def cmd_ps(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.tree import Tree

    from imgtool.render.console import console, emit_json

    with open_checkpoint(args) as dump:
        if args.json:
            emit_json([task_json(t) for t in ([dump.task(args.pid)] if args.pid is not None else dump.tasks)])
            return 0
        tree = Tree(f"[bold]{escape(str(dump.source))}[/]")

        # Depth first, without recursion (a chain of thousands of processes); a damaged pstree can make a cycle
        # (duplicate pids): each entry is shown once.
        shown: set[int] = set()
        roots = [dump.task(args.pid)] if args.pid is not None else [t for t in dump.tasks if t.ppid == 0]
        stack: list[tuple[Tree, Task]] = [(tree, root) for root in reversed(roots)]
        while stack:
            node, task = stack.pop()
            if id(task) in shown:
                continue
            shown.add(id(task))
            threads = f", {len(task.threads)} threads" if len(task.threads) > 1 else ""
            argv = escape(" ".join(cmdline_of(task)))
            child = node.add(f"[bold]{task.pid} {escape(task.comm)}[/]  {argv}  [dim]pgid {task.pgid} "
                             f"sid {task.sid} {task.state}{threads}[/]")
            stack.extend((child, kid) for kid in reversed(task.children))
        console().print(tree)
    return 0


def cmd_files(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from imgtool.render.console import console, emit_json, table

    with open_checkpoint(args) as dump:
        tasks = _tasks(dump, args.pid)
        if args.json:
            emit_json([{"pid": t.pid, "state": t.state, "cwd": t.cwd, "root": t.root,
                        "fds": [fd.to_json() for fd in t.fds]} for t in tasks])
            return 0
        out = console()
        for task in tasks:
            if task.dead:   # a zombie: CRIU keeps only its core image
                out.print(f"[bold]{task_title(task)}[/]  [dim]zombie (exit code {task.exit_code}): no open files[/]")
                continue
            rows = [(fd.fd, escape(fd.file.kind), escape(fd.file.summary)) for fd in task.fds]
            rows += [("cwd", "", escape(task.cwd or "")), ("root", "", escape(task.root or ""))]
            out.print(table(task_title(task), ["fd", "kind", "what"], rows, right=["fd"]))
    return 0


def vma_rows(dump: Dump, task: Task) -> list[dict[str, Any]]:
    """Each VMA with what backs it and how many of its pages are in the dump, by where they are."""
    if task.mm is None:
        return []
    runs = list(pagemap_runs(dump, task.pid))
    rows, short_ids = [], {}
    for vma in task.mm.vmas:
        counts = Counter()
        for vaddr, pages, flags in runs:
            lo, hi = max(vaddr, vma.start), min(vaddr + pages * 4096, vma.end)
            if lo < hi:
                where = "present" if flags & PE_PRESENT else "parent" if flags & PE_PARENT else \
                    "lazy" if flags & PE_LAZY else "other"
                counts[where] += (hi - lo) // 4096
        rows.append({"start": vma.start, "end": vma.end, "prot": prot_text(vma.prot),
                     "shared": bool(vma.flags & 1), "backing": vma_backing(dump, vma, short_ids).strip(),
                     "pages": (vma.end - vma.start) // 4096, "dumped_pages": dict(counts)})
    return rows


def cmd_maps(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from imgtool.render.console import console, emit_json, table

    with open_checkpoint(args) as dump:
        tasks = _tasks(dump, args.pid)
        found = {t.pid: vma_rows(dump, t) for t in tasks}
        if args.json:
            emit_json([{"pid": pid, "vmas": rows} for pid, rows in found.items()])
            return 0
        out = console()
        for task in tasks:
            rows = [(f"{r['start']:012x}-{r['end']:012x}", r["prot"] + ("s" if r["shared"] else "p"), r["pages"],
                     r["dumped_pages"].get("present", ""), r["dumped_pages"].get("parent", ""),
                     r["dumped_pages"].get("lazy", ""), escape(r["backing"])) for r in found[task.pid]]
            out.print(table(task_title(task), ["range", "prot", "pages", "dumped", "in parent", "lazy",
                                                         "backing"], rows, right=["pages", "dumped", "in parent",
                                                                                  "lazy"]))
    return 0


def summarize(dump: Dump) -> dict[str, Any]:
    inv = dump.inventory
    kinds = Counter(fd.file.kind for t in dump.tasks for fd in t.fds)
    pages = Counter()
    for task in dump.tasks:
        for _, counts, flags in pagemap_batches(dump, task.pid):
            pages.update(_page_kinds(counts, flags))
    pages_files = sum(p.stat().st_size for p in dump.path.glob("pages-*.img"))
    config = dump.metadata.get("config.dump")
    container = None
    if isinstance(config, dict):
        container = {k: config.get(k) for k in ("id", "name", "rootfsImageName", "rootfsImage", "ociRuntime",
                                                 "createdTime", "checkpointedTime") if config.get(k)}
    return {
        "path": str(dump.source), "images": str(dump.path), "container": container,
        "inventory": {"img_version": inv.img_version,
                      "lsm": enum_name(inv, "lsmtype"),
                      "pre_dump": inv.HasField("pre_dump_mode"), "tcp_close": inv.tcp_close,
                      "parent": str(dump.parent.path) if dump.parent else None,
                      "chain": [str(d.path) for d in dump.chain()][1:]},   # follows every link: a loop is an error
        "processes": [task_json(t) for t in dump.tasks],
        "threads": sum(len(t.threads) for t in dump.tasks),
        "fds": dict(sorted(kinds.items())),
        "memory": {"present_pages": pages["present"], "parent_pages": pages["parent"],
                   "lazy_pages": pages["lazy"], "pages_files_bytes": pages_files},
    }


def _page_kinds(counts: list[int], flags: list[int]) -> dict[str, int]:
    """Pages by where they are: "present" (PE_PRESENT set), "parent" (else PE_PARENT), "lazy" (the rest)."""
    present = list(map(and_, flags, repeat(PE_PRESENT)))
    parent = sum(compress(counts, map(lt, present, map(and_, flags, repeat(PE_PARENT)))))   # 0 < 1: parent only
    total, on_disk = sum(counts), sum(compress(counts, present))
    return {"present": on_disk, "parent": parent, "lazy": total - on_disk - parent}


def cmd_summary(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from imgtool.render.console import console, emit_json, human_bytes, table

    with open_checkpoint(args) as dump:
        info = summarize(dump)
        if args.json:
            emit_json(info)
            return 0
        out = console()
        out.print(f"[bold]Checkpoint[/] {escape(info['path'])}")
        if info["container"]:
            out.print("  container: " + escape(", ".join(f"{k} {v}" for k, v in info["container"].items())))
        inv = info["inventory"]
        out.print(f"  image version {inv['img_version']}, LSM {escape(inv['lsm'])}"
                  + (f", parent {escape(inv['parent'])}" if inv["parent"] else ""))
        out.print(table("Processes", ["pid", "ppid", "comm", "state", "threads"],
                        [(p["pid"], p["ppid"], escape(p["comm"]), p["state"], len(p["threads"]))
                         for p in info["processes"]], right=["pid", "ppid", "threads"]))
        out.print("  open files: " + (escape(", ".join(f"{n} {k.lower()}" for k, n in info["fds"].items()))
                                      or "none"))
        mem = info["memory"]
        out.print(f"  memory: {human_bytes(mem['present_pages'] * 4096)} dumped here, "
                  f"{human_bytes(mem['parent_pages'] * 4096)} in parent, {mem['lazy_pages']} lazy pages; "
                  f"pages files {human_bytes(mem['pages_files_bytes'])}")
    return 0
