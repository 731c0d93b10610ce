"""Property tests: random messages through images, dicts and JSON; hostile input never crashes."""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imgtool.crit import convert, decode, jsonout, payloads
from imgtool.crit.encode import encode_dict
from imgtool.errors import ImgtoolError
from imgtool.format import extras, framing, pagemap
from imgtool.format.extras import GhostContent, MsgQueue, SemArray, ShmSegment, Sized
from imgtool.format.image import Image, image_bytes
from imgtool.format.pb import message_class
from imgtool.format.registry import KINDS, EntrySpec, ImageKind

FD = FieldDescriptor
ROOT = Path(__file__).resolve().parent.parent
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

# A frame as the tests build it: the message and the raw extra payload after it
# (None: the entry has no extra payload at all).
Frame = tuple[Message, bytes | None]

# ---------------------------------------------------------------- random messages

_S32, _U32 = (-(2**31), 2**31 - 1), (0, 2**32 - 1)
_S64, _U64 = (-(2**63), 2**63 - 1), (0, 2**64 - 1)
_INT_RANGE = {
    FD.TYPE_INT32: _S32, FD.TYPE_SINT32: _S32, FD.TYPE_SFIXED32: _S32,
    FD.TYPE_UINT32: _U32, FD.TYPE_FIXED32: _U32,
    FD.TYPE_INT64: _S64, FD.TYPE_SINT64: _S64, FD.TYPE_SFIXED64: _S64,
    FD.TYPE_UINT64: _U64, FD.TYPE_FIXED64: _U64,
}
MAX_DEPTH = 3
# Bytes rich in line breaks and QP specials for (criu).conv = "unix_name" fields.
_QP_BITS = st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b" ", b"\t", b"=", b"a", b"\0", b"."]), max_size=8)


def _mixed_line_breaks(data: bytes) -> bool:
    """Both a bare LF and a CRLF: quopri rewrites one into the other (see test_unix_name_mixed_line_breaks)."""
    return b"\r\n" in data and re.search(rb"(?<!\r)\n", data) is not None


@cache
def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Values of one (non-message) field, within its type's range."""
    t = field.type
    if t in _INT_RANGE:
        ints = st.integers(*_INT_RANGE[t])
        labels = convert.LABELS.get(convert.field_options(field).dict, {}).get(field.name)
        if labels:  # favour the labelled values (task_state, socket family, state...)
            return st.one_of(st.sampled_from(sorted(labels)), ints)
        return ints
    if t == FD.TYPE_BOOL:
        return st.booleans()
    if t == FD.TYPE_STRING:
        return st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
    if t == FD.TYPE_BYTES and convert.field_options(field).conv == "unix_name":
        names = st.one_of(st.binary(max_size=24), _QP_BITS.map(b"".join))
        return names.filter(lambda b: not _mixed_line_breaks(b))  # known bug, tested on its own below
    if t == FD.TYPE_BYTES:
        return st.binary(max_size=24)
    if t == FD.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    raise AssertionError(f"no strategy for {field.full_name} (type {t})")


def _repeat_count(field: FieldDescriptor) -> st.SearchStrategy[int]:
    if convert.field_options(field).ipadd:  # 1 word: IPv4, 4 words: IPv6, others: plain numbers
        return st.sampled_from([1, 4, 0, 2])
    return st.integers(0, 3)


def _fill(draw: Callable[[st.SearchStrategy[Any]], Any], msg: Message, depth: int) -> None:
    for field in msg.DESCRIPTOR.fields:
        nested = field.type == FD.TYPE_MESSAGE
        too_deep = nested and depth >= MAX_DEPTH
        if field.is_repeated:
            count = 0 if too_deep else draw(_repeat_count(field))
            target = getattr(msg, field.name)
            if nested:
                for _ in range(count):
                    _fill(draw, target.add(), depth + 1)
            else:
                target.extend(draw(st.lists(_scalar(field), min_size=count, max_size=count)))
        elif field.is_required or (not too_deep and draw(st.booleans())):
            if nested:
                sub = getattr(msg, field.name)
                sub.SetInParent()  # an empty optional message is still present
                _fill(draw, sub, depth + 1)
            else:
                setattr(msg, field.name, draw(_scalar(field)))


