"""The view data of a report: plain dicts and lists gathered from a ``Dump`` (and a ``DumpDiff``).

Everything the templates show is computed here; the templates and ``svg.py`` only lay it out.  Memory is
aggregated: per VMA, page counts by where the page is (dumped here, in a parent dump, lazy, never touched)
and at most ``BINS`` bins along the VMA; a diff's changed pages per VMA in bins too.  Nothing is ever one
element per page or per pagemap entry.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from imgtool.analysis.changes import DumpDiff
from imgtool.crit.explore import pagemap_batches, prot_text, vma_backing
from imgtool.errors import ImgtoolError
from imgtool.format import pagemap
from imgtool.format.fields import enum_name
from imgtool.format.flags import (
    MAP_GROWSDOWN,
    PE_PARENT,
    PE_PRESENT,
    VMA_ANON_SHARED,
    VMA_AREA_HEAP,
    VMA_AREA_MEMFD,
    VMA_AREA_STACK,
    VMA_AREA_SYSVIPC,
    VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL,
    VMA_AREA_VVAR,
    VMA_FILE_PRIVATE,
    VMA_FILE_SHARED,
)
from imgtool.memory.shmem import shmem_id
from imgtool.memory.space import cmdline_of
from imgtool.memory.vma import DEFAULT_PAGE_SIZE, page_size_of, vma_from_entry
from imgtool.model.dump import Dump, Task

BINS = 48                 # at most this many bins along one VMA
HEAT_BINS = 64            # bins of a diff heat map row
RANGES_LISTED = 64        # changed page ranges listed per VMA (the rest counted)
NETWORK_LOCKS = {1: "iptables", 2: "nftables", 3: "skip"}     # CRIU's enum network_lock_method
PRE_DUMP_MODES = {1: "splice", 2: "read"}                       # CRIU's enum pre_dump_mode
STATES = ("present", "parent", "lazy", "untouched")
KINDS = ("anon", "file", "shared", "heap", "stack", "special")
KIND_NAMES = {"anon": "anonymous", "file": "file", "shared": "shared / memfd / SysV", "heap": "heap",
              "stack": "stack", "special": "vdso / vvar / vsyscall"}
STATE_NAMES = {"present": "dumped here", "parent": "in a parent dump", "lazy": "lazy (page server)",
               "untouched": "not dumped (never touched, or clean file pages)"}


def vma_kind(vma: Any) -> str:
    """One of KINDS: what a VMA is, for colour and legend."""
    status = vma.status
    if status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL):
        return "special"
    if status & VMA_AREA_STACK or vma.flags & MAP_GROWSDOWN:
        return "stack"
    if status & VMA_AREA_HEAP:
        return "heap"
    if status & (VMA_ANON_SHARED | VMA_AREA_MEMFD | VMA_AREA_SYSVIPC | VMA_FILE_SHARED):
        return "shared"
    if status & VMA_FILE_PRIVATE:
        return "file"
    return "anon"


@dataclass
class VmaView:
    start: int
    end: int
    prot: str
    shared: bool
    kind: str
    backing: str
    pages: int
    counts: dict[str, int] = field(default_factory=dict)     # by STATES
    bins: list[dict[str, int]] = field(default_factory=list)  # per bin: pages by state (untouched implied)
    bin_pages: list[int] = field(default_factory=list)        # pages in each bin
    change: str = ""          # with a diff: "added", "resized" or "changed" since the older dump
    change_text: str = ""     # what changed, in the diff's words

    @property
    def start_hex(self) -> str:
        return f"{self.start:#x}"

    @property
    def end_hex(self) -> str:
        return f"{self.end:#x}"

    @property
    def tooltip(self) -> str:
        c = self.counts
        return (f"{self.start:#x}-{self.end:#x} {self.prot}{'s' if self.shared else 'p'} {KIND_NAMES[self.kind]}"
                f"{' ' + self.backing if self.backing else ''}\n{self.pages} pages: {c['present']} dumped here, "
                f"{c['parent']} in parent, {c['lazy']} lazy, {c['untouched']} not dumped"
                + (f"\nsince the older dump: {self.change_text}" if self.change else ""))


def _bin_edges(pages: int) -> list[int]:
    """Page offsets where the bins of a VMA of ``pages`` pages start (and, last, its end)."""
    n = max(1, min(BINS, pages))
    return [pages * i // n for i in range(n + 1)]


def memory_views(dump: Dump, task: Task) -> list[VmaView]:
    """Each VMA of a task with its pages counted by state, overall and per bin: one sweep over the pagemap."""
    mm = task.mm
    if mm is None:
        return []
    page = page_size_of(mm)
    short_ids: dict[int, int] = {}
    vmas = sorted(mm.vmas, key=lambda v: v.start)
    views = []
    for vma in vmas:
        pages = max(0, (vma.end - vma.start) // page)
        edges = _bin_edges(pages)
        views.append(VmaView(vma.start, vma.end, prot_text(vma.prot), bool(vma.flags & 1), vma_kind(vma),
                             vma_backing(dump, vma, short_ids).strip(), pages,
                             bins=[{} for _ in range(len(edges) - 1)],
                             bin_pages=[b - a for a, b in pairwise(edges)]))
    starts = [v.start for v in views]
    edges_of = [_bin_edges(v.pages) for v in views]
    totals = [Counter() for _ in views]
    for vaddr, n, flag in _runs(dump, task.pid, vmas, page):
        # as ``imgtool summary`` counts: neither PE_PRESENT nor PE_PARENT is lazy (PE_LAZY, or nothing)
        state = "present" if flag & PE_PRESENT else "parent" if flag & PE_PARENT else "lazy"
        end = vaddr + n * page
        i = max(0, bisect.bisect_right(starts, vaddr) - 1)
        while i < len(views) and views[i].start < end:
            view = views[i]
            lo, hi = max(vaddr, view.start), min(end, view.end)
            if lo < hi:
                first, last = (lo - view.start) // page, (hi - view.start) // page
                totals[i][state] += last - first
                edges = edges_of[i]
                b = bisect.bisect_right(edges, first) - 1
                while b < len(view.bins) and edges[b] < last:
                    take = min(last, edges[b + 1]) - max(first, edges[b])
                    if take > 0:
                        view.bins[b][state] = view.bins[b].get(state, 0) + take
                    b += 1
            i += 1
    for view, total in zip(views, totals, strict=True):
        view.counts = {s: total[s] for s in STATES[:3]}
        view.counts["untouched"] = max(0, view.pages - sum(view.counts.values()))
    return views


def _batches(dump: Dump, name: str) -> Iterator[tuple[list[int], list[int], list[int]]]:
    """(vaddrs, page counts, flags) of the entries of pagemap image ``name``, via the columnar reader."""
    image = dump.image(name)
    if image is None:
        return
    entries = image.entries()
    head = next(entries, None)
    if head is None:
        return
    yield from pagemap.batches(image._view, head.end, image.header.byteorder, image.path)


def _runs(dump: Dump, pid: int, vmas: list[Any], page: int) -> Iterator[tuple[int, int, int]]:
    """(vaddr, pages, flags) of the task's pagemap entries, then of its shared objects' pages (anonymous shared,
    memfd, SysV: their pagemap-shmem images hold offsets in the object), moved to the addresses that map them."""
    for batch in pagemap_batches(dump, pid):
        yield from zip(*batch, strict=True)
    for entry in vmas:
        vma = vma_from_entry(entry)
        if vma.shared_object is None or not vma.status_bits & (VMA_ANON_SHARED | VMA_AREA_MEMFD | VMA_AREA_SYSVIPC):
            continue
        try:
            ident = shmem_id(dump, vma)
        except ImgtoolError:
            ident = None
        if ident is None:
            continue
        lo, hi = vma.pgoff, vma.pgoff + vma.size
        for offsets, counts, flags in _batches(dump, f"pagemap-shmem-{ident}"):
            for off, n, flag in zip(offsets, counts, flags, strict=True):
                a, b = max(off, lo), min(off + n * page, hi)
                if a < b:
                    yield vma.start + a - lo, (b - a) // page, flag


def _creds(task: Task) -> dict[str, Any] | None:
    creds = task.creds
    if creds is None:
        return None
    out = {}
    for name in ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid"):
        if creds.HasField(name):
            out[name] = getattr(creds, name)
    if len(creds.groups):
        out["groups"] = " ".join(map(str, creds.groups))
    for name in ("cap_eff", "cap_prm"):
        caps = list(getattr(creds, name, []))
        if caps:
            out[name] = "0x" + "".join(f"{w:08x}" for w in reversed(caps))
    return out


def _fd_view(fd: Any) -> dict[str, Any]:
    f = fd.file
    d = f.details
    view = {"fd": fd.fd, "kind": f.kind, "summary": f.summary, "cloexec": bool(fd.flags & 1),
            "path": d.get("path") or d.get("name") or "", "pos": d.get("pos"), "flags": d.get("flags"),
            "queued": len(f.queued) if f.queued else 0, "deleted": False, "peer": "", "id": f.id,
            "remap": ""}
    remap = d.get("remap")
    if isinstance(remap, dict):
        view["deleted"] = remap.get("type") == "ghost"
        view["remap"] = f"{remap.get('type')}: {remap.get('note', '')}".rstrip(": ")
    if f.kind in ("UNIXSK", "INETSK", "PACKETSK", "NETLINKSK"):
        view["socket"] = {k: d.get(k) for k in ("family", "type", "proto", "state", "src", "dst", "name", "ino",
                                                "peer", "recv_queue_bytes", "send_queue_bytes")
                          if d.get(k) not in (None, "")}
    return view


def _peers(tasks: list[dict[str, Any]]) -> None:
    """Fill each pipe's and unix socket's ``peer``: the other ends, as ``pid N fd M``."""
    pipes: dict[Any, list[str]] = {}
    socks: dict[Any, str] = {}
    for t in tasks:
        for fd in t["fds"]:
            where = f"pid {t['pid']} fd {fd['fd']}"
            if fd["kind"] in ("PIPE", "FIFO"):
                pipes.setdefault((fd["kind"], fd["pipe_id"]), []).append(where)
            elif fd["kind"] == "UNIXSK" and fd.get("socket", {}).get("ino"):
                socks.setdefault(fd["socket"]["ino"], where)
    for t in tasks:
        for fd in t["fds"]:
            where = f"pid {t['pid']} fd {fd['fd']}"
            if fd["kind"] in ("PIPE", "FIFO"):
                fd["peer"] = ", ".join(w for w in pipes[(fd["kind"], fd["pipe_id"])] if w != where) or "none open"
            elif fd["kind"] == "UNIXSK":
                peer = fd.get("socket", {}).get("peer")
                if peer:
                    fd["peer"] = socks.get(peer, f"ino {peer} (outside the dump)")


def task_view(dump: Dump, task: Task) -> dict[str, Any]:
    try:
        argv = cmdline_of(task)
    except ImgtoolError:
        argv = []
    fds = []
    for fd in task.fds:
        view = _fd_view(fd)
        view["pipe_id"] = fd.file.details.get("pipe_id")
        fds.append(view)
    vmas = memory_views(dump, task)
    composition = {k: Counter() for k in KINDS}
    for v in vmas:
        composition[v.kind].update(v.counts)
        composition[v.kind]["pages"] += v.pages
    threads = [{"tid": t.tid, "comm": t.comm} for t in task.thread_list] if not task.dead else []
    return {"pid": task.pid, "ppid": task.ppid, "pgid": task.pgid, "sid": task.sid, "comm": task.comm,
            "state": task.state, "exit_code": task.exit_code, "dead": task.dead, "threads": threads,
            "argv": " ".join(argv), "creds": _creds(task), "cwd": task.cwd, "root": task.root, "fds": fds,
            "sockets": [f for f in fds if "socket" in f], "vmas": vmas,
            "composition": {k: dict(c) for k, c in composition.items() if c["pages"]},
            "page_size": page_size_of(task.mm) if task.mm is not None else DEFAULT_PAGE_SIZE,
            "children": [c.pid for c in task.children]}


def _header(dump: Dump) -> dict[str, Any]:
    inv = dump.inventory
    flags = {"image version": inv.img_version, "LSM": enum_name(inv, "lsmtype")}
    for name, label in (("fdinfo_per_id", "fdinfo per id"), ("ns_per_id", "namespaces per id"),
                        ("tcp_close", "tcp-close"), ("allow_uprobes", "allow uprobes"),
                        ("dump_criu_run_id", "criu run id"), ("network_lock_method", "network lock")):
        if inv.HasField(name):
            value = getattr(inv, name)
            flags[label] = NETWORK_LOCKS.get(value, value) if name == "network_lock_method" else value
    if inv.HasField("pre_dump_mode"):
        flags["pre-dump mode"] = PRE_DUMP_MODES.get(inv.pre_dump_mode, inv.pre_dump_mode)
    if inv.HasField("dump_uptime"):
        flags["dump uptime"] = f"{inv.dump_uptime / 1e6:.1f} s"
    if inv.HasField("plugins_entry") and inv.plugins_entry.plugins:
        flags["plugins"] = ", ".join(inv.plugins_entry.plugins)
    container: dict[str, Any] = {}
    config = dump.metadata.get("config.dump")
    if isinstance(config, dict):
        for key, label in (("name", "name"), ("id", "id"), ("rootfsImageName", "image"), ("RawImageName", "image"),
                           ("runtime", "runtime"), ("ociRuntime", "runtime"), ("createdTime", "created"),
                           ("checkpointedTime", "checkpointed")):
            if config.get(key) and label not in container:
                container[label] = config[key]
        container["engine"] = "podman" if "CreateCommand" in config or "lockID" in config else "container engine"
    spec = dump.metadata.get("spec.dump")
    if isinstance(spec, dict) and isinstance(spec.get("annotations"), dict):
        ann = spec["annotations"]
        for key, label in (("io.kubernetes.cri-o.ContainerName", "name"), ("io.container.manager", "engine")):
            if ann.get(key) and label not in container:
                container[label] = ann[key]
    root = dump.root if dump.root.is_dir() else dump.path
    sizes = {"images": sum(p.stat().st_size for p in dump.path.iterdir() if p.is_file()),
             "memory pages (pages-*.img)": sum(p.stat().st_size for p in dump.path.glob("pages-*.img"))}
    rootfs = [p for p in root.glob("rootfs-diff.tar*") if p.is_file()]
    if rootfs:
        sizes["rootfs diff"] = sum(p.stat().st_size for p in rootfs)
    return {"source": str(dump.source), "images": dump.location, "flags": flags, "container": container,
            "sizes": sizes, "parent": str(dump.parent.path) if dump.parent else None,
            "criu_version": None}


def _findings(dump: Dump) -> list[dict[str, Any]]:
    from imgtool.analysis.checks import Context, run_checks

    return [{"severity": f.severity, "code": f.code, "message": f.message, "hint": f.hint, "image": f.image}
            for f in run_checks(Context(dump, offline=True))]


def report_data(dump: Dump, diff: DumpDiff | None = None, old: Dump | None = None) -> dict[str, Any]:
    """Everything the page shows."""
    tasks = [task_view(dump, t) for t in dump.tasks]
    _peers(tasks)
    by_pid = {t["pid"]: t for t in tasks}
    pids = set(by_pid)
    roots = [t["pid"] for t in tasks if t["ppid"] not in pids or t["ppid"] == t["pid"]]
    totals = Counter()
    for t in tasks:
        for v in t["vmas"]:
            totals.update(v.counts)
            totals["pages"] += v.pages
    composition: dict[str, Counter] = {k: Counter() for k in KINDS}
    for t in tasks:
        for kind, c in t["composition"].items():
            composition[kind].update(c)
    page = tasks[0]["page_size"] if tasks else DEFAULT_PAGE_SIZE
    data = {"header": _header(dump), "findings": _findings(dump), "tasks": by_pid, "tree": _tree(by_pid, roots),
            "totals": dict(totals), "page_size": page, "diff": None,
            "composition": {k: dict(c) for k, c in composition.items() if c["pages"]}}
    if diff is not None:
        data["diff"] = diff_view(diff, old, dump, page)
        _mark_vma_changes(diff, by_pid)
    return data


CHANGE_RANK = {"changed": 0, "resized": 1, "added": 2}    # a mapping both resized and re-protected shows "resized"


def _mark_vma_changes(diff: DumpDiff, tasks: dict[int, dict[str, Any]]) -> None:
    """Mark each task's mappings that the diff's ``vmas`` facet found added, resized or changed; list the removed
    ones under ``removed_vmas``.  A task is found by its pid in the newer dump, through the diff's matches."""
    for task in tasks.values():
        task["removed_vmas"] = []
    newer = {m.label: m.b for m in diff.matches if m.b is not None}
    for change in diff.changes:
        if change.facet != "vmas" or len(change.path) < 2:
            continue
        task = tasks.get(newer.get(change.path[0]))
        if task is None:
            continue
        if change.kind == "removed":
            old = change.old
            task["removed_vmas"].append({"start": f"{old['start']:#x}", "end": f"{old['end']:#x}",
                                         "text": f"{prot_text(old['prot'])} {old['backing']}".strip()})
            continue
        start = change.new["start"] if change.kind in ("added", "resized") else int(change.path[1][4:], 16)
        view = next((v for v in task["vmas"] if v.start == start), None)
        if view is None:
            continue
        text = str(change).split(" › ", 2)[-1] if change.kind == "changed" else str(change).split(": ", 1)[-1]
        if CHANGE_RANK.get(change.kind, 0) >= CHANGE_RANK.get(view.change, -1):
            view.change = change.kind
        view.change_text = f"{view.change_text}; {text}" if view.change_text else text


