"""Protobuf messages <-> crit-style dicts, raw and pretty.

The JSON shape is CRIU crit's (lib/pycriu/images/pb2dict.py): present fields in
field-number order, enums by name, bytes as base64 with a newline every 76
characters, and in pretty mode the ``(criu)`` options: hex, flag names, dev_t
as "major:minor", IP addresses, value labels.  One deliberate difference:
task_state labels follow CRIU's C code (3 = Stopped, 6 = Zombie); crit 4.2
swaps them.

Converters are compiled once per (message type, mode) into closures, so the
per-entry cost is a ListFields() walk and one call per field.
"""

from __future__ import annotations

import base64
import binascii
import os
import quopri
from collections.abc import Callable
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from imgtool.errors import EncodeError
from imgtool.format.fields import MINORBITS, dev_text, field_options, ip_text, swap32
from imgtool.format.flags import FLAG_TABLES, LABELS, format_flags

FD = FieldDescriptor
_INT_TYPES = frozenset({
    FD.TYPE_FIXED64, FD.TYPE_FIXED32, FD.TYPE_SFIXED64, FD.TYPE_SFIXED32, FD.TYPE_INT64,
    FD.TYPE_UINT64, FD.TYPE_SINT64, FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_SINT32,
})



def b64(data: bytes) -> str:
    """Base64 as crit writes it: a newline every 76 characters and at the end."""
    return base64.encodebytes(bytes(data)).decode()


def unb64(text: str) -> bytes:
    try:
        return base64.decodebytes(text.encode())
    except (ValueError, TypeError) as exc:
        raise EncodeError(f"bad base64 data: {exc}") from None


def parse_flags(text: str, table: list[tuple[str, int]]) -> int:
    if text == "":
        return 0
    bits = dict(table)
    try:
        return sum(bits[p] if p in bits else int(p, 0) for p in (s.strip() for s in text.split("|")))
    except ValueError:
        raise EncodeError(f"bad flag list {text!r}") from None


def _hex(value: int) -> str:
    return "0x%x" % value  # noqa: UP031 -- crit's spelling, also for negative numbers ("0x-5")


# ---------------------------------------------------------------- to dict

Conv = Callable[[Any], Any]


def _pretty_int(field: FieldDescriptor, hexed: bool) -> Conv | None:
    """The pretty conversion of an integer field, or None to keep the int."""
    opts = field_options(field)
    if hexed:
        return _hex
    if opts.dev:
        return lambda v: dev_text(v, opts.odev)
    if opts.flags:
        table = FLAG_TABLES.get(opts.flags)
        if table is None:
            return _hex
        return lambda v: format_flags(v, table)
    if opts.dict:
        labels = LABELS[opts.dict][field.name]
        return lambda v: labels.get(v, v)
    return None


def _bytes_conv(field: FieldDescriptor) -> Conv:
    if field_options(field).conv == "unix_name":
        return unix_name
    return b64


def unix_name(value: bytes) -> str:
    """crit's quoted-printable text of a unix socket name.

    quopri's text mode rewrites every line break like the first one; for the
    rare name where that loses bytes, line breaks are quoted too (=0A, =0D).
    """
    text = quopri.encodestring(value)
    if quopri.decodestring(text) != value:
        text = binascii.b2a_qp(value, quotetabs=False, istext=False)
    return text.decode()


def _value_conv(field: FieldDescriptor, pretty: bool, hexed: bool) -> Conv | None:
    """Conversion of one value of ``field``; None means "use as is"."""
    hexed = hexed or field_options(field).hex
    t = field.type
    if t == FD.TYPE_MESSAGE:
        return compile_to_dict(field.message_type, pretty, hexed)
    if t == FD.TYPE_BYTES:
        return _bytes_conv(field)
    if t == FD.TYPE_ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda v: names.get(v, v)
    if t in _INT_TYPES and pretty:
        return _pretty_int(field, hexed)
    if t == FD.TYPE_STRING:
        return _text
    return None


def _text(value: str | bytes) -> str:
    """A string field; upb hands back bytes when they are not UTF-8: keep them as surrogate escapes."""
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


def _field_conv(field: FieldDescriptor, pretty: bool, hexed: bool) -> Conv | None:
    repeated = field.is_repeated
    if repeated and pretty and field_options(field).ipadd:
        return ip_text
    one = _value_conv(field, pretty, hexed)
    if not repeated:
        return one
    if one is None:
        return list
    return lambda values: [one(v) for v in values]


