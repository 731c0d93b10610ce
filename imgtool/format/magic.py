"""CRIU magic numbers (criu/include/magic.h) and the image kinds they name."""

from __future__ import annotations

import re

IMG_COMMON = 0x54564319
IMG_SERVICE = 0x55105940
KDAT = 0x57023458  # /run/criu.kdat cache, not an image

# Per-image magics; names are magic.h's without the _MAGIC suffix, as crit prints them.
BY_NAME: dict[str, int] = {
    "INVENTORY": 0x58313116, "PSTREE": 0x50273030, "FDINFO": 0x56213732,
    "PAGEMAP": 0x56084025, "CORE": 0x55053847, "IDS": 0x54432030, "VMAS": 0x54123737,
    "PIPES": 0x56513555, "PIPES_DATA": 0x56453709, "FIFO": 0x58364939,
    "FIFO_DATA": 0x59333054, "SIGACT": 0x55344201, "UNIXSK": 0x54373943,
    "INETSK": 0x56443851, "PACKETSK": 0x60454618, "ITIMERS": 0x57464056,
    "POSIX_TIMERS": 0x52603957, "SK_QUEUES": 0x56264026, "UTSNS": 0x54473203,
    "CREDS": 0x54023547, "IPC_VAR": 0x53115007, "IPCNS_SHM": 0x46283044,
    "IPCNS_MSG": 0x55453737, "IPCNS_SEM": 0x59573019, "REG_FILES": 0x50363636,
    "EXT_FILES": 0x59255641, "FS": 0x51403912, "MM": 0x57492820,
    "REMAP_FPATH": 0x59133954, "GHOST_FILE": 0x52583605, "TCP_STREAM": 0x51465506,
    "EVENTFD_FILE": 0x44523722, "EVENTPOLL_FILE": 0x45023858,
    "EVENTPOLL_TFD": 0x44433746, "SIGNALFD": 0x57323820, "INOTIFY_FILE": 0x48424431,
    "INOTIFY_WD": 0x54562009, "MNTS": 0x55563928, "NETDEV": 0x57373951,
    "NETNS": 0x55933752, "TTY_FILES": 0x59433025, "TTY_INFO": 0x59453036,
    "TTY_DATA": 0x59413026, "FILE_LOCKS": 0x54323616, "RLIMIT": 0x57113925,
    "FANOTIFY_FILE": 0x55096122, "FANOTIFY_MARK": 0x56506035, "SIGNAL": 0x59255647,
    "NETLINK_SK": 0x58005614, "NS_FILES": 0x61394011, "TUNFILE": 0x57143751,
    "CGROUP": 0x59383330, "TIMERFD": 0x50493712, "CPUINFO": 0x61404013,
    "USERNS": 0x55474906, "SECCOMP": 0x64413049, "BINFMT_MISC": 0x67343323,
    "AUTOFS": 0x49353943, "FILES": 0x56303138, "MEMFD_INODE": 0x48453499,
    "TIMENS": 0x43114433, "PIDNS": 0x61157326, "BPFMAP_FILE": 0x57506142,
    "BPFMAP_DATA": 0x64324033, "APPARMOR": 0x59423047, "PIDFD": 0x54435556,
    "STATS": 0x57093306, "IRMAP_CACHE": 0x57004059,
}
BY_VALUE: dict[int, str] = {v: k for k, v in BY_NAME.items()}

# Written after IMG_SERVICE instead of IMG_COMMON (O_SERVICE in image-desc.c).
SERVICE_KINDS = frozenset({"STATS", "IRMAP_CACHE"})
# Written with no common prefix at all.
BARE_KINDS = frozenset({"INVENTORY"})

# Images CRIU writes with RAW_IMAGE_MAGIC (no magic at all): recognised by name.
_RAW_PATTERNS = [
    ("pages", r"pages-\d+\.img"),
    ("ifaddr", r"ifaddr-\d+\.img"),
    ("route", r"route6?-\d+\.img"),
    ("rule", r"rule-\d+\.img"),
    ("iptables", r"ip6?tables-\d+\.img"),
    ("nftables", r"nftables-\d+\.img"),
    ("tmpfs", r"tmpfs(-dev)?-\d+\.tar\.gz\.img"),
    ("netns-ct", r"netns-(ct|exp)-\d+\.img"),
]


