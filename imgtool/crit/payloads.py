"""Extra payloads in crit's JSON: bytes as base64, ipc_msg headers as raw dicts, semaphores as numbers.

The codecs (imgtool.format.extras) say what a payload holds; this module only spells it as crit does.
"""

from __future__ import annotations

from typing import Any

from imgtool.crit.convert import b64, from_dict, to_dict, unb64
from imgtool.errors import EncodeError
from imgtool.format.extras import Extra, MsgQueue, SemArray, TcpStream
from imgtool.format.pb import message_class


def to_json(codec: Extra, parts: Any) -> Any:
    """crit's JSON of a payload's parts (as ``codec.parts`` gives them)."""
    if isinstance(codec, TcpStream):
        return {"inq": b64(parts["inq"]), "outq": b64(parts["outq"])}
    if isinstance(codec, SemArray):
        return parts
    if isinstance(codec, MsgQueue):   # crit never pretty-prints the headers
        return [to_dict(p) if i % 2 == 0 else b64(p) for i, p in enumerate(parts)]
    return b64(parts)


def from_json(codec: Extra, value: Any) -> Any:
    """The parts that ``codec.build`` takes, from crit's JSON."""
    if isinstance(codec, TcpStream):
        if not isinstance(value, dict) or not {"inq", "outq"} <= value.keys():
            raise EncodeError('tcp-stream extra: expected {"inq": ..., "outq": ...}')
        return {"inq": _bytes(value["inq"]), "outq": _bytes(value["outq"])}
    if isinstance(codec, SemArray):
        if not isinstance(value, list) or not all(type(v) is int for v in value):
            raise EncodeError("ipcns-sem extra: expected a list of numbers")
        return value
    if isinstance(codec, MsgQueue):
        if not isinstance(value, list) or len(value) % 2:
            raise EncodeError("ipcns-msg extra: expected [header, base64 text, ...]")
        ipc_msg = message_class("ipc_msg")
        return [from_dict(p, ipc_msg()) if i % 2 == 0 else _bytes(p) for i, p in enumerate(value)]
    return _bytes(value)


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(f"extra: expected a base64 string, got {type(value).__name__}")
    return unb64(value)
