# ruff: noqa: UP031 -- printf-style formats mirror crit's output byte for byte
"""crit's explorers (``crit x DIR ps|fds|mems|rss``) with crit's exact text, plus ``sk``.

The text matches crit 4.2 line for line, except where crit is wrong:
memfd-backed mappings show the memfd's name instead of "unknown path", and
``rss`` takes page counts as CRIU reads them (nr_pages, else compat_nr_pages)
so pre-4.2 dumps work.  Pagemaps are read with the columnar reader.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import pagemap
from .dump import Dump, Task
from .errors import MissingImageError

VMA_REGULAR, VMA_STACK, VMA_VSYSCALL, VMA_VDSO = 1 << 0, 1 << 1, 1 << 2, 1 << 3
VMA_FILE_PRIVATE, VMA_FILE_SHARED, VMA_ANON_SHARED = 1 << 6, 1 << 7, 1 << 8
VMA_SYSVIPC, VMA_SOCKET, VMA_MEMFD = 1 << 10, 1 << 11, 1 << 14
MAP_GROWSDOWN = 0x0100


def _tasks(dump: Dump) -> list[Task]:
    if dump.image("pstree") is None:
        raise MissingImageError(f"{dump.path}: no pstree.img (a pre-dump directory holds only memory)")
    return dump.tasks


def ps(dump: Dump) -> Iterator[str]:
    yield "%7s%7s%7s   %s" % ("PID", "PGID", "SID", "COMM")

    def walk(task: Task, depth: int) -> Iterator[str]:
        yield "%7d%7d%7d   %s%s" % (task.pid, task.pgid, task.sid, " " * (4 * depth), task.comm)
        for kid in task.children:
            yield from walk(kid, depth + 1)

    roots = [t for t in _tasks(dump) if t.ppid == 0]
    for root in roots:
        yield from walk(root, 0)


def _crit_file(dump: Dump, kind: str, file_id: int) -> str:
    """crit's short name of a file: path for REG, pipe[N], unix[ino (peer) name], else TYPE.id."""
    table = dump.file_table
    msg = table.payload(kind, file_id)
    if kind == "REG":
        return msg.name if msg is not None and msg.name else "unknown path"
    if kind == "PIPE":
        return f"pipe[{msg.pipe_id}]" if msg is not None else "pipe[?]"
    if kind == "UNIXSK":
        if msg is None:
            return "unix[?]"
        name = f" {msg.name.decode('utf-8', 'backslashreplace')}" if msg.name else ""
        return f"unix[{msg.ino} ({msg.peer}){name}]"
    return f"{kind}.{file_id}"


def fds(dump: Dump) -> Iterator[str]:
    for task in _tasks(dump):
        yield "%d" % task.pid
        for fd in task.fds:
            yield "\t%7d: %s" % (fd.fd, _crit_file(dump, fd.file.kind, fd.file.id))
        if task.fs is not None:
            yield "\t%7s: %s" % ("cwd", _crit_file(dump, "REG", task.fs.cwd_id))
            yield "\t%7s: %s" % ("root", _crit_file(dump, "REG", task.fs.root_id))


def vma_backing(dump: Dump, vma, short_ids: dict[int, int]) -> str:
    """What a VMA maps, as crit's ``x mems`` names it."""
    status = vma.status

    def short(shmid: int) -> int:
        return short_ids.setdefault(shmid, len(short_ids) + 1)

    if status & VMA_SYSVIPC:
        return " ips[%x]" % short(vma.shmid)
    if status & VMA_ANON_SHARED:
        return " shmem[%x]" % short(vma.shmid)
    if status & VMA_SOCKET:
        return " packet[%x]" % short(vma.shmid)
    if status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
        if status & VMA_MEMFD:
            memfd = dump.file_table.get("MEMFD", vma.shmid).details.get("name")
            text = f" memfd:{memfd}" if memfd else " unknown path"
        else:
            text = " " + _crit_file(dump, "REG", vma.shmid)
        if vma.pgoff:
            text += " + %#x" % vma.pgoff
        if status & VMA_FILE_SHARED:
            text += " (s)"
        return text
    if status & VMA_STACK:
        return " [stack]"
    if status & VMA_VSYSCALL:
        return " [vsyscall]"
    if status & VMA_VDSO:
        return " [vdso]"
    if vma.flags & MAP_GROWSDOWN:
        return " [stack?]"
    return ""


def prot_text(prot: int) -> str:
    return ("r" if prot & 1 else "-") + ("w" if prot & 2 else "-") + ("x" if prot & 4 else "-")


def mems(dump: Dump) -> Iterator[str]:
    short_ids: dict[int, int] = {}
    for task in _tasks(dump):
        mm = task.mm
        yield "%d" % task.pid
        if mm is None:
            continue
        yield "\t%-36s    %s" % ("exe", _crit_file(dump, "REG", mm.exe_file_id))
        for vma in mm.vmas:
            backing = vma_backing(dump, vma, short_ids)
            if not vma.status & VMA_REGULAR:
                backing += " *"
            yield "\t%-36s%s%s" % ("%08x-%08x" % (vma.start, vma.end), prot_text(vma.prot), backing)


def pagemap_runs(dump: Dump, pid: int) -> Iterator[tuple[int, int, int]]:
    """(vaddr, pages, flags) of every pagemap entry of a task, via the columnar reader."""
    image = dump.image(f"pagemap-{pid}")
    if image is None:
        return
    entries = image.entries()
    head = next(entries, None)
    if head is None:
        return
    for item in pagemap.read(image._view, head.end, image.header.byteorder, image.path, 1):
        if isinstance(item, pagemap.Columns):
            yield from zip(item.vaddr, item.pages(), item.effective_flags(), strict=True)
        else:
            cols = pagemap.Columns(*([getattr(item, n)] if item.HasField(n) else [] for n in pagemap.FIELDS))
            yield cols.vaddr[0], cols.pages()[0], cols.effective_flags()[0]


def rss(dump: Dump) -> Iterator[str]:
    for task in _tasks(dump):
        vmas = list(task.mm.vmas) if task.mm is not None else []
        yield "%d" % task.pid
        vmi, pvmi = 0, -1
        for vaddr, pages, _flags in pagemap_runs(dump, task.pid):
            head = "\t%x / %-8d" % (vaddr, pages)
            while vmi < len(vmas) and vmas[vmi].end <= vaddr:
                vmi += 1
            end = vaddr + (pages << 12)
            text = ""
            while vmi < len(vmas) and vmas[vmi].start < end:
                vma = vmas[vmi]
                if vmi == pvmi:
                    text += " ~"
                else:
                    text += " %08x / %-8d" % (vma.start, (vma.end - vma.start) >> 12)
                    if vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
                        text += " " + _crit_file(dump, "REG", vma.shmid)
                    pvmi = vmi
                text += "\n\t%23s" % ""
                vmi += 1
            vmi -= 1
            yield "%-24s%s" % (head, text)


def sk(dump: Dump) -> Iterator[str]:
    """Sockets of every task (not in crit): fd, kind and state, addresses, queued bytes."""
    for task in _tasks(dump):
        sockets = [fd for fd in task.fds if fd.file.kind.endswith("SK")]
        if not sockets:
            continue
        yield "%d %s" % (task.pid, task.comm)
        for fd in sockets:
            yield "\t%7d: %s" % (fd.fd, fd.file.summary)


EXPLORERS = {"ps": ps, "fds": fds, "mems": mems, "rss": rss, "sk": sk}
