"""Every image kind in one table: its magic number, its messages and its extra payloads.

A new kind is one line here (plus its .proto); only a new payload layout adds a codec to extras.py.
"""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import Message

from imgtool.format.extras import Extra, GhostContent, MsgQueue, SemArray, ShmSegment, Sized, TcpStream
from imgtool.format.pb import message_class


class EntrySpec(NamedTuple):
    message_name: str
    extra: Extra | None = None

    @property
    def message(self) -> type[Message]:
        """The generated class (its module is imported on first use)."""
        return message_class(self.message_name)


class ImageKind(NamedTuple):
    name: str              # magic name as crit prints it
    magic: int             # its magic number
    entry: EntrySpec       # every entry...
    first: EntrySpec | None = None  # ...except the first one, when it differs (pagemap, ghost)

    def spec(self, index: int) -> EntrySpec:
        return self.first if index == 0 and self.first is not None else self.entry

    @property
    def has_extras(self) -> bool:
        return self.entry.extra is not None or (self.first is not None and self.first.extra is not None)


def _plain(message: str, extra: Extra | None = None) -> EntrySpec:
    return EntrySpec(message, extra)


# Each kind: its magic number (criu/include/magic.h, named as crit prints it) and its entries' message.
_PLAIN = {
    "INVENTORY": (0x58313116, "inventory_entry"),
    "PSTREE": (0x50273030, "pstree_entry"),
    "FDINFO": (0x56213732, "fdinfo_entry"),
    "CORE": (0x55053847, "core_entry"),
    "IDS": (0x54432030, "task_kobj_ids_entry"),
    "VMAS": (0x54123737, "vma_entry"),
    "PIPES": (0x56513555, "pipe_entry"),
    "FIFO": (0x58364939, "fifo_entry"),
    "SIGACT": (0x55344201, "sa_entry"),
    "UNIXSK": (0x54373943, "unix_sk_entry"),
    "INETSK": (0x56443851, "inet_sk_entry"),
    "PACKETSK": (0x60454618, "packet_sock_entry"),
    "ITIMERS": (0x57464056, "itimer_entry"),
    "POSIX_TIMERS": (0x52603957, "posix_timer_entry"),
    "UTSNS": (0x54473203, "utsns_entry"),
    "CREDS": (0x54023547, "creds_entry"),
    "IPC_VAR": (0x53115007, "ipc_var_entry"),
    "REG_FILES": (0x50363636, "reg_file_entry"),
    "EXT_FILES": (0x59255641, "ext_file_entry"),
    "FS": (0x51403912, "fs_entry"),
    "MM": (0x57492820, "mm_entry"),
    "REMAP_FPATH": (0x59133954, "remap_file_path_entry"),
    "EVENTFD_FILE": (0x44523722, "eventfd_file_entry"),
    "EVENTPOLL_FILE": (0x45023858, "eventpoll_file_entry"),
    "EVENTPOLL_TFD": (0x44433746, "eventpoll_tfd_entry"),
    "SIGNALFD": (0x57323820, "signalfd_entry"),
    "INOTIFY_FILE": (0x48424431, "inotify_file_entry"),
    "INOTIFY_WD": (0x54562009, "inotify_wd_entry"),
    "MNTS": (0x55563928, "mnt_entry"),
    "NETDEV": (0x57373951, "net_device_entry"),
    "NETNS": (0x55933752, "netns_entry"),
    "TTY_FILES": (0x59433025, "tty_file_entry"),
    "TTY_INFO": (0x59453036, "tty_info_entry"),
    "TTY_DATA": (0x59413026, "tty_data_entry"),
    "FILE_LOCKS": (0x54323616, "file_lock_entry"),
    "RLIMIT": (0x57113925, "rlimit_entry"),
    "FANOTIFY_FILE": (0x55096122, "fanotify_file_entry"),
    "FANOTIFY_MARK": (0x56506035, "fanotify_mark_entry"),
    "SIGNAL": (0x59255647, "siginfo_entry"),
    "NETLINK_SK": (0x58005614, "netlink_sk_entry"),
    "NS_FILES": (0x61394011, "ns_file_entry"),
    "TUNFILE": (0x57143751, "tunfile_entry"),
    "CGROUP": (0x59383330, "cgroup_entry"),
    "TIMERFD": (0x50493712, "timerfd_entry"),
    "CPUINFO": (0x61404013, "cpuinfo_entry"),
    "USERNS": (0x55474906, "userns_entry"),
    "SECCOMP": (0x64413049, "seccomp_entry"),
    "BINFMT_MISC": (0x67343323, "binfmt_misc_entry"),
    "AUTOFS": (0x49353943, "autofs_entry"),
    "FILES": (0x56303138, "file_entry"),
    "MEMFD_INODE": (0x48453499, "memfd_inode_entry"),
    "TIMENS": (0x43114433, "timens_entry"),
    "PIDNS": (0x61157326, "pidns_entry"),
    "BPFMAP_FILE": (0x57506142, "bpfmap_file_entry"),
    "APPARMOR": (0x59423047, "apparmor_entry"),
    "PIDFD": (0x54435556, "pidfd_entry"),
    "STATS": (0x57093306, "stats_entry"),
    "IRMAP_CACHE": (0x57004059, "irmap_cache_entry"),
}

KINDS: dict[str, ImageKind] = {name: ImageKind(name, number, _plain(msg)) for name, (number, msg) in _PLAIN.items()}
KINDS.update({
    "PAGEMAP": ImageKind("PAGEMAP", 0x56084025, _plain("pagemap_entry"), first=_plain("pagemap_head")),
    "GHOST_FILE": ImageKind("GHOST_FILE", 0x52583605, _plain("ghost_chunk_entry", Sized("len")),
                            first=_plain("ghost_file_entry", GhostContent())),
    "PIPES_DATA": ImageKind("PIPES_DATA", 0x56453709, _plain("pipe_data_entry", Sized("bytes"))),
    "FIFO_DATA": ImageKind("FIFO_DATA", 0x59333054, _plain("pipe_data_entry", Sized("bytes"))),
    "SK_QUEUES": ImageKind("SK_QUEUES", 0x56264026, _plain("sk_packet_entry", Sized("length"))),
    "TCP_STREAM": ImageKind("TCP_STREAM", 0x51465506, _plain("tcp_stream_entry", TcpStream())),
    "BPFMAP_DATA": ImageKind("BPFMAP_DATA", 0x64324033,
                             _plain("bpfmap_data_entry", Sized("keys_bytes", "values_bytes"))),
    "IPCNS_SEM": ImageKind("IPCNS_SEM", 0x59573019, _plain("ipc_sem_entry", SemArray())),
    "IPCNS_MSG": ImageKind("IPCNS_MSG", 0x55453737, _plain("ipc_msg_entry", MsgQueue())),
    "IPCNS_SHM": ImageKind("IPCNS_SHM", 0x46283044, _plain("ipc_shm_entry", ShmSegment())),
})
BY_NAME: dict[str, int] = {name: kind.magic for name, kind in KINDS.items()}
BY_VALUE: dict[int, str] = {number: name for name, number in BY_NAME.items()}
assert len(BY_VALUE) == len(BY_NAME), "two kinds share a magic number"
