"""Open files of a checkpoint: fdinfo-N.img + files.img resolved to what each fd is.

Every fd of a task is an ``fdinfo_entry`` (fd number, type, file id) in
``fdinfo-<files_id>.img``; the id leads to a ``file_entry`` in files.img
(one union per kind since CRIU 3.x; older dumps keep per-kind images, read
here as a fallback).  Queued data lives in separate images: pipes-data and
fifo-data (by pipe_id), sk-queues (by receiving socket id), tcp-stream-<ino>
(by inode, hex), ghost-file-<remap id> (unlinked files, via remap-fpath).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from google.protobuf.message import Message

from imgtool.format.fields import dev_text, ip_text, plain_dict
from imgtool.format.flags import FLAG_TABLES, LABELS, format_flags
from imgtool.format.image import Image


class Images(Protocol):
    """What the file table reads of a dump (model.Dump): decoded entries and images by name."""

    def entries(self, name: str) -> list[Message]: ...

    def image(self, name: str) -> Image | None: ...

PREVIEW = 64  # bytes of queued data shown in summaries

# file_entry field per fd type, and the legacy image that held it before files.img.
KIND_FIELDS = {
    "REG": ("reg", "reg-files"), "PIPE": ("pipe", "pipes"), "FIFO": ("fifo", "fifo"),
    "INETSK": ("isk", "inetsk"), "UNIXSK": ("usk", "unixsk"), "EVENTFD": ("efd", "eventfd"),
    "EVENTPOLL": ("epfd", "eventpoll"), "INOTIFY": ("ify", "inotify"), "SIGNALFD": ("sgfd", "signalfd"),
    "PACKETSK": ("psk", "packetsk"), "TTY": ("tty", "tty"), "FANOTIFY": ("ffy", "fanotify"),
    "NETLINKSK": ("nlsk", "netlinksk"), "NS": ("nsf", "ns-files"), "TUNF": ("tunf", "tunfile"),
    "EXT": ("ext", "ext-files"), "TIMERFD": ("tfd", "timerfd"), "MEMFD": ("memfd", None),
    "BPFMAP": ("bpf", "bpfmap-file"), "PIDFD": ("pidfd", None),
}

SIGNALS = ["HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
           "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
           "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS"]
EPOLL_EVENTS = [("EPOLLIN", 0x1), ("EPOLLPRI", 0x2), ("EPOLLOUT", 0x4), ("EPOLLERR", 0x8), ("EPOLLHUP", 0x10),
                ("EPOLLRDHUP", 0x2000), ("EPOLLEXCLUSIVE", 1 << 28), ("EPOLLWAKEUP", 1 << 29),
                ("EPOLLONESHOT", 1 << 30), ("EPOLLET", 1 << 31)]
INOTIFY_EVENTS = [("IN_ACCESS", 0x1), ("IN_MODIFY", 0x2), ("IN_ATTRIB", 0x4), ("IN_CLOSE_WRITE", 0x8),
                  ("IN_CLOSE_NOWRITE", 0x10), ("IN_OPEN", 0x20), ("IN_MOVED_FROM", 0x40), ("IN_MOVED_TO", 0x80),
                  ("IN_CREATE", 0x100), ("IN_DELETE", 0x200), ("IN_DELETE_SELF", 0x400), ("IN_MOVE_SELF", 0x800),
                  ("IN_ONLYDIR", 0x1000000), ("IN_DONT_FOLLOW", 0x2000000), ("IN_EXCL_UNLINK", 0x4000000),
                  ("IN_MASK_ADD", 0x20000000), ("IN_ISDIR", 0x40000000), ("IN_ONESHOT", 0x80000000)]
CLOCKS = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 7: "CLOCK_BOOTTIME", 8: "CLOCK_REALTIME_ALARM",
          9: "CLOCK_BOOTTIME_ALARM"}
REMAP_TYPES = {0: "linked", 1: "ghost", 2: "procfs"}


def signal_names(mask: int) -> list[str]:
    return [f"SIG{name}" for bit, name in enumerate(SIGNALS) if mask >> bit & 1] + \
        [f"SIGRT{bit - 32}" for bit in range(32, 64) if mask >> bit & 1]


def open_flags(flags: int) -> str:
    access = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[flags & 3]
    rest = format_flags(flags & ~3, FLAG_TABLES["rfile.flags"])
    return access + (" | " + rest if rest else "")


def text_preview(data: bytes, limit: int = PREVIEW) -> str:
    shown = data[:limit].decode("ascii", "backslashreplace").encode("unicode_escape").decode()
    return shown + ("..." if len(data) > limit else "")


@dataclass
class OpenFile:
    """One open file description (shared by every fd that refers to it)."""

    id: int
    kind: str                 # fd type name from CRIU: REG, PIPE, UNIXSK, ...
    summary: str              # one line for people
    details: dict[str, Any] = field(default_factory=dict)  # JSON-ready specifics
    queued: bytes | None = None   # data waiting in a pipe/fifo/socket queue
    entry: Message | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "kind": self.kind, "summary": self.summary, **self.details}
        if self.queued is not None:
            out["queued_bytes"] = len(self.queued)
            out["queued_hex"] = self.queued.hex()
        return out


@dataclass
class Fd:
    fd: int
    flags: int                # fd flags (FD_CLOEXEC)
    file: OpenFile

    def to_json(self) -> dict[str, Any]:
        return {"fd": self.fd, "cloexec": bool(self.flags & 1), **self.file.to_json()}


class FileTable:
    """files.img (and legacy per-kind images) of a dump, resolved lazily per id."""

    def __init__(self, dump: Images) -> None:
        self.dump = dump
        self._cache: dict[tuple[str, int], OpenFile] = {}

    @cached_property
    def _entries(self) -> dict[int, Message]:
        return {e.id: e for e in self.dump.entries("files")}

    def _legacy(self, image: str | None) -> dict[int, Message]:
        return {e.id: e for e in self.dump.entries(image)} if image else {}

    def payload(self, kind: str, file_id: int) -> Message | None:
        """The kind-specific message (reg_file_entry, pipe_entry...) of a file id."""
        name, legacy = KIND_FIELDS.get(kind, (None, None))
        entry = self._entries.get(file_id)
        if entry is not None and name and entry.HasField(name):
            return getattr(entry, name)
        return self._legacy(legacy).get(file_id)

    def get(self, kind: str, file_id: int) -> OpenFile:
        key = (kind, file_id)
        if key not in self._cache:
            self._cache[key] = self._describe(kind, file_id)
        return self._cache[key]

    def path(self, file_id: int) -> str | None:
        reg = self.payload("REG", file_id)
        return reg.name if reg is not None else None

    # -- per kind --------------------------------------------------------------

    def _describe(self, kind: str, file_id: int) -> OpenFile:
        msg = self.payload(kind, file_id)
        if msg is None:
            return OpenFile(file_id, kind, f"{kind.lower()} #{file_id} (not in files.img)")
        describe = getattr(self, f"_{kind.lower()}", None)
        found = describe(file_id, msg) if describe else OpenFile(file_id, kind, f"{kind.lower()} #{file_id}",
                                                                  plain_dict(msg))
        found.entry = msg
        return found

    def _reg(self, file_id: int, msg: Message) -> OpenFile:
        details: dict[str, Any] = {"path": msg.name, "flags": open_flags(msg.flags), "pos": msg.pos}
        if msg.HasField("size"):
            details["size"] = msg.size
        if msg.HasField("mode"):
            details["mode"] = stat.filemode(msg.mode)
        if msg.build_id:
            details["build_id"] = b"".join(w.to_bytes(4, "little") for w in msg.build_id).hex()
        summary = f"{msg.name}  {details['flags']}  pos {msg.pos}"
        remap = self._remap(file_id)
        if remap is not None:
            details["remap"] = remap
            summary += f"  ({remap['type']}: {remap.get('note', '')})".replace(": )", ")")
        return OpenFile(file_id, "REG", summary, details)

    def _remap(self, file_id: int) -> dict[str, Any] | None:
        for remap in self.dump.entries("remap-fpath"):
            if remap.orig_id != file_id:
                continue
            kind = REMAP_TYPES.get(remap.remap_type, str(remap.remap_type))
            found: dict[str, Any] = {"type": kind, "remap_id": remap.remap_id}
            if kind == "ghost":
                found.update(self._ghost(remap.remap_id))
            return found
        return None

    def _ghost(self, remap_id: int) -> dict[str, Any]:
        image = self.dump.image(f"ghost-file-{remap_id}")
        if image is None:
            return {"note": f"deleted, ghost-file-{remap_id}.img missing"}
        entries = list(image.entries())
        content = b"".join(bytes(e.extra) for e in entries if e.extra is not None)
        return {"note": f"deleted, {len(content)} bytes kept in ghost-file-{remap_id}.img",
                "ghost_bytes": len(content), "ghost_preview": text_preview(content)}

    def _queued(self, image: str, key: str, value: int) -> bytes:
        found = self.dump.image(image)
        if found is None:
            return b""
        return b"".join(bytes(e.extra) for e in found.entries()
                        if getattr(e.message, key) == value and e.extra is not None)

    def _pipe(self, file_id: int, msg: Message) -> OpenFile:
        data = self._queued("pipes-data", "pipe_id", msg.pipe_id)
        return OpenFile(file_id, "PIPE", f"pipe[{msg.pipe_id}]" + _queued_note(data),
                        {"pipe_id": msg.pipe_id}, data)

    def _fifo(self, file_id: int, msg: Message) -> OpenFile:
        data = self._queued("fifo-data", "pipe_id", msg.pipe_id)
        path = self.path(msg.regf_id) if msg.HasField("regf_id") else None
        return OpenFile(file_id, "FIFO", f"fifo {path or '?'} [{msg.pipe_id}]" + _queued_note(data),
                        {"pipe_id": msg.pipe_id, "path": path}, data)

    def _unixsk(self, file_id: int, msg: Message) -> OpenFile:
        data = self._queued("sk-queues", "id_for", file_id)
        name = msg.name.decode("utf-8", "backslashreplace").replace("\0", "@") if msg.name else ""
        sk = LABELS["sk"]
        details = {"ino": msg.ino, "peer": msg.peer, "type": sk["type"].get(msg.type, msg.type),
                   "state": sk["state"].get(msg.state, msg.state), "name": name}
        summary = f"unix {details['type']} {details['state']} ino {msg.ino} peer {msg.peer}"
        return OpenFile(file_id, "UNIXSK", summary + (f" {name}" if name else "") + _queued_note(data),
                        details, data)

    def _inetsk(self, file_id: int, msg: Message) -> OpenFile:
        sk = LABELS["sk"]
        src = f"{_address(msg.src_addr)}:{msg.src_port}"
        dst = f"{_address(msg.dst_addr)}:{msg.dst_port}"
        family = sk["family"].get(msg.family, str(msg.family))
        state = sk["state"].get(msg.state, str(msg.state))
        proto = sk["proto"].get(msg.proto, str(msg.proto))   # raw and ICMP sockets: shown by number
        details = {"family": family, "proto": proto, "state": state, "src": src, "dst": dst, "ino": msg.ino}
        data, queues = self._tcp_queues(msg.ino)
        if queues:
            details.update(queues)
        summary = f"{family.lower()} {proto.lower()} {state} {src} -> {dst}"
        if queues:
            summary += f"  recv queue {queues['recv_queue_bytes']} B, send queue {queues['send_queue_bytes']} B"
        return OpenFile(file_id, "INETSK", summary, details, data or None)

    def _tcp_queues(self, ino: int) -> tuple[bytes, dict[str, int]]:
        image = self.dump.image(f"tcp-stream-{ino:x}")
        if image is None:
            return b"", {}
        entry = next(image.entries())
        extra = bytes(entry.extra or b"")
        msg = entry.message
        return extra, {"recv_queue_bytes": msg.inq_len, "send_queue_bytes": msg.outq_len}

    def _eventfd(self, file_id: int, msg: Message) -> OpenFile:
        return OpenFile(file_id, "EVENTFD", f"eventfd counter {msg.counter}", {"counter": msg.counter,
                        "flags": open_flags(msg.flags)})

    def _signalfd(self, file_id: int, msg: Message) -> OpenFile:
        names = signal_names(msg.sigmask)
        return OpenFile(file_id, "SIGNALFD", "signalfd " + "|".join(names), {"signals": names})

    def _timerfd(self, file_id: int, msg: Message) -> OpenFile:
        clock = CLOCKS.get(msg.clockid, str(msg.clockid))
        value, interval = msg.vsec + msg.vnsec / 1e9, msg.isec + msg.insec / 1e9
        return OpenFile(file_id, "TIMERFD", f"timerfd {clock} value {value:g}s interval {interval:g}s",
                        {"clock": clock, "value_s": value, "interval_s": interval, "ticks": msg.ticks})

    def _eventpoll(self, file_id: int, msg: Message) -> OpenFile:
        targets = [{"fd": t.tfd, "events": format_flags(t.events, EPOLL_EVENTS), "data": t.data}
                   for t in msg.tfd]
        shown = ", ".join(f"{t['fd']} ({t['events']})" for t in targets)
        return OpenFile(file_id, "EVENTPOLL", f"epoll watching {shown or 'nothing'}", {"targets": targets})

    def _inotify(self, file_id: int, msg: Message) -> OpenFile:
        watches = [{"wd": w.wd, "inode": w.i_ino, "mask": format_flags(w.mask, INOTIFY_EVENTS),
                    "dev": dev_text(w.s_dev)} for w in msg.wd]
        shown = ", ".join(f"inode {w['inode']} ({w['mask']})" for w in watches)
        return OpenFile(file_id, "INOTIFY", f"inotify {shown or 'no watches'}", {"watches": watches})

    def _memfd(self, file_id: int, msg: Message) -> OpenFile:
        inode = next((i for i in self.dump.entries("memfd") if i.inode_id == msg.inode_id), None)
        details: dict[str, Any] = {"pos": msg.pos, "flags": open_flags(msg.flags), "inode_id": msg.inode_id}
        summary = f"memfd #{msg.inode_id} pos {msg.pos}"
        if inode is not None:
            seals = format_flags(inode.seals, FLAG_TABLES["seals.flags"])
            details.update(name=inode.name, size=inode.size, shmid=inode.shmid, seals=seals)
            summary = f"memfd:{inode.name} size {inode.size} pos {msg.pos}" + (f" seals {seals}" if seals else "")
        return OpenFile(file_id, "MEMFD", summary, details)


def _address(words: list[int]) -> str:
    return str(ip_text(list(words))[0]) if words else "?"


def _queued_note(data: bytes) -> str:
    return f"  {len(data)} bytes queued: {text_preview(data, 24)}" if data else ""
