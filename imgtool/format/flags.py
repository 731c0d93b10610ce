"""Every flag word CRIU images hold, defined once as ``IntFlag``s, and crit's pretty tables derived from them.

vma_entry.status bits are criu/include/image.h's; prot and flags are mmap(2)'s; pagemap entry flags are
criu/include/pagemap.h's. Plain-int aliases (``PE_PARENT`` ...) serve the hot loops of memory walks, where
IntFlag arithmetic would cost a Python call per operation.
"""

from __future__ import annotations

from enum import IntFlag


class Prot(IntFlag):
    READ = 0x1
    WRITE = 0x2
    EXEC = 0x4


class MapFlags(IntFlag):
    SHARED = 0x1
    PRIVATE = 0x2
    DROPPABLE = 0x08
    ANON = 0x20
    GROWSDOWN = 0x100


class VmaStatus(IntFlag):
    """vma_entry.status (criu/include/image.h)."""

    NONE = 0
    REGULAR = 1 << 0
    STACK = 1 << 1
    VSYSCALL = 1 << 2
    VDSO = 1 << 3
    HEAP = 1 << 5
    FILE_PRIVATE = 1 << 6
    FILE_SHARED = 1 << 7
    ANON_SHARED = 1 << 8
    ANON_PRIVATE = 1 << 9
    SYSVIPC = 1 << 10
    SOCKET = 1 << 11
    VVAR = 1 << 12
    AIORING = 1 << 13
    MEMFD = 1 << 14
    SHSTK = 1 << 15
    GUARD = 1 << 16
    UPROBES = 1 << 17
    EXT_PLUGIN = 1 << 27
    CLOSE = 1 << 28
    NO_PROT_WRITE = 1 << 29
    PREMMAPED = 1 << 30
    UNSUPP = 1 << 31


class PageFlags(IntFlag):
    """pagemap_entry.flags: where a run of pages is (criu/include/pagemap.h)."""

    PARENT = 1    # in the parent dump's pages
    LAZY = 2      # left for lazy-pages restore: in no pages file
    PRESENT = 4   # in this dump's pages file


class Seals(IntFlag):
    SEAL = 0x1
    SHRINK = 0x2
    GROW = 0x4
    WRITE = 0x8
    FUTURE_WRITE = 0x10


class OpenFlags(IntFlag):
    """open(2) flags above the access mode (O_RDONLY 0, O_WRONLY 1, O_RDWR 2)."""

    WRONLY = 0o1
    RDWR = 0o2
    CREAT = 0o100
    EXCL = 0o200
    NOCTTY = 0o400
    TRUNC = 0o1000
    APPEND = 0o2000
    NONBLOCK = 0o4000
    DSYNC = 0o10000
    FASYNC = 0o20000
    DIRECT = 0o40000
    LARGEFILE = 0o100000
    DIRECTORY = 0o200000
    NOFOLLOW = 0o400000
    NOATIME = 0o1000000
    CLOEXEC = 0o2000000


# Hot-loop aliases (memory walks, pagemap columns).
PROT_READ, PROT_WRITE, PROT_EXEC = int(Prot.READ), int(Prot.WRITE), int(Prot.EXEC)
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_GROWSDOWN = (int(MapFlags.SHARED), int(MapFlags.PRIVATE),
                                                         int(MapFlags.ANON), int(MapFlags.GROWSDOWN))
PE_PARENT, PE_LAZY, PE_PRESENT = int(PageFlags.PARENT), int(PageFlags.LAZY), int(PageFlags.PRESENT)
VMA_AREA_REGULAR = int(VmaStatus.REGULAR)
VMA_AREA_STACK = int(VmaStatus.STACK)
VMA_AREA_VSYSCALL = int(VmaStatus.VSYSCALL)
VMA_AREA_VDSO = int(VmaStatus.VDSO)
VMA_AREA_HEAP = int(VmaStatus.HEAP)
VMA_FILE_PRIVATE = int(VmaStatus.FILE_PRIVATE)
VMA_FILE_SHARED = int(VmaStatus.FILE_SHARED)
VMA_ANON_SHARED = int(VmaStatus.ANON_SHARED)
VMA_ANON_PRIVATE = int(VmaStatus.ANON_PRIVATE)
VMA_AREA_SYSVIPC = int(VmaStatus.SYSVIPC)
VMA_AREA_SOCKET = int(VmaStatus.SOCKET)
VMA_AREA_VVAR = int(VmaStatus.VVAR)
VMA_AREA_MEMFD = int(VmaStatus.MEMFD)


