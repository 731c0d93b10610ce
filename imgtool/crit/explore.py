# ruff: noqa: UP031 -- printf-style formats mirror crit's output byte for byte
"""crit's explorers (``crit x DIR ps|fds|mems|rss``) with crit's exact text, plus ``sk``.

The text matches crit 4.2 line for line, except where crit is wrong:
memfd-backed mappings show the memfd's name instead of "unknown path", and
``rss`` takes page counts as CRIU reads them (nr_pages, else compat_nr_pages)
so pre-4.2 dumps work.  Pagemaps are read with the columnar reader.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import chain, pairwise, repeat
from operator import add, le, lshift

from imgtool.crit.convert import unix_name
from imgtool.format import pagemap
from imgtool.format.flags import (
    MAP_GROWSDOWN,
    VMA_ANON_SHARED,
    VMA_AREA_MEMFD,
    VMA_AREA_REGULAR,
    VMA_AREA_SOCKET,
    VMA_AREA_STACK,
    VMA_AREA_SYSVIPC,
    VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL,
    VMA_FILE_PRIVATE,
    VMA_FILE_SHARED,
)
from imgtool.model.dump import Dump, Task


def _tasks(dump: Dump) -> list[Task]:
    dump.require_pstree()
    return dump.tasks


def ps(dump: Dump) -> Iterator[str]:
    yield "%7s%7s%7s   %s" % ("PID", "PGID", "SID", "COMM")

    # Depth first, without recursion (a chain of thousands of processes); a damaged pstree can make a cycle
    # (duplicate pids): each entry is shown once.
    shown: set[int] = set()
    stack = [(root, 0) for root in reversed([t for t in _tasks(dump) if t.ppid == 0])]
    while stack:
        task, depth = stack.pop()
        if id(task) in shown:
            continue
        shown.add(id(task))
        yield "%7d%7d%7d   %s%s" % (task.pid, task.pgid, task.sid, " " * (4 * depth), task.comm)
        stack.extend((kid, depth + 1) for kid in reversed(task.children))


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
        name = f" {unix_name(msg.name)}" if msg.name else ""   # crit prints the JSON text: quoted-printable
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

    if status & VMA_AREA_SYSVIPC:
        return " ips[%x]" % short(vma.shmid)
    if status & VMA_ANON_SHARED:
        return " shmem[%x]" % short(vma.shmid)
    if status & VMA_AREA_SOCKET:
        return " packet[%x]" % short(vma.shmid)
    if status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
        if status & VMA_AREA_MEMFD:
            memfd = dump.file_table.get("MEMFD", vma.shmid).details.get("name")
            text = f" memfd:{memfd}" if memfd else " unknown path"
        else:
            text = " " + _crit_file(dump, "REG", vma.shmid)
        if vma.pgoff:
            text += " + %#x" % vma.pgoff
        if status & VMA_FILE_SHARED:
            text += " (s)"
        return text
    if status & VMA_AREA_STACK:
        return " [stack]"
    if status & VMA_AREA_VSYSCALL:
        return " [vsyscall]"
    if status & VMA_AREA_VDSO:
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
            if not vma.status & VMA_AREA_REGULAR:
                backing += " *"
            yield "\t%-36s%s%s" % ("%08x-%08x" % (vma.start, vma.end), prot_text(vma.prot), backing)


def pagemap_batches(dump: Dump, pid: int) -> Iterator[tuple[list[int], list[int], list[int]]]:
    """(vaddrs, page counts, flags) of consecutive pagemap entries of a task, via the columnar reader."""
    image = dump.image(f"pagemap-{pid}")
    if image is None:
        return
    entries = image.entries()
    head = next(entries, None)
    if head is None:
        return
    yield from pagemap.batches(image._view, head.end, image.header.byteorder, image.path)


def pagemap_runs(dump: Dump, pid: int) -> Iterator[tuple[int, int, int]]:
    """(vaddr, pages, flags) of every pagemap entry of a task."""
    for batch in pagemap_batches(dump, pid):
        yield from zip(*batch, strict=True)


_TILDE = " ~\n\t%23s" % ""
_HEAD = "\t%x / %-8d"
_INSIDE = "%-24s" + _TILDE      # the line of an entry inside the VMA the previous entry described


class _RssWalk:
    """crit's ``x rss`` loop over one task's entries (see _entry), with a fast path for the common case."""

    def __init__(self, dump: Dump, vmas: list) -> None:
        self.dump, self.vmas = dump, vmas
        self.vmi, self.pvmi = 0, -1
        self.sorted_vmas = all(v.start <= v.end for v in vmas) and all(a.end <= b.start for a, b in pairwise(vmas))

    def _entry(self, vaddr: int, pages: int) -> tuple[str, bool]:
        """The line of one entry, as crit's loop builds it; and whether it touched a VMA."""
        vmas, vmi = self.vmas, self.vmi
        head = _HEAD % (vaddr, pages)
        if not vmas:   # an mm without VMAs (crit fails with IndexError): the entry alone
            return "%-24s" % head, False
        while vmi < len(vmas) and vmas[vmi].end <= vaddr:
            vmi += 1
        end = vaddr + (pages << 12)
        text = ""
        while vmi < len(vmas) and vmas[vmi].start < end:
            vma = vmas[vmi]
            if vmi == self.pvmi:
                text += " ~"
            else:
                text += " %08x / %-8d" % (vma.start, (vma.end - vma.start) >> 12)
                if vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
                    text += " " + _crit_file(self.dump, "REG", vma.shmid)
                self.pvmi = vmi
            text += "\n\t%23s" % ""
            vmi += 1
        self.vmi = vmi - 1
        return "%-24s%s" % (head, text), bool(text)

    def lines(self, vaddrs: list[int], pages: list[int]) -> list[str]:
        """The lines of a batch of entries (several of them joined by newlines in one string, at times).

        When entries and VMAs are sorted and disjoint, the entries that follow one inside VMA m and start
        before its end (all but maybe the last of them lie inside it) print as " ~" without moving the walk:
        they are formatted in bulk, into one string.
        """
        ends = list(map(add, vaddrs, map(lshift, pages, repeat(12))))
        fast = self.sorted_vmas and all(map(le, ends[:-1], vaddrs[1:]))
        vmas, n, i, out = self.vmas, len(vaddrs), 0, []
        while i < n:
            line, touched = self._entry(vaddrs[i], pages[i])
            out.append(line)
            i += 1
            if not (fast and touched):
                continue
            m = self.vmi
            j = bisect_left(vaddrs, vmas[m].end, i, n)
            if j > i and m + 1 < len(vmas) and ends[j - 1] > vmas[m + 1].start:
                j -= 1                                   # reaches into the next VMA: the slow path
            if j > i:
                out.append(_inside(vaddrs[i:j], pages[i:j]))
                i = j
        return out


