"""Raw payloads that CRIU writes after some entries ("extras").

Each codec knows, from the entry's decoded message, how many bytes follow it
(``length``), what they hold (``parts``: bytes, numbers, messages), how to lay
such parts out again (``build``) and the payload size crit's ``--nopl`` shows.
Layouts follow CRIU's C writers; references are to criu/*.c at v4.2.  Their
JSON form is crit's business (imgtool.crit.payloads).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from imgtool.errors import EncodeError, ExtraError, ExtraTruncated
from imgtool.format.pb import message_class

if TYPE_CHECKING:
    from construct import Construct


def human_size(n: float) -> str:
    """crit's --nopl size text ("4KB", "1.5MB")."""
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"]:
        if n < 1024.0:
            return f"{int(n)}{unit}B" if int(n) == n else f"{n:.1f}{unit}B"
        n /= 1024.0
    return f"{n:.1f}YB"


def pack_size(size: int, byteorder: str = "<") -> bytes:
    """A u32 size prefix, as CRIU writes before each message."""
    return struct.pack(byteorder + "I", size)


def padded(data: bytes, align: int) -> bytes:
    """``data`` zero-padded to a multiple of ``align`` bytes."""
    return data + b"\0" * (-len(data) % align)


def _round_up(n: int, align: int) -> int:
    return n + (-n % align)


class Extra:
    """Base: a blob of ``length`` bytes."""

    def length(self, msg: Any, rest: memoryview, order: str) -> int | None:
        """Bytes that belong to this entry at the start of ``rest``; None: no extra."""
        raise NotImplementedError

    def parts(self, msg: Any, blob: memoryview, order: str) -> Any:
        """What the payload holds."""
        return bytes(blob)

    def build(self, msg: Any, parts: Any, order: str) -> bytes:
        """The payload bytes for ``parts`` (as ``parts`` returns them)."""
        return bytes(parts)

    def payload_size(self, msg: Any, blob: memoryview, order: str) -> int:
        """The size crit's --nopl reports."""
        return len(blob)


class Sized(Extra):
    """``msg.<field>`` raw bytes: pipe/fifo data (pipes.c), socket queues (sk-queue.c)."""

    def __init__(self, *fields: str) -> None:
        self.fields = fields

    def length(self, msg: Any, rest: memoryview, order: str) -> int:
        return sum(getattr(msg, f) for f in self.fields)


class TcpStream(Sized):
    """inq_len bytes of the receive queue, then outq_len bytes of the send queue."""

    def __init__(self) -> None:
        super().__init__("inq_len", "outq_len")

    def parts(self, msg: Any, blob: memoryview, order: str) -> dict[str, bytes]:
        return {"inq": bytes(blob[:msg.inq_len]), "outq": bytes(blob[msg.inq_len:])}

    def build(self, msg: Any, parts: dict[str, bytes], order: str) -> bytes:
        return parts["inq"] + parts["outq"]


class GhostContent(Extra):
    """A ghost file's content when not chunked: everything to the end of the file."""

    def length(self, msg: Any, rest: memoryview, order: str) -> int | None:
        return None if msg.chunks else len(rest)


def _u16_array(count: int, order: str) -> Construct:
    """count u16 values in ``order`` (construct is imported here, on first use: few dumps have semaphores)."""
    from construct import Array, Int16ub, Int16ul

    return Array(count, Int16ul if order == "<" else Int16ub)


class SemArray(Extra):
    """nsems u16 values, zero-padded to 8 bytes (ipc_ns.c)."""

    def length(self, msg: Any, rest: memoryview, order: str) -> int:
        return _round_up(2 * msg.nsems, 8)

    def parts(self, msg: Any, blob: memoryview, order: str) -> list[int]:
        return list(_u16_array(msg.nsems, order).parse(bytes(blob[:2 * msg.nsems])))

    def build(self, msg: Any, parts: list[int], order: str) -> bytes:
        if len(parts) != msg.nsems:
            raise EncodeError(f"ipcns-sem extra: expected a list of {msg.nsems} numbers")
        try:
            return padded(_u16_array(msg.nsems, order).build(parts), 8)
        except Exception as exc:  # construct reports range errors in its own types
            raise EncodeError(f"ipcns-sem extra: {exc}") from None

    def payload_size(self, msg: Any, blob: memoryview, order: str) -> int:
        return 2 * msg.nsems


class MsgQueue(Extra):
    """qnum × [u32 size, ipc_msg, mtext padded to 8] (ipc_ns.c)."""

    def _walk(self, msg: Any, data: memoryview, order: str):
        ipc_msg = message_class("ipc_msg")
        size_of = struct.Struct(order + "I")
        pos = 0
        for i in range(msg.qnum):
            if len(data) - pos < 4:
                raise ExtraTruncated(f"message {i} of {msg.qnum}: no room for its size prefix")
            (size,) = size_of.unpack_from(data, pos)
            if size > len(data) - pos - 4:
                raise ExtraTruncated(f"message {i}: size prefix says {size} bytes, {len(data) - pos - 4} left")
            try:
                head = ipc_msg.FromString(bytes(data[pos + 4:pos + 4 + size]))
            except DecodeError as exc:
                raise ExtraError(f"message {i}: not an ipc_msg ({exc})") from None
            start = pos + 4 + size
            pos = start + _round_up(head.msize, 8)
            if pos > len(data):
                raise ExtraTruncated(f"message {i}: text of {head.msize} bytes runs past the end")
            yield size, head, data[start:start + head.msize]

    def length(self, msg: Any, rest: memoryview, order: str) -> int:
        total = 0
        for size, head, _ in self._walk(msg, rest, order):
            total += 4 + size + _round_up(head.msize, 8)
        return total

    def parts(self, msg: Any, blob: memoryview, order: str) -> list[Any]:
        """[ipc_msg, text, ipc_msg, text, ...]"""
        out: list[Any] = []
        for _, head, text in self._walk(msg, blob, order):
            out += [head, bytes(text)]
        return out

    def build(self, msg: Any, parts: list[Any], order: str) -> bytes:
        out = []
        for head, text in zip(parts[::2], parts[1::2], strict=True):
            body = head.SerializeToString()
            out += [pack_size(len(body), order), body, padded(text[:head.msize], 8)]
        return b"".join(out)

    def payload_size(self, msg: Any, blob: memoryview, order: str) -> int:
        return sum(size + head.msize for size, head, _ in self._walk(msg, blob, order))


class ShmSegment(Extra):
    """Legacy SysV shm contents, ``size`` bytes padded to 4 (ipc_ns.c).

    CRIU has written ``in_pagemaps = true`` and no inline data since 2017
    (commit 9d2e1dfeb); the contents then live in pagemap-shmem-<shmid>.img.
    crit 4.2 always reads ``size`` bytes here and so misparses such images.
    """

    def length(self, msg: Any, rest: memoryview, order: str) -> int | None:
        return None if msg.in_pagemaps else _round_up(msg.size, 4)

    def parts(self, msg: Any, blob: memoryview, order: str) -> bytes:
        return bytes(blob[:msg.size])

    def build(self, msg: Any, parts: bytes, order: str) -> bytes:
        return padded(parts[:msg.size], 4)

    def payload_size(self, msg: Any, blob: memoryview, order: str) -> int:
        return msg.size