def _tree(tasks: dict[int, dict[str, Any]], roots: list[int]) -> list[tuple[str, int, int]]:
    """The process tree as ("open", pid, depth) / ("close", pid, depth) events, depth first, without recursion
    (a chain of thousands of processes); each task once, even in a damaged tree with a cycle."""
    events: list[tuple[str, int, int]] = []
    shown: set[int] = set()
    stack: list[tuple[str, int, int]] = [("open", pid, 0) for pid in reversed(roots)]
    leftover = [pid for pid in reversed(tasks) if pid not in roots]
    while stack or leftover:
        if not stack:
            pid = leftover.pop()
            if pid in shown:
                continue
            stack.append(("open", pid, 0))
        event, pid, depth = stack.pop()
        if event == "close":
            events.append((event, pid, depth))
            continue
        if pid in shown:
            continue
        shown.add(pid)
        events.append(("open", pid, depth))
        stack.append(("close", pid, depth))
        kids = [k for k in tasks[pid]["children"] if k in tasks and k not in shown]
        tasks[pid]["children"] = kids
        stack.extend(("open", k, depth + 1) for k in reversed(kids))
    return events


def diff_view(diff: DumpDiff, old: Dump | None, new: Dump, page_size: int = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
    """The diff: processes added/removed, every change by task, and memory changes as heat-map rows."""
    processes, groups, heat = [], {}, []
    for change in diff.changes:
        task = change.path[0] if change.path else ""
        if len(change.path) == 1 and change.kind in ("added", "removed"):
            processes.append({"kind": change.kind, "what": task, "detail": str(change).split(": ", 1)[-1]})
        text = str(change).split(" › ")[-1]
        where = " › ".join(change.path[1:-1]) if len(change.path) > 2 else ""
        groups.setdefault(task, []).append({"kind": change.kind, "facet": change.facet, "where": where,
                                            "text": text})
        if change.facet == "memory" and isinstance(change.new, dict):
            heat.append(_heat_row(task, change.path[1] if len(change.path) > 1 else "", change.new, page_size))
    return {"a": diff.a, "b": diff.b, "equal": diff.equal,
            "stat": {facet: dict(c) for facet, c in diff.stat().items()},
            "matches": [m.to_json() for m in diff.matches if m.how == "key"],
            "processes": processes, "groups": groups, "heat": heat}


def _heat_row(task: str, where: str, detail: dict[str, Any], page_size: int) -> dict[str, Any]:
    ranges = [(int(a), int(b)) for a, b in detail.get("changed_ranges") or ()]
    start = end = None
    if where.startswith("vma "):
        lo, _, hi = where[4:].partition("-")
        start, end = int(lo, 16), int(hi, 16)
    elif ranges:
        start, end = ranges[0][0], ranges[-1][1]
    bins = []
    if start is not None and end > start:
        span = end - start
        n = HEAT_BINS
        bins = [0.0] * n
        for a, b in ranges:
            a, b = max(a, start), min(b, end)
            first, last = (a - start) * n // span, min(n - 1, (b - 1 - start) * n // span)
            for i in range(first, last + 1):
                lo = start + span * i // n
                hi = start + span * (i + 1) // n
                overlap = min(b, hi) - max(a, lo)
                if overlap > 0:
                    bins[i] += overlap / (hi - lo)
    counts = {k: detail.get(k, 0) for k in ("changed", "added", "removed", "moved to parent")
              if detail.get(k)}
    return {"task": task, "where": where, "start": start, "end": end, "bins": [min(1.0, b) for b in bins],
            "counts": counts, "ranges": [(f"{a:#x}", f"{b:#x}", (b - a) // page_size)
                                                                 for a, b in ranges[:RANGES_LISTED]],
            "more_ranges": max(0, len(ranges) - RANGES_LISTED)}
