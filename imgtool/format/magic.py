"""CRIU's magic numbers that are not image kinds (criu/include/magic.h), the prefix each kind takes, and the
raw images CRIU writes with no magic at all. The kinds' own numbers are in imgtool.format.registry."""

from __future__ import annotations

import re

IMG_COMMON = 0x54564319
IMG_SERVICE = 0x55105940
KDAT = 0x57023458  # /run/criu.kdat cache, not an image


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