@st.composite
def messages(draw: Callable[[st.SearchStrategy[Any]], Any], cls: type[Message]) -> Message:
    """A random, fully initialised message of ``cls``."""
    msg = cls()
    _fill(draw, msg, 0)
    assert msg.IsInitialized()
    return msg


# ---------------------------------------------------------------- random images

def _blob(draw: Callable[[st.SearchStrategy[Any]], Any], size: int) -> bytes:
    return draw(st.binary(min_size=size, max_size=size))


def _draw_extra(draw: Callable[[st.SearchStrategy[Any]], Any], spec: EntrySpec, msg: Message) -> bytes | None:
    """A raw extra payload consistent with ``msg`` (whose length fields it may set)."""
    codec = spec.extra
    if codec is None:
        return None
    if isinstance(codec, Sized):  # also TcpStream and ghost chunks
        for name in codec.fields:
            setattr(msg, name, draw(st.integers(0, 40)))
        return _blob(draw, sum(getattr(msg, name) for name in codec.fields))
    if isinstance(codec, SemArray):
        msg.nsems = draw(st.integers(0, 9))
        values = draw(st.lists(st.integers(0, 0xFFFF), min_size=msg.nsems, max_size=msg.nsems))
        return extras.padded(struct.pack(f"<{msg.nsems}H", *values), 8)
    if isinstance(codec, MsgQueue):
        msg.qnum = draw(st.integers(0, 3))
        items: list[Any] = []
        for _ in range(msg.qnum):
            head = draw(messages(message_class("ipc_msg")))
            head.msize = draw(st.integers(0, 20))
            items += [convert.to_dict(head), convert.b64(_blob(draw, head.msize))]
        return codec.build(msg, payloads.from_json(codec, items), "<")
    if isinstance(codec, ShmSegment):
        if msg.in_pagemaps:
            return None
        msg.size = draw(st.integers(0, 40))
        return extras.padded(_blob(draw, msg.size), 4)
    if isinstance(codec, GhostContent):
        return None if msg.chunks else draw(st.binary(max_size=64))
    raise AssertionError(f"no strategy for extra codec {type(codec).__name__}")


@st.composite
def image_frames(draw: Callable[[st.SearchStrategy[Any]], Any], kind: ImageKind) -> list[Frame]:
    frames: list[Frame] = []
    for index in range(draw(st.integers(0, 3))):
        spec = kind.spec(index)
        msg = draw(messages(spec.message))
        extra = _draw_extra(draw, spec, msg)
        frames.append((msg, extra))
        if isinstance(spec.extra, GhostContent) and extra is not None:
            break  # unchunked ghost content runs to the end of the file
    return frames


def _check_layout(raw: bytes, header_size: int, entries: list[Any], frames: list[Frame]) -> None:
    """Offsets, sizes, payloads and extras of the decoded entries match the bytes built."""
    offsets = [e.offset for e in entries]
    assert offsets[:1] in ([], [header_size])
    assert all(a < b for a, b in pairwise(offsets))
    pos = header_size
    for entry, (msg, extra) in zip(entries, frames, strict=True):
        assert entry.offset == pos
        assert struct.unpack_from("<I", raw, pos)[0] == entry.size == msg.ByteSize()
        assert bytes(entry.payload) == raw[pos + 4:pos + 4 + entry.size] == msg.SerializeToString()
        assert (None if entry.extra is None else bytes(entry.extra)) == extra
        pos = entry.end
    assert pos == len(raw)


