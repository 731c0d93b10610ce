"""What each image kind holds: its message types and extra payloads."""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import Message

from imgtool.format import magic
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
    entry: EntrySpec       # every entry...
    first: EntrySpec | None = None  # ...except the first one, when it differs (pagemap, ghost)

    def spec(self, index: int) -> EntrySpec:
        return self.first if index == 0 and self.first is not None else self.entry

    @property
    def has_extras(self) -> bool:
        return self.entry.extra is not None or (self.first is not None and self.first.extra is not None)


def _plain(message: str, extra: Extra | None = None) -> EntrySpec:
    return EntrySpec(message, extra)


_MESSAGES = {
    "INVENTORY": "inventory_entry", "PSTREE": "pstree_entry", "FDINFO": "fdinfo_entry",
    "CORE": "core_entry", "IDS": "task_kobj_ids_entry", "VMAS": "vma_entry",
    "PIPES": "pipe_entry", "FIFO": "fifo_entry", "SIGACT": "sa_entry",
    "UNIXSK": "unix_sk_entry", "INETSK": "inet_sk_entry", "PACKETSK": "packet_sock_entry",
    "ITIMERS": "itimer_entry", "POSIX_TIMERS": "posix_timer_entry", "UTSNS": "utsns_entry",
    "CREDS": "creds_entry", "IPC_VAR": "ipc_var_entry", "REG_FILES": "reg_file_entry",
    "EXT_FILES": "ext_file_entry", "FS": "fs_entry", "MM": "mm_entry",
    "REMAP_FPATH": "remap_file_path_entry", "EVENTFD_FILE": "eventfd_file_entry",
    "EVENTPOLL_FILE": "eventpoll_file_entry", "EVENTPOLL_TFD": "eventpoll_tfd_entry",
    "SIGNALFD": "signalfd_entry", "INOTIFY_FILE": "inotify_file_entry",
    "INOTIFY_WD": "inotify_wd_entry", "MNTS": "mnt_entry", "NETDEV": "net_device_entry",
    "NETNS": "netns_entry", "TTY_FILES": "tty_file_entry", "TTY_INFO": "tty_info_entry",
    "TTY_DATA": "tty_data_entry", "FILE_LOCKS": "file_lock_entry", "RLIMIT": "rlimit_entry",
    "FANOTIFY_FILE": "fanotify_file_entry", "FANOTIFY_MARK": "fanotify_mark_entry",
    "SIGNAL": "siginfo_entry", "NETLINK_SK": "netlink_sk_entry", "NS_FILES": "ns_file_entry",
    "TUNFILE": "tunfile_entry", "CGROUP": "cgroup_entry", "TIMERFD": "timerfd_entry",
    "CPUINFO": "cpuinfo_entry", "USERNS": "userns_entry", "SECCOMP": "seccomp_entry",
    "BINFMT_MISC": "binfmt_misc_entry", "AUTOFS": "autofs_entry", "FILES": "file_entry",
    "MEMFD_INODE": "memfd_inode_entry", "TIMENS": "timens_entry", "PIDNS": "pidns_entry",
    "BPFMAP_FILE": "bpfmap_file_entry", "APPARMOR": "apparmor_entry", "PIDFD": "pidfd_entry",
    "STATS": "stats_entry", "IRMAP_CACHE": "irmap_cache_entry",
}

KINDS: dict[str, ImageKind] = {name: ImageKind(name, _plain(msg)) for name, msg in _MESSAGES.items()}
KINDS.update({
    "PAGEMAP": ImageKind("PAGEMAP", _plain("pagemap_entry"), first=_plain("pagemap_head")),
    "GHOST_FILE": ImageKind("GHOST_FILE", _plain("ghost_chunk_entry", Sized("len")),
                            first=_plain("ghost_file_entry", GhostContent())),
    "PIPES_DATA": ImageKind("PIPES_DATA", _plain("pipe_data_entry", Sized("bytes"))),
    "FIFO_DATA": ImageKind("FIFO_DATA", _plain("pipe_data_entry", Sized("bytes"))),
    "SK_QUEUES": ImageKind("SK_QUEUES", _plain("sk_packet_entry", Sized("length"))),
    "TCP_STREAM": ImageKind("TCP_STREAM", _plain("tcp_stream_entry", TcpStream())),
    "BPFMAP_DATA": ImageKind("BPFMAP_DATA", _plain("bpfmap_data_entry", Sized("keys_bytes", "values_bytes"))),
    "IPCNS_SEM": ImageKind("IPCNS_SEM", _plain("ipc_sem_entry", SemArray())),
    "IPCNS_MSG": ImageKind("IPCNS_MSG", _plain("ipc_msg_entry", MsgQueue())),
    "IPCNS_SHM": ImageKind("IPCNS_SHM", _plain("ipc_shm_entry", ShmSegment())),
})
assert KINDS.keys() == magic.BY_NAME.keys(), KINDS.keys() ^ magic.BY_NAME.keys()