def _table(flags: type[IntFlag], prefix: str, names: dict[str, str] | None = None,
           only: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """(name, bit) pairs as crit spells them, in bit order."""
    members = [m for m in flags.__members__.values() if only is None or m.name in only]
    return [((names or {}).get(m.name, prefix + m.name), int(m)) for m in members]


# The (criu) flags tables of the schemas (crit's pb2dict.py), in crit's order and spelling.
_CRIT_STATUS = ("NONE", "REGULAR", "STACK", "VSYSCALL", "VDSO", "HEAP", "FILE_PRIVATE", "FILE_SHARED",
                "ANON_SHARED", "ANON_PRIVATE", "SYSVIPC", "SOCKET", "VVAR", "AIORING", "MEMFD", "SHSTK",
                "UPROBES", "UNSUPP")
_STATUS_NAMES = {"FILE_PRIVATE": "VMA_FILE_PRIVATE", "FILE_SHARED": "VMA_FILE_SHARED",
                 "ANON_SHARED": "VMA_ANON_SHARED", "ANON_PRIVATE": "VMA_ANON_PRIVATE", "UNSUPP": "VMA_UNSUPP",
                 "GUARD": "VMA_AREA_GUARD", "EXT_PLUGIN": "VMA_EXT_PLUGIN", "CLOSE": "VMA_CLOSE",
                 "NO_PROT_WRITE": "VMA_NO_PROT_WRITE", "PREMMAPED": "VMA_PREMMAPED"}
FLAG_TABLES: dict[str, list[tuple[str, int]]] = {
    "mmap.prot": _table(Prot, "PROT_"),
    "mmap.flags": _table(MapFlags, "MAP_"),
    "mmap.status": _table(VmaStatus, "VMA_AREA_", _STATUS_NAMES, _CRIT_STATUS),
    "rfile.flags": _table(OpenFlags, "O_", {"FASYNC": "FASYNC"}),
    "pmap.flags": _table(PageFlags, "PE_"),
    "seals.flags": _table(Seals, "F_SEAL_"),
}
_CRIT_BITS = {bit for _, bit in FLAG_TABLES["mmap.status"]}
# Every status bit CRIU defines, for people: crit's table, then the internal bits it lacks.
STATUS_NAMES = [(name, bit) for name, bit in FLAG_TABLES["mmap.status"] if bit] + [
    (name, bit) for name, bit in _table(VmaStatus, "VMA_AREA_", _STATUS_NAMES) if bit and bit not in _CRIT_BITS]

# Value labels per (criu).dict table and field name.
LABELS: dict[str, dict[str, dict[int, str]]] = {
    # compel/include/uapi/task-state.h: ALIVE 1, STOPPED 3, ZOMBIE 6 (crit 4.2 swaps 3 and 6).
    "gen": {"task_state": {1: "Alive", 3: "Stopped", 6: "Zombie"}},
    "sk": {
        "family": {1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET"},
        "type": {1: "STREAM", 2: "DGRAM", 3: "RAW", 5: "SEQPACKET", 10: "PACKET"},
        "state": {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1",
                  5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
                  9: "LAST_ACK", 10: "LISTEN"},
        "proto": {0: "IP", 6: "TCP", 17: "UDP", 136: "UDPLITE"},
    },
}


def format_flags(value: int, table: list[tuple[str, int]]) -> str:
    """``"A | B | 0x..."``: the names of the set bits, then any bits the table does not name."""
    names = [name for name, bit in table if value & bit]
    rest = value & ~sum(bit for _, bit in table)
    if rest:
        names.append("0x%x" % rest)  # noqa: UP031 -- crit's spelling, also for negative numbers ("0x-5")
    return " | ".join(names)


def status_names(status: int) -> tuple[str, ...]:
    """The names of a vma_entry.status word's bits, then any unknown bits in hex."""
    names = [name for name, bit in STATUS_NAMES if status & bit]
    rest = status & ~sum(bit for _, bit in STATUS_NAMES)
    return (*names, f"{rest:#x}") if rest else tuple(names)
