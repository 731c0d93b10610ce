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
from imgtool.errors import UsageError
from imgtool.format.fields import enum_name
from imgtool.format.flags import PE_LAZY, PE_PARENT, PE_PRESENT
from imgtool.memory.space import cmdline_of
from imgtool.memory.vma import DEFAULT_PAGE_SIZE, page_size_of
from imgtool.model.container import container_of
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
        if name == "ps":
            p.add_argument("--env", action="store_true", help="each process's environment, read from its memory")
        add_dump_option(p)
        p.set_defaults(func=func)


def add_dump_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dump", metavar="NAME", help="which dump of a directory holding several (its folder name)")


def open_named(path: str, name: str | None, option: str = "--dump") -> Dump:
    """The dump at ``path`` (``name``: one of several there); the error for several dumps and no name says to
    name one with ``option``, the option of this command that does."""
    try:
        return open_dump(path, name)
    except UsageError as exc:
        if option == "--dump":
            raise
        raise UsageError(str(exc).replace("with --dump ", f"with {option} ")) from None


def open_checkpoint(args: argparse.Namespace, *, tasks: bool = True) -> Dump:
    """The dump args.dir (and --dump) name; with ``tasks``, one with a process tree (a pre-dump is an error)."""
    dump = open_named(args.dir, getattr(args, "dump", None))
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
        terminal = sys.stdout.isatty()
        for batch in batches:   # what print() per line writes, in fewer calls
            if batch:
                text = "\n".join(batch) + "\n"
                sys.stdout.write(clean_lines(text) if terminal else text)   # crit's bytes, but no raw NUL
    return 0


def clean_lines(text: str) -> str:
    """Lines for a terminal: control characters but newlines and tabs as ``\\xNN``."""
    from imgtool.render.console import clean

    return "\n".join(map(clean, text.split("\n")))


def _tasks(dump: Dump, pid: int | None) -> list[Task]:
    return [dump.task(pid)] if pid is not None else dump.tasks


def task_title(task: Task) -> str:
    """``PID COMM`` as rich markup (the name escaped: ``[`` in it is text)."""
    from rich.markup import escape

    from imgtool.render.console import clean

    return escape(clean(f"{task.pid} {task.comm}"))


def task_json(task: Task) -> dict[str, Any]:
    return {"pid": task.pid, "ppid": task.ppid, "pgid": task.pgid, "sid": task.sid, "comm": task.comm,
            "state": task.state, "exit_code": task.exit_code, "threads": task.threads, "cmdline": cmdline_of(task)}


def environ_of(task: Task) -> list[str]:
    """The task's environment strings from its dumped memory ([] for a zombie or unreadable pages)."""
    from imgtool.errors import ImgtoolError
    from imgtool.memory.space import address_space, environ

    if task.mm is None:
        return []
    try:
        return environ(address_space(task), task.mm)
    except ImgtoolError:
        return []