@cache
def compile_to_dict(desc: Descriptor, pretty: bool, hexed: bool = False) -> Callable[[Message], dict]:
    """A function turning a message of type ``desc`` into crit's dict.

    Present fields are visited in field-number order, as ListFields() would,
    but with HasField()/getattr, which is several times faster in upb.
    """
    plan: list[tuple[str, bool, Conv | None]] = []

    def to_dict(msg: Message) -> dict:
        if not plan and desc.fields:  # built on first use: nested types may refer back
            plan.extend((f.name, f.is_repeated, _field_conv(f, pretty, hexed))
                        for f in sorted(desc.fields, key=lambda f: f.number))
        out = {}
        has = msg.HasField
        for name, repeated, conv in plan:
            if repeated:
                value = getattr(msg, name)
                if not value:
                    continue
            elif has(name):
                value = getattr(msg, name)
            else:
                continue
            out[name] = value if conv is None else conv(value)
        return out

    return to_dict


def to_dict(msg: Message, pretty: bool = False) -> dict:
    return compile_to_dict(msg.DESCRIPTOR, pretty)(msg)


# ---------------------------------------------------------------- from dict

def _int_from(field: FieldDescriptor, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise EncodeError(f"field {field.name}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    opts = field_options(field)
    try:
        if opts.dev:
            major, minor = (int(x) for x in value.split(":"))
            return os.makedev(major, minor) if opts.odev else major << MINORBITS | minor
        if opts.flags and opts.flags in FLAG_TABLES:
            return parse_flags(value, FLAG_TABLES[opts.flags])
        if opts.dict:
            reverse = {v: k for k, v in LABELS[opts.dict][field.name].items()}
            # crit 4.2 wrote task_state 3/6 with swapped labels; the numbers are what matter.
            if value in reverse:
                return reverse[value]
        return int(value, 0)
    except ValueError:
        raise EncodeError(f"field {field.name}: cannot read {value!r} as a number") from None


def _scalar_from(field: FieldDescriptor, value: Any) -> Any:
    t = field.type
    if t == FD.TYPE_BYTES:
        if not isinstance(value, str):
            raise EncodeError(f"field {field.name}: expected a string, got {value!r}")
        if field_options(field).conv == "unix_name":
            return quopri.decodestring(value.encode())
        return unb64(value)
    if t == FD.TYPE_ENUM:
        by_name = field.enum_type.values_by_name
        if isinstance(value, str) and value in by_name:
            return by_name[value].number
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise EncodeError(f"field {field.name}: {value!r} is not a {field.enum_type.name} value")
    if t in _INT_TYPES:
        return _int_from(field, value)
    if t == FD.TYPE_BOOL:
        return bool(value)
    if t == FD.TYPE_STRING:
        if not isinstance(value, str):
            raise EncodeError(f"field {field.name}: expected a string, got {value!r}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EncodeError(f"field {field.name}: {value!r} holds bytes that are not UTF-8; protobuf "
                              "cannot write them back into a string field") from None
        return value
    raise EncodeError(f"field {field.name}: unsupported field type {t}")


def _ip_words(text: str) -> list[int]:
    import ipaddress

    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise EncodeError(f"bad IP address {text!r}") from None
    n = int(addr)
    count = 1 if addr.version == 4 else 4
    return [swap32((n >> (32 * i)) & 0xFFFFFFFF) for i in reversed(range(count))]


def from_dict(data: Any, msg: Message) -> Message:
    """Fill ``msg`` from a crit-style dict (raw or pretty) and return it."""
    if not isinstance(data, dict):
        raise EncodeError(f"{msg.DESCRIPTOR.name}: expected an object, got {type(data).__name__}")
    for field in msg.DESCRIPTOR.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        try:
            _set_field(msg, field, value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise EncodeError(f"field {field.name}: {exc}") from None
    return msg


def _set_field(msg: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        if not isinstance(value, list):
            raise EncodeError(f"field {field.name}: expected a list")
        target = getattr(msg, field.name)
        if value and isinstance(value[0], str) and field_options(field).ipadd:
            target.extend(_ip_words(value[0]))
        elif field.type == FD.TYPE_MESSAGE:
            for item in value:
                from_dict(item, target.add())
        else:
            target.extend(_scalar_from(field, v) for v in value)
    elif field.type == FD.TYPE_MESSAGE:
        sub = getattr(msg, field.name)
        sub.SetInParent()
        from_dict(value, sub)
    else:
        setattr(msg, field.name, _scalar_from(field, value))