def raw_kind(filename: str) -> str | None:
    """The raw image kind a file name denotes (``pages``, ``route``...), or None (patterns compiled on first use,
    by re's cache: reading a dump does not need them)."""
    return next((kind for kind, rx in _RAW_PATTERNS if re.fullmatch(rx, filename)), None)


def prefix_for(kind: str) -> int | None:
    """The first magic CRIU writes before the per-image one (None for inventory)."""
    if kind in BARE_KINDS:
        return None
    return IMG_SERVICE if kind in SERVICE_KINDS else IMG_COMMON


# The kind each image file name holds (criu/image-desc.c imgset_template): a dump names its images by kind.
_NAMED_KINDS = [
    ("INVENTORY", r"inventory"), ("FDINFO", r"fdinfo-\d+"), ("PAGEMAP", r"pagemap-(shmem-)?\d+"),
    ("REG_FILES", r"reg-files"), ("EXT_FILES", r"ext-files"), ("NS_FILES", r"ns-files"),
    ("EVENTFD_FILE", r"eventfd"), ("EVENTPOLL_FILE", r"eventpoll"), ("EVENTPOLL_TFD", r"eventpoll-tfd"),
    ("SIGNALFD", r"signalfd"), ("INOTIFY_FILE", r"inotify"), ("INOTIFY_WD", r"inotify-wd"),
    ("FANOTIFY_FILE", r"fanotify"), ("FANOTIFY_MARK", r"fanotify-mark"), ("CORE", r"core-\d+"),
    ("IDS", r"ids-\d+"), ("MM", r"mm-\d+"), ("VMAS", r"vmas-\d+"), ("PIPES", r"pipes"),
    ("PIPES_DATA", r"pipes-data"), ("FIFO", r"fifo"), ("FIFO_DATA", r"fifo-data"), ("PSTREE", r"pstree"),
    ("SIGACT", r"sigacts-\d+"), ("UNIXSK", r"unixsk"), ("INETSK", r"inetsk"), ("PACKETSK", r"packetsk"),
    ("NETLINK_SK", r"netlinksk"), ("SK_QUEUES", r"sk-queues"), ("ITIMERS", r"itimers-\d+"),
    ("POSIX_TIMERS", r"posix-timers-\d+"), ("CREDS", r"creds-\d+"), ("UTSNS", r"utsns-\d+"),
    ("IPC_VAR", r"ipcns-var-\d+"), ("IPCNS_SHM", r"ipcns-shm-\d+"), ("IPCNS_MSG", r"ipcns-msg-\d+"),
    ("IPCNS_SEM", r"ipcns-sem-\d+"), ("FS", r"fs-\d+"), ("REMAP_FPATH", r"remap-fpath"),
    ("GHOST_FILE", r"ghost-file-[0-9a-f]+"), ("MEMFD_INODE", r"memfd"), ("TCP_STREAM", r"tcp-stream-[0-9a-f]+"),
    ("MNTS", r"mountpoints-\d+"), ("NETDEV", r"netdev-\d+"), ("NETNS", r"netns-\d+"),
    ("BINFMT_MISC", r"binfmt-misc(-\d+)?"), ("TTY_FILES", r"tty"), ("TTY_INFO", r"tty-info"),
    ("TTY_DATA", r"tty-data"), ("FILE_LOCKS", r"filelocks"), ("RLIMIT", r"rlimit-\d+"),
    ("SIGNAL", r"signal-[sp]-\d+"), ("TUNFILE", r"tunfile"), ("CGROUP", r"cgroup"), ("TIMERFD", r"timerfd"),
    ("CPUINFO", r"cpuinfo"), ("SECCOMP", r"seccomp"), ("USERNS", r"userns-\d+"), ("FILES", r"files"),
    ("TIMENS", r"timens-\d+"), ("PIDNS", r"pidns-\d+"), ("BPFMAP_FILE", r"bpfmap-file"),
    ("BPFMAP_DATA", r"bpfmap-data"), ("APPARMOR", r"apparmor"), ("PIDFD", r"pidfd"),
    ("STATS", r"stats-\w+"), ("IRMAP_CACHE", r"irmap-cache"),
]


def kind_for_name(filename: str) -> str | None:
    """The image kind CRIU writes under this file name (``core-42.img`` -> CORE), or None for other names."""
    stem = filename[:-4] if filename.endswith(".img") else filename
    return next((kind for kind, rx in _NAMED_KINDS if re.fullmatch(rx, stem)), None)