def cmd_ps(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.tree import Tree

    from imgtool.render.console import clean, console, emit_json

    with open_checkpoint(args) as dump:
        env = getattr(args, "env", False)
        if args.json:
            emit_json([{**task_json(t), **({"environ": environ_of(t)} if env else {})}
                       for t in ([dump.task(args.pid)] if args.pid is not None else dump.tasks)])
            return 0
        found = container_of(dump)   # the container it was taken of (Docker, Podman...), named in the title
        tree = Tree(f"[bold]{escape(str(dump.source))}[/]" + (f"  [dim]{escape(found.engine)} container[/] [bold]"
                                                              f"{escape(found.name or found.id or '?')}[/]"
                                                              if found is not None else ""))

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
            argv = escape(clean(" ".join(cmdline_of(task))))
            child = node.add(f"[bold]{task.pid} {escape(clean(task.comm))}[/]  {argv}  [dim]pgid {task.pgid} "
                             f"sid {task.sid} {task.state}{threads}[/]")
            if env:
                for var in environ_of(task):
                    child.add(f"[dim]env {escape(clean(var))}[/]")
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
    page = page_size_of(task.mm)
    rows, short_ids = [], {}
    for vma in task.mm.vmas:
        counts = Counter()
        for vaddr, pages, flags in runs:
            lo, hi = max(vaddr, vma.start), min(vaddr + pages * page, vma.end)
            if lo < hi:
                where = "present" if flags & PE_PRESENT else "parent" if flags & PE_PARENT else \
                    "lazy" if flags & PE_LAZY else "other"
                counts[where] += (hi - lo) // page
        rows.append({"start": vma.start, "end": vma.end, "prot": prot_text(vma.prot),
                     "shared": bool(vma.flags & 1), "backing": vma_backing(dump, vma, short_ids).strip(),
                     "pages": (vma.end - vma.start) // page, "dumped_pages": dict(counts)})
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
    found = container_of(dump)
    container = found.to_json() if found is not None else None
    return {
        "path": str(dump.source), "images": dump.location, "container": container,
        "inventory": {"img_version": inv.img_version,
                      "lsm": enum_name(inv, "lsmtype"),
                      "pre_dump": inv.HasField("pre_dump_mode"), "tcp_close": inv.tcp_close,
                      "parent": str(dump.parent.path) if dump.parent else None,
                      "chain": [str(d.path) for d in dump.chain()][1:]},   # follows every link: a loop is an error
        "processes": [task_json(t) for t in dump.tasks],
        "threads": sum(len(t.threads) for t in dump.tasks),
        "fds": dict(sorted(kinds.items())),
        "memory": {"present_pages": pages["present"], "parent_pages": pages["parent"],
                   "lazy_pages": pages["lazy"], "pages_files_bytes": pages_files,
                   "page_size": next((page_size_of(t.mm) for t in dump.tasks if t.mm is not None), DEFAULT_PAGE_SIZE)},
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
            print_container(out, info["container"])
        inv = info["inventory"]
        out.print(f"  image version {inv['img_version']}, LSM {escape(inv['lsm'])}"
                  + (f", parent {escape(inv['parent'])}" if inv["parent"] else ""))
        out.print(table("Processes", ["pid", "ppid", "comm", "state", "threads"],
                        [(p["pid"], p["ppid"], escape(p["comm"]), p["state"], len(p["threads"]))
                         for p in info["processes"]], right=["pid", "ppid", "threads"]))
        out.print("  open files: " + (escape(", ".join(f"{n} {k.lower()}" for k, n in info["fds"].items()))
                                      or "none"))
        mem = info["memory"]
        out.print(f"  memory: {human_bytes(mem['present_pages'] * mem['page_size'])} dumped here, "
                  f"{human_bytes(mem['parent_pages'] * mem['page_size'])} in parent, {mem['lazy_pages']} lazy pages; "
                  f"pages files {human_bytes(mem['pages_files_bytes'])}")
    return 0


def print_container(out: Any, c: dict[str, Any]) -> None:
    """checkpointctl's container view: engine, runtime, name, id, image, times, interfaces, sizes."""
    from rich.markup import escape

    from imgtool.render.console import clean, human_bytes

    rows = [("engine", c["engine"]), ("runtime", c.get("runtime")), ("name", c.get("name")), ("id", c.get("id")),
            ("pod", c.get("pod")), ("namespace", c.get("namespace")), ("image", c.get("image")),
            ("created", c.get("created")), ("checkpointed", c.get("checkpointed")),
            ("command", " ".join(c.get("command") or []) or None)]
    out.print("[bold]Container[/]")
    for key, value in rows:
        if value:
            out.print(f"  {key}: {escape(clean(str(value)))}")
    for iface in c.get("interfaces") or []:
        parts = [f"IP {', '.join(iface['ip'])}" if iface["ip"] else "", f"MAC {iface['mac']}" if iface["mac"] else "",
                 f"gateway {', '.join(iface['gateway'])}" if iface["gateway"] else ""]
        out.print(f"  interface {escape(clean(iface['name']))}: " + escape(clean(", ".join(p for p in parts if p))))
    names = {"checkpoint": "checkpoint size", "memory_pages": "memory pages size", "rootfs_diff": "rootfs diff size",
             "gpu_pages": "GPU pages size"}
    sizes = [f"{names[k]} {human_bytes(v)}" for k, v in (c.get("sizes") or {}).items() if v is not None and k in names]
    if sizes:
        out.print("  " + ", ".join(sizes))