@pytest.mark.parametrize("name", sorted(KINDS))
@settings(max_examples=6, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_image_round_trip(name: str, data: st.DataObject) -> None:
    frames = data.draw(image_frames(KINDS[name]), label="frames")
    raw = image_bytes(name, [(msg, extra or b"") for msg, extra in frames])
    with Image(raw, f"{name.lower()}.img") as img:
        assert img.magic == name
        assert img.header.size == (4 if name == "INVENTORY" else 8)
        entries = list(img.entries())
        assert [e.message for e in entries] == [msg for msg, _ in frames]
        _check_layout(raw, img.header.size, entries, frames)
        assert img.count() == len(frames)
        for pretty in (False, True):
            doc = decode.to_dict(img, pretty=pretty)
            assert encode_dict(doc) == raw
            # The streaming writer prints what json.dump (crit) prints for the same document.
            assert _write_json(img, pretty, columnar=True) == json.dumps(doc, indent=4 if pretty else None)


# ---------------------------------------------------------------- pagemap: columnar == generic

_OPTIONAL = ("in_parent", "flags", "nr_pages")
_PAGEMAP_FIELDS = (("vaddr", 1, 64), ("compat_nr_pages", 2, 32), ("in_parent", 3, 1), ("flags", 4, 32),
                   ("nr_pages", 5, 64))
_PE = message_class("pagemap_entry")
_HEAD = message_class("pagemap_head")


def _varint(value: int, pad: int = 0) -> bytes:
    """Protobuf varint of ``value``, made ``pad`` bytes longer than needed (still valid up to 10 bytes)."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    if pad:
        out[-1] |= 0x80
        out += b"\x80" * (pad - 1) + b"\x00"
    return bytes(out)


def _random_int(rng: random.Random, bits: int) -> int:
    """Mostly small numbers, sometimes any width up to ``bits`` (varints of every length)."""
    return rng.choice([rng.randrange(min(8, 1 << bits)), rng.getrandbits(rng.randint(1, bits)), (1 << bits) - 1])


def _pagemap_payload(rng: random.Random, present: frozenset[str], unknown: bool, odd_varints: bool) -> bytes:
    """A pagemap_entry payload in field order; optionally non-canonical varints, an unknown field."""
    payload = b""
    for name, number, bits in _PAGEMAP_FIELDS:
        if name in present:
            value = _random_int(rng, bits)
            pad = rng.randint(0, 10 - len(_varint(value))) if odd_varints and rng.random() < 0.3 else 0
            payload += bytes([number << 3]) + _varint(value, pad)
    if unknown:  # an unknown varint field 15, or length-delimited field 9
        payload += rng.choice([b"\x78\x2a", b"\x4a\x03abc"])
    return payload


@st.composite
def pagemap_images(draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    """A pagemap image: head + N entries with drawn presence patterns and oddities."""
    order = draw(st.sampled_from("<>"))
    count = draw(st.one_of(st.integers(0, 12), st.integers(0, 3000)))
    rng = draw(st.randoms(use_true_random=True))
    fields = st.frozensets(st.sampled_from(_OPTIONAL)).map(lambda s: s | {"vaddr", "compat_nr_pages"})
    patterns = draw(st.lists(fields, min_size=1, max_size=3))  # one pattern, or a mix
    if draw(st.booleans()):  # sometimes a required field is missing too
        patterns.append(draw(st.frozensets(st.sampled_from(("vaddr", "compat_nr_pages", *_OPTIONAL)))))
    odd = set(draw(st.lists(st.integers(0, max(count - 1, 0)), max_size=3))) if count else set()
    blocks = draw(st.booleans())  # mix in runs rather than entry by entry
    odd_varints = draw(st.booleans())
    frames = [_HEAD(pages_id=draw(st.integers(0, 2**32 - 1))).SerializeToString()]
    for i in range(count):
        present = patterns[(i * len(patterns)) // count] if blocks else rng.choice(patterns)
        frames.append(_pagemap_payload(rng, present, i in odd, odd_varints))
    head = framing.header_for("PAGEMAP", order).build()
    return head + b"".join(framing.build_frame(p, order) for p in frames)


def _write_json(img: Image, pretty: bool, columnar: bool) -> str:
    out = io.StringIO()
    batches = decode.json_batches(img, pretty) if columnar else jsonout.dict_batches(decode.dicts(img, pretty), pretty)
    jsonout.write_document(out, img.magic, batches, pretty)
    return out.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_OK)
@given(raw=pagemap_images(), chunk=st.sampled_from([pagemap._CHUNK, 64, 333, 4096]))
def test_pagemap_columnar_equals_generic(raw: bytes, chunk: int) -> None:
    # A small _CHUNK puts chunk boundaries inside frames, which large real pagemaps hit.
    with Image(raw, "pagemap-1.img") as img, mock.patch.object(pagemap, "_CHUNK", chunk):
        for pretty in (False, True):
            text = _write_json(img, pretty, columnar=True)
            assert text == _write_json(img, pretty, columnar=False)
            assert json.loads(text) == {"magic": "PAGEMAP", "entries": list(decode.dicts(img, pretty))}


def _regular_pagemap(count: int, tail: bytes = b"") -> bytes:
    entries = [_PE(vaddr=0x7F0000000000 + 4096 * i, compat_nr_pages=0, flags=4, nr_pages=i + 1) for i in range(count)]
    return image_bytes("PAGEMAP", [_HEAD(pages_id=1), *(e.SerializeToString() + tail for e in entries)])


def test_pagemap_regular_entries_take_the_columnar_path() -> None:
    """Guards the property above against comparing the generic path with itself."""
    with Image(_regular_pagemap(500), "pagemap-1.img") as img:
        items = list(pagemap.read(img._view, next(img.entries()).end, "<", img.path, 1))
    assert len(items) == 1 and isinstance(items[0], pagemap.Columns)
    assert items[0].nr_pages == list(range(1, 501))




def test_pagemap_irregular_frames_are_not_quadratic() -> None:
    # 3000 entries with an unknown field 6 (e.g. from a newer CRIU): the columnar path must stay
    # within a small factor of the generic one (about 100x slower with the bug).
    with Image(_regular_pagemap(3000, tail=b"\x30\x01"), "pagemap-1.img") as img:
        timings = {}
        for columnar in (False, True):
            start = time.perf_counter()
            _write_json(img, False, columnar)
            timings[columnar] = time.perf_counter() - start
    assert timings[True] < 10 * timings[False] + 0.25, timings


# ---------------------------------------------------------------- robustness

def _small_samples() -> list[Path]:
    names = ["fds/images/" + n for n in ("pstree.img", "fdinfo-2.img", "pipes-data.img", "fifo-data.img",
                                         "sk-queues.img", "ghost-file-1.img", "pagemap-13375.img",
                                         "inventory.img", "files.img", "mm-13375.img", "core-13375.img",
                                         "stats-dump")]
    names += ["tcp/images/tcp-stream-12f41.img", "container/images/cgroup.img"]
    paths = [ROOT / "samples" / n for n in names]
    # SysV IPC extras (sem, msg, shm) only exist in the shared corpus.
    paths += [ROOT.parent / "shared/corpus/ns/images" / f"ipcns-{k}-11.img" for k in ("sem", "msg", "shm")]
    return [p for p in paths if p.is_file()]


SAMPLES = [(p.name, p.read_bytes()) for p in _small_samples()]
HUGE = [0xFFFFFFF0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x10000]
# Protobuf-looking payload pieces: a tag (pagemap's and common ones), a varint of 1-13 bytes, maybe a blob.
_PB_TOKENS = st.tuples(st.sampled_from([0x08, 0x10, 0x18, 0x20, 0x28, 0x0A, 0x12, 0x1A, 0x22]) | st.integers(0, 255),
                       st.integers(0, 12), st.integers(0, 127), st.binary(max_size=6))
PB_PAYLOADS = st.lists(_PB_TOKENS, max_size=6).map(
    lambda tokens: b"".join(bytes([tag]) + b"\xff" * n + bytes([last]) + blob for tag, n, last, blob in tokens))


def _frames(name: str, data: bytes) -> list[tuple[int, int, Message]]:
    """(offset, size, message) of every entry of a sample."""
    with Image(data, name) as img:
        return [(e.offset, e.size, e.message) for e in img.entries()]


FRAMES = {name: _frames(name, data) for name, data in SAMPLES}


def _hostile_field(draw: Callable[[st.SearchStrategy[Any]], Any], msg: Message) -> bytes:
    """``msg`` re-encoded with one integer field (a length, a count...) set to a huge value."""
    fields = [f for f in msg.DESCRIPTOR.fields if f.type in _INT_RANGE and not f.is_repeated]
    copy = type(msg).FromString(msg.SerializeToString())
    if fields:
        field = draw(st.sampled_from(fields))
        setattr(copy, field.name, min(draw(st.sampled_from([*HUGE, 2**64 - 1])), _INT_RANGE[field.type][1]))
    return copy.SerializeToString()


@st.composite
def mutated_samples(draw: Callable[[st.SearchStrategy[Any]], Any]) -> tuple[str, bytes]:
    name, data = draw(st.sampled_from(SAMPLES), label="sample")
    buf = bytearray(data)
    how = draw(st.sampled_from(["bytes only", "new payload", "hostile field"]))
    if how != "bytes only":  # replace one entry's payload, behind a consistent size prefix
        offset, size, msg = draw(st.sampled_from(FRAMES[name]))
        payload = draw(PB_PAYLOADS) if how == "new payload" else _hostile_field(draw, msg)
        buf[offset:offset + 4 + size] = struct.pack("<I", len(payload)) + payload
    for _ in range(draw(st.integers(0 if how != "bytes only" else 1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "huge", "insert"]))
        targets = [off for off, _, _ in FRAMES[name] if off <= len(buf)]  # aim at size prefixes too
        pos = draw(st.one_of(st.integers(0, len(buf)), *[st.sampled_from(targets)] * bool(targets)))
        if op == "truncate":
            del buf[pos:]
        elif op == "flip" and pos < len(buf):
            buf[pos] ^= draw(st.sampled_from([0x80, 0xFF, 0x01, 0x40]) | st.integers(1, 255))
        elif op == "huge":
            buf[pos:pos + 4] = struct.pack("<I", draw(st.sampled_from(HUGE)))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return name, bytes(buf)


def _has_extras(data: bytes) -> bool:
    kind = Image(data).kind
    return kind.entry.extra is not None or (kind.first is not None and kind.first.extra is not None)


EXTRA_SAMPLES = [(name, data) for name, data in SAMPLES if _has_extras(data)]


@st.composite
def hostile_lengths(draw: Callable[[st.SearchStrategy[Any]], Any]) -> tuple[str, bytes]:
    """A sample with extra payloads, one entry's length or count field set huge (size prefix kept right)."""
    name, data = draw(st.sampled_from(EXTRA_SAMPLES), label="sample")
    offset, size, msg = draw(st.sampled_from(FRAMES[name]))
    payload = _hostile_field(draw, msg)
    return name, data[:offset] + struct.pack("<I", len(payload)) + payload + data[offset + 4 + size:]


@st.composite
def random_images(draw: Callable[[st.SearchStrategy[Any]], Any]) -> tuple[str, bytes]:
    """Random bytes, mostly behind a valid header so that entry decoding is reached."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    head = draw(st.sampled_from([b"", framing.header_for(kind, "<").build(), framing.header_for(kind, ">").build()]))
    return f"{kind.lower()}.img", head + draw(st.binary(max_size=2048))


def _consumers(img: Image) -> Iterator[Callable[[], object]]:
    yield lambda: [e.message for e in img.entries()]
    yield img.count
    for pretty in (False, True):
        yield lambda p=pretty: decode.to_dict(img, p)
        yield lambda p=pretty: decode.to_dict(img, p, nopl=True)
        yield lambda p=pretty: jsonout.write_document(io.StringIO(), img.magic, decode.json_batches(img, p), p)


def _decode_everything(name: str, data: bytes, allowed: type[Exception]) -> None:
    """Run every reading path to the end; each may only raise ``allowed``. Memory stays bounded."""
    tracemalloc.start()
    try:
        with contextlib.suppress(allowed), Image(data, name) as img:
            for consume in _consumers(img):
                with contextlib.suppress(allowed):
                    consume()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(data) + (4 << 20), f"peak {peak} bytes for a {len(data)}-byte image"


def test_robustness_samples_are_present() -> None:
    assert len(SAMPLES) >= 10 and len(EXTRA_SAMPLES) >= 5
    for name, data in SAMPLES:  # the unmutated samples decode cleanly on every path
        with Image(data, name) as img:
            for consume in _consumers(img):
                consume()
            assert decode.to_dict(img, True)["entries"], name


ROBUST = settings(max_examples=300, deadline=2000, suppress_health_check=SLOW_OK)


# Memory and time bounds, whatever the exception: these hold today.
@ROBUST
@given(sample=st.one_of(mutated_samples(), random_images()))
def test_hostile_input_bounded_memory_and_time(sample: tuple[str, bytes]) -> None:
    _decode_everything(*sample, allowed=Exception)


@settings(ROBUST, max_examples=150)
@given(sample=hostile_lengths())
def test_hostile_lengths_bounded_memory_and_time(sample: tuple[str, bytes]) -> None:
    _decode_everything(*sample, allowed=Exception)


# Known reproducers, run first so that the expected failure is deterministic.
_FILES = dict(SAMPLES)["files.img"]
BAD_UTF8_FILES = ("files.img", _FILES.replace(b"/tmp", b"/\xf4mp", 1))  # bug: invalid UTF-8 string
BAD_UTF8_UTSNS = ("utsns-1.img", framing.header_for("UTSNS").build() + b"\x03\x00\x00\x00\x0a\x01\xff")
OVERLONG_PAGEMAP = ("pagemap-1.img",  # an 11-byte varint (used to escape as a protobuf DecodeError)
                    image_bytes("PAGEMAP", [_HEAD(pages_id=1), b"\x08" + b"\x80" * 10 + b"\x01\x10\x00"]))


@ROBUST
@example(sample=BAD_UTF8_FILES)
@example(sample=OVERLONG_PAGEMAP)
@given(sample=st.one_of(mutated_samples(), hostile_lengths()))
def test_mutated_samples_raise_only_imgtool_errors(sample: tuple[str, bytes]) -> None:
    _decode_everything(*sample, allowed=ImgtoolError)


@ROBUST
@example(sample=BAD_UTF8_UTSNS)
@given(sample=random_images())
def test_random_bytes_raise_only_imgtool_errors(sample: tuple[str, bytes]) -> None:
    _decode_everything(*sample, allowed=ImgtoolError)


# ---------------------------------------------------------------- crit-style dict round trip

DICT_TYPES = ["vma_entry", "mm_entry", "inet_sk_entry", "unix_sk_entry", "file_entry", "core_entry"]


@pytest.mark.parametrize("type_name", DICT_TYPES)
@settings(max_examples=40, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_dict_round_trip(type_name: str, data: st.DataObject) -> None:
    msg = data.draw(messages(message_class(type_name)), label="message")
    for pretty in (False, True):
        assert convert.from_dict(convert.to_dict(msg, pretty), type(msg)()) == msg


QUOPRI = ("BUG: unix_name uses quopri, which rewrites every line break to the style of the first one "
          "(binascii.b2a_qp), so a name with both LF and CRLF does not survive a round trip")


@pytest.mark.parametrize("name", [b"\n\r\n", b"a\r\nb\nc"])
def test_unix_name_mixed_line_breaks(name: bytes) -> None:
    for pretty in (False, True):
        value = convert.to_dict(message_class("unix_sk_entry")(name=name), pretty)["name"]
        assert convert.from_dict({"name": value}, message_class("unix_sk_entry")()).name == name


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8)
_JSON_VALUES = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                            | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


@given(_JSON_VALUES, st.booleans())
def test_emit_json_writes_what_json_dump_writes(value: Any, lazily: bool) -> None:
    """The streaming writer's text is json.dump(indent=2, sort_keys=True)'s; lists may come as iterators."""
    from imgtool.render.console import _jsonable, emit_json

    expected = json.dumps(value, indent=2, sort_keys=True, default=_jsonable) + "\n"
    out = io.StringIO()
    emit_json(iter(value) if lazily and isinstance(value, list) else value, out)
    assert out.getvalue() == expected
