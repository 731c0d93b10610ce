"""What the schemas say about each field beyond its type: the ``(criu)`` options, and the few encodings
they name (IP addresses as u32 words, dev_t numbers), plus enum value names.

``FIELD_OPTIONS`` is generated from schemas/*.proto (imgtool/format/pb/_schema.py).
"""

from __future__ import annotations

import os
import struct
from typing import Any, NamedTuple

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from imgtool.format.pb._schema import FIELD_OPTIONS

MINORBITS = 20  # the kernel's packed dev_t


class FieldOptions(NamedTuple):
    """The (criu) options of a field (schemas/opts.proto), which steer the pretty form."""

    hex: bool = False     # "0x..." (nested messages inherit it)
    ipadd: bool = False   # repeated u32 in network order holding an IPv4/IPv6 address
    flags: str = ""       # flag table: "A | B | 0x..."
    dev: bool = False     # dev_t, packed as the kernel does (major << 20 | minor)...
    odev: bool = False    # ...or as old glibc did (with dev)
    dict: str = ""        # value -> label table
    conv: str = ""        # custom bytes conversion ("unix_name")


_NO_OPTIONS = FieldOptions()


def field_options(field: FieldDescriptor) -> FieldOptions:
    found = FIELD_OPTIONS.get(field.full_name)
    return _NO_OPTIONS if found is None else FieldOptions(**found)


def dev_text(value: int, old: bool = False) -> str:
    """A dev_t as "major:minor": packed as the kernel does, or as old glibc did (``old``)."""
    if old:
        return f"{os.major(value)}:{os.minor(value)}"
    return f"{value >> MINORBITS}:{value & ((1 << MINORBITS) - 1)}"


def swap32(word: int) -> int:
    """A u32 from host to network byte order or back (ntohl, htonl): CRIU keeps addresses as u32 words
    holding network-order bytes."""
    return int.from_bytes(struct.pack("=I", word), "big")


def ip_text(words: list[int]) -> list[Any]:
    import ipaddress  # pretty output of sockets only

    if len(words) == 1:
        return [ipaddress.IPv4Address(swap32(words[0])).compressed]
    if len(words) == 4:
        n = 0
        for w in words:
            n = (n << 32) | swap32(w)
        return [ipaddress.IPv6Address(n).compressed]
    return list(words)  # not an address: keep the numbers


def enum_name(msg: Message, field: str) -> str:
    """The name of an enum field's value (its number as text when the schema does not know it)."""
    value = getattr(msg, field)
    known = msg.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number
    return known[value].name if value in known else str(value)


def plain_dict(msg: Message) -> dict[str, Any]:
    """A message's set fields as plain values: enums by name, nested messages as dicts, bytes as hex."""
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        out[field.name] = [_plain(field, v) for v in value] if field.is_repeated else _plain(field, value)
    return out


def _plain(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return plain_dict(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = field.enum_type.values_by_number
        return known[value].name if value in known else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    return value