def _inside(vaddrs: list[int], pages: list[int]) -> str:
    """The lines _INSIDE makes of these entries, joined by newlines: in one step when every head has the same
    width (one format string repeated, so one call formats them all)."""
    width = len("%x" % vaddrs[0])
    if width != len("%x" % vaddrs[-1]) or max(pages) >= 10 ** 8:
        return "\n".join(_INSIDE % (_HEAD % entry) for entry in zip(vaddrs, pages, strict=True))
    line = _HEAD + " " * max(0, 12 - width) + _TILDE          # heads of 1 + width + 3 + 8 characters
    return "\n".join([line] * len(vaddrs)) % tuple(chain.from_iterable(zip(vaddrs, pages, strict=True)))


def rss_batches(dump: Dump) -> Iterator[list[str]]:
    """``rss`` lines in lists (one per pagemap batch): what ``imgtool x DIR rss`` writes."""
    for task in _tasks(dump):
        walk = _RssWalk(dump, list(task.mm.vmas) if task.mm is not None else [])
        yield ["%d" % task.pid]
        for vaddrs, pages, _flags in pagemap_batches(dump, task.pid):
            yield walk.lines(vaddrs, pages)


def rss(dump: Dump) -> Iterator[str]:
    for batch in rss_batches(dump):
        yield from batch


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
BATCHED = {"rss": rss_batches}   # the same lines in lists, for writing in bulk
