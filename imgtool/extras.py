"""Raw payloads that CRIU writes after some entries ("extras").

Each codec knows, from the entry's decoded message, how many bytes follow it
(``length``), how crit shows them in JSON (``to_json``), how to turn that JSON
back into bytes (``from_json``) and what ``--nopl`` prints instead.  Layouts
follow CRIU's C writers; references are to criu/*.c at v4.2.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from .convert import b64, from_dict, to_dict, unb64
from .errors import EncodeError
from .framing import pack_size, padded
from .pb import message_class

if TYPE_CHECKING:
    from construct import Construct


class ExtraError(ValueError):
    """An extra payload is inconsistent; the image reader adds file and offset."""


class ExtraTruncated(ExtraError):
    """The data ends before the extra payload does."""


def human_size(n: float) -> str:
    """crit's --nopl size text ("4KB", "1.5MB")."""
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"]:
        if n < 1024.0:
            return f"{int(n)}{unit}B" if int(n) == n else f"{n:.1f}{unit}B"
        n /= 1024.0
    return f"{n:.1f}YB"


def _round_up(n: int, align: int) -> int:
    return n + (-n % align)


class Extra:
    """Base: a blob of ``length`` bytes shown as base64."""

    def length(self, msg: Any, rest: memoryview, order: str) -> int | None:
        """Bytes that belong to this entry at the start of ``rest``; None: no extra."""
        raise NotImplementedError

    def to_json(self, msg: Any, blob: memoryview, order: str) -> Any:
        return b64(blob)

    def from_json(self, msg: Any, value: Any, order: str) -> bytes:
        if not isinstance(value, str):
            raise EncodeError(f"extra: expected a base64 string, got {type(value).__name__}")
        return unb64(value)

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

    def to_json(self, msg: Any, blob: memoryview, order: str) -> Any:
        return {"inq": b64(blob[:msg.inq_len]), "outq": b64(blob[msg.inq_len:])}

    def from_json(self, msg: Any, value: Any, order: str) -> bytes:
        if not isinstance(value, dict) or not {"inq", "outq"} <= value.keys():
            raise EncodeError('tcp-stream extra: expected {"inq": ..., "outq": ...}')
        return unb64(value["inq"]) + unb64(value["outq"])


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

    def to_json(self, msg: Any, blob: memoryview, order: str) -> Any:
        return list(_u16_array(msg.nsems, order).parse(bytes(blob[:2 * msg.nsems])))

    def from_json(self, msg: Any, value: Any, order: str) -> bytes:
        if not isinstance(value, list) or len(value) != msg.nsems:
            raise EncodeError(f"ipcns-sem extra: expected a list of {msg.nsems} numbers")
        try:
            return padded(_u16_array(msg.nsems, order).build(value), 8)
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

    def to_json(self, msg: Any, blob: memoryview, order: str) -> Any:
        out: list[Any] = []
        for _, head, text in self._walk(msg, blob, order):
            out += [to_dict(head), b64(text)]  # crit: headers never pretty-printed
        return out

    def from_json(self, msg: Any, value: Any, order: str) -> bytes:
        if not isinstance(value, list) or len(value) % 2:
            raise EncodeError("ipcns-msg extra: expected [header, base64 text, ...]")
        ipc_msg = message_class("ipc_msg")
        parts = []
        for head_json, text_json in zip(value[::2], value[1::2], strict=True):
            head = from_dict(head_json, ipc_msg())
            body = head.SerializeToString()
            text = unb64(text_json)[:head.msize]
            parts += [pack_size(len(body), order), body, padded(text, 8)]
        return b"".join(parts)

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

    def to_json(self, msg: Any, blob: memoryview, order: str) -> Any:
        return b64(blob[:msg.size])

    def from_json(self, msg: Any, value: Any, order: str) -> bytes:
        return padded(super().from_json(msg, value, order)[:msg.size], 4)

    def payload_size(self, msg: Any, blob: memoryview, order: str) -> int:
        return msg.size
