"""Crafted broken files: each fails with a specific imgtool error and a precise message."""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from imgtool import cli
from imgtool.crit import decode, payloads
from imgtool.crit.convert import b64
from imgtool.crit.encode import encode_dict
from imgtool.crit.jsonout import write_document
from imgtool.errors import DecodeError, EncodeError, FormatError, RawImageError, TruncatedError, UnknownMagicError
from imgtool.format import extras, framing, magic
from imgtool.format.extras import MsgQueue
from imgtool.format.image import Image, image_bytes
from imgtool.format.pb import message_class

FDS = Path(__file__).resolve().parent.parent / "samples" / "fds" / "images"
PSTREE = message_class("pstree_entry")
PIPE_DATA = message_class("pipe_data_entry")
GHOST, CHUNK = message_class("ghost_file_entry"), message_class("ghost_chunk_entry")
SEM, MSG, IPC_MSG = message_class("ipc_sem_entry"), message_class("ipc_msg_entry"), message_class("ipc_msg")
HEAD, PAGE = message_class("pagemap_head"), message_class("pagemap_entry")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _decode(path: Path) -> dict[str, Any]:
    """Read every entry and message, then crit's pretty dict."""
    with Image.open(path) as img:
        for entry in img.entries():
            assert entry.message is not None
        return decode.to_dict(img, pretty=True)


def _exact(text: str) -> str:
    return "^" + re.escape(text) + "$"


def _processes(count: int) -> list[Message]:
    return [PSTREE(pid=p, ppid=1, pgid=p, sid=1, threads=[p]) for p in range(1, count + 1)]


def _ipc_desc() -> dict[str, int]:
    return dict(key=0x1234, uid=0, gid=0, cuid=0, cgid=0, mode=0o600, id=7)


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize("size", [0, 2])
def test_too_short_for_a_magic(tmp_path: Path, size: int) -> None:
    path = _write(tmp_path, "pstree.img", b"\x50\x27"[:size])
    expected = _exact(f"pstree.img: offset 0x0: file is {size} bytes, too short for a magic")
    with pytest.raises(TruncatedError, match=expected):
        Image.open(path)


@pytest.mark.parametrize(("word", "shown"), [(0xDEADBEEF, "0xdeadbeef"), (0x00000123, "0x00000123")])
def test_unknown_magic_is_named_in_hex(tmp_path: Path, word: int, shown: str) -> None:
    path = _write(tmp_path, "pstree.img", struct.pack("<I", word) + bytes(12))
    with pytest.raises(UnknownMagicError, match=_exact(f"pstree.img: offset 0x0: unknown magic {shown}")):
        Image.open(path)


def test_unknown_magic_after_the_common_magic(tmp_path: Path) -> None:
    path = _write(tmp_path, "pstree.img", struct.pack("<II", magic.IMG_COMMON, 0x12345678))
    with pytest.raises(UnknownMagicError, match=r"offset 0x4: unknown image magic 0x12345678 after the common magic$"):
        Image.open(path)


def test_kdat_cache_is_recognised(tmp_path: Path) -> None:
    path = _write(tmp_path, "criu.kdat", struct.pack("<I", magic.KDAT) + bytes(60))
    expected = _exact("criu.kdat: offset 0x0: unknown magic 0x57023458 (this is CRIU's kdat cache, not an image)")
    with pytest.raises(UnknownMagicError, match=expected):
        Image.open(path)


def test_raw_pages_file_has_no_entries(tmp_path: Path) -> None:
    path = _write(tmp_path, "pages-1.img", bytes(range(1, 256)) * 16)
    with pytest.raises(RawImageError, match=_exact("pages-1.img: raw pages image with no entries to decode")):
        Image.open(path)


# ---------------------------------------------------------------- entries


def test_size_prefix_past_the_end_names_entry_offset_and_bytes_left(tmp_path: Path) -> None:
    good = image_bytes("PSTREE", _processes(3))
    offset = 8 + sum(4 + p.ByteSize() for p in _processes(3))
    assert offset == len(good)
    path = _write(tmp_path, "pstree.img", good + struct.pack("<I", 4096) + b"\x08\x04" * 6)
    expected = _exact(f"pstree.img: entry 3 at offset {offset:#x}: size prefix says 4096 bytes, 12 left")
    with Image.open(path) as img:
        for read in (lambda: list(img.entries()), img.count, lambda: decode.to_dict(img)):
            with pytest.raises(TruncatedError, match=expected) as exc:
                read()
            assert (exc.value.entry, exc.value.offset) == (3, offset)


def test_three_bytes_where_a_size_prefix_belongs(tmp_path: Path) -> None:
    good = image_bytes("PSTREE", _processes(1))
    path = _write(tmp_path, "pstree.img", good + b"\x01\x02\x03")
    expected = _exact(f"pstree.img: entry 1 at offset {len(good):#x}: 3 bytes left, too few for a size prefix")
    with pytest.raises(TruncatedError, match=expected):
        _decode(path)


def test_payload_that_is_not_protobuf(tmp_path: Path) -> None:
    path = _write(tmp_path, "pstree.img", image_bytes("PSTREE", [*_processes(1), b"\x08\xff\xff"]))
    offset = 8 + 4 + _processes(1)[0].ByteSize()
    with pytest.raises(DecodeError, match=rf"^pstree\.img: entry 1 at offset {offset:#x}: 3 bytes are not a valid "
                                          r"pstree_entry \(.*Wire format was corrupt\)$"):
        _decode(path)


@pytest.mark.parametrize("claimed", [100, 6])  # far past the end, and one byte past it
def test_pipe_data_longer_than_the_file(tmp_path: Path, claimed: int) -> None:
    entry = PIPE_DATA(pipe_id=9, bytes=claimed)
    path = _write(tmp_path, "pipes-data.img", image_bytes("PIPES_DATA", [(entry, b"hello")]))
    offset = 8 + 4 + entry.ByteSize()
    expected = _exact(f"pipes-data.img: entry 0 at offset {offset:#x}: "
                      f"extra payload of {claimed} bytes expected, 5 left")
    with pytest.raises(TruncatedError, match=expected):
        _decode(path)


def test_size_prefix_one_byte_past_the_end(tmp_path: Path) -> None:
    good = image_bytes("PSTREE", _processes(2))
    path = _write(tmp_path, "pstree.img", good[:-1])
    offset = 8 + 4 + _processes(2)[0].ByteSize()
    size = _processes(2)[1].ByteSize()
    expected = _exact(f"pstree.img: entry 1 at offset {offset:#x}: size prefix says {size} bytes, {size - 1} left")
    with pytest.raises(TruncatedError, match=expected):
        _decode(path)


def test_message_queue_with_fewer_messages_than_qnum(tmp_path: Path) -> None:
    queue = MSG(desc=_ipc_desc(), qbytes=16384, qnum=1)
    extra = MsgQueue().build(queue, payloads.from_json(MsgQueue(), [{"mtype": 1, "msize": 3}, b64(b"abc")]), "<")
    queue.qnum = 3
    path = _write(tmp_path, "ipcns-msg-11.img", image_bytes("IPCNS_MSG", [(queue, extra)]))
    offset = 8 + 4 + queue.ByteSize()
    with pytest.raises(FormatError, match=_exact(f"ipcns-msg-11.img: entry 0 at offset {offset:#x}: extra payload: "
                                                 "message 1 of 3: no room for its size prefix")):
        _decode(path)


def test_ghost_chunk_running_past_the_end(tmp_path: Path) -> None:
    head = GHOST(uid=0, gid=0, mode=0o100644, chunks=True, size=60)
    first, second = CHUNK(len=10, off=0), CHUNK(len=50, off=10)
    frames = [head, (first, b"0123456789"), (second, b"x" * 20)]
    path = _write(tmp_path, "ghost-file-1.img", image_bytes("GHOST_FILE", frames))
    offset = 8 + 4 + head.ByteSize() + 4 + first.ByteSize() + 10 + 4 + second.ByteSize()
    expected = _exact(f"ghost-file-1.img: entry 2 at offset {offset:#x}: extra payload of 50 bytes expected, 20 left")
    with pytest.raises(TruncatedError, match=expected):
        _decode(path)


# vaddr as an 11-byte varint (protobuf allows 10): matches pagemap's regular-frame regex.
OVERLONG = image_bytes("PAGEMAP", [HEAD(pages_id=1), b"\x08" + b"\x80" * 10 + b"\x01\x10\x00"])


def test_overlong_varint_in_pagemap_entry_generic_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "pagemap-1.img", OVERLONG)
    expected = r"^pagemap-1\.img: entry 1 at offset 0xe: 14 bytes are not a valid pagemap_entry \("
    with pytest.raises(DecodeError, match=expected):
        _decode(path)


def test_overlong_varint_in_pagemap_entry_columnar_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "pagemap-1.img", OVERLONG)
    with Image.open(path) as img, pytest.raises(DecodeError, match=r"entry 1 at offset 0xe: .*pagemap_entry"):
        write_document(io.StringIO(), img.magic, decode.json_batches(img, False), False)


def test_string_field_with_invalid_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "utsns-12.img", image_bytes("UTSNS", [b"\x0a\x02\xff\xfe\x12\x01a"]))
    rc = cli.main(["decode", "-i", str(path)])
    out, _err = capsys.readouterr()
    # Not UTF-8: kept as surrogate escapes, so the JSON shows \udcff\udcfe instead of crashing.
    assert rc == 0 and json.loads(out)["entries"][0]["nodename"] == "\udcff\udcfe"
    doc = tmp_path / "utsns.json"
    doc.write_text(out)
    assert cli.main(["encode", "-i", str(doc), "-o", str(tmp_path / "back.img")]) == 2
    assert "not UTF-8" in capsys.readouterr().err


# ---------------------------------------------------------------- byte order


def _frames(order: str) -> dict[str, list[tuple[Message, bytes]]]:
    """Entries whose extras depend on the byte order (u16 semaphores, u32 message sizes)."""
    sem = SEM(desc=_ipc_desc(), nsems=3)
    queue = MSG(desc=_ipc_desc(), qbytes=16384, qnum=2)
    texts = [{"mtype": 1, "msize": 5}, b64(b"hello"), {"mtype": 2, "msize": 9}, b64(b"123456789")]
    return {
        "PSTREE": [(p, b"") for p in _processes(3)],
        "IPCNS_SEM": [(sem, extras.padded(struct.pack(order + "3H", 1, 0x1234, 0xFFFF), 8))],
        "IPCNS_MSG": [(queue, MsgQueue().build(queue, payloads.from_json(MsgQueue(), texts), order))],
    }


def _build(kind: str, frames: list[tuple[Message, bytes]], order: str) -> bytes:
    body = b"".join(framing.build_frame(m.SerializeToString(), order) + extra for m, extra in frames)
    return framing.header_for(kind, order).build() + body


def _reframe(path: Path, order: str) -> bytes:
    """A real little-endian image with its magics and size prefixes rewritten in ``order``."""
    with Image.open(path) as img:
        frames = [(e.message, bytes(e.extra or b"")) for e in img.entries()]
        return _build(img.magic, frames, order)


def _json(data: bytes, name: str, pretty: bool) -> str:
    out = io.StringIO()
    with Image(data, name) as img:
        write_document(out, img.magic, decode.json_batches(img, pretty), pretty)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["PSTREE", "IPCNS_SEM", "IPCNS_MSG"])
def test_big_endian_decodes_like_little_endian(kind: str) -> None:
    little, big = _build(kind, _frames("<")[kind], "<"), _build(kind, _frames(">")[kind], ">")
    assert little == image_bytes(kind, _frames("<")[kind]) != big
    with Image(little) as le, Image(big) as be:
        assert (le.header.byteorder, be.header.byteorder) == ("<", ">")
        for pretty in (False, True):
            assert decode.to_dict(be, pretty) == decode.to_dict(le, pretty)
            assert decode.to_dict(be, pretty)["entries"]


@pytest.mark.parametrize("name", ["pstree.img", "pipes-data.img", "sk-queues.img", "pagemap-13375.img",
                                  "inventory.img", "ghost-file-1.img"])
def test_big_endian_real_images(name: str) -> None:
    little, big = (FDS / name).read_bytes(), _reframe(FDS / name, ">")
    assert _reframe(FDS / name, "<") == little  # the reframing itself is faithful
    for pretty in (False, True):
        assert _json(big, name, pretty) == _json(little, name, pretty)


# ---------------------------------------------------------------- command line


def _bad_pstree(folder: Path, name: str = "pstree.img") -> tuple[Path, int]:
    """A pstree image whose 4th size prefix overruns the file, and that prefix's offset."""
    good = image_bytes("PSTREE", _processes(3))
    return _write(folder, name, good + struct.pack("<I", 4096) + bytes(12)), len(good)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("imgtool: error: ")
    return err.rstrip("\n")


def test_cli_decode_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad, offset = _bad_pstree(tmp_path)
    assert cli.main(["decode", "-i", str(bad)]) == 2
    line = _one_error_line(capsys)
    assert "pstree.img" in line and f"offset {offset:#x}" in line and "4096" in line


def test_cli_traceback_lets_the_error_through(tmp_path: Path) -> None:
    bad, offset = _bad_pstree(tmp_path)
    with pytest.raises(TruncatedError, match=f"entry 3 at offset {offset:#x}"):
        cli.main(["--traceback", "decode", "-i", str(bad)])


def test_cli_encode_invalid_json_names_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bad.json"
    src.write_text('{"magic": "PSTREE",\n  "entries": [1,]}')
    out = tmp_path / "out.img"
    assert cli.main(["encode", "-i", str(src), "-o", str(out)]) == 2
    assert _one_error_line(capsys) == f"imgtool: error: {src}: invalid JSON at line 2 column 17: Expecting value"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_cli_encode_refuses_a_nopl_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, out = tmp_path / "pipes.json", tmp_path / "pipes-data.img"
    assert cli.main(["decode", "--nopl", "-i", str(FDS / "pipes-data.img"), "-o", str(doc)]) == 0
    assert json.loads(doc.read_text())["entries"][0]["extra"] == "... <22B>"
    assert cli.main(["encode", "-i", str(doc), "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert line == "imgtool: error: entry 0: extra payload was left out (decoded with --nopl)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipes.json"]




@pytest.mark.parametrize("entry", [
    {"pipe_id": 1, "bytes": 5},                        # extra missing
    {"pipe_id": 1, "bytes": 5, "extra": b64(b"abc")},  # 3 bytes where the entry says 5
], ids=["missing", "short"])
def test_encode_rejects_an_extra_that_does_not_fit(entry: dict[str, Any]) -> None:
    with pytest.raises(EncodeError, match="extra"):
        encode_dict({"magic": "PIPES_DATA", "entries": [entry]})


def test_cli_encode_refuses_a_nopl_ghost_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, out = tmp_path / "ghost.json", tmp_path / "ghost-file-1.img"
    assert cli.main(["decode", "--nopl", "-i", str(FDS / "ghost-file-1.img"), "-o", str(doc)]) == 0
    assert cli.main(["encode", "-i", str(doc), "-o", str(out)]) == 2  # exits 0 and loses the file's content


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_decoding_never_writes_into_the_input_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, elsewhere = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    elsewhere.mkdir()
    for name in ("pstree.img", "pipes-data.img", "pagemap-13375.img", "pages-1.img"):
        shutil.copy(FDS / name, images / name)
    _bad_pstree(images, "pstree-bad.img")
    before = _snapshot(images)
    runs = [
        (["decode", "-i", str(images / "pstree.img")], 0),
        (["decode", "--pretty", "-i", str(images / "pagemap-13375.img"), "-o", str(elsewhere / "p.json")], 0),
        (["decode", "--nopl", "-i", str(images / "pipes-data.img")], 0),
        (["show", str(images / "pipes-data.img")], 0),
        (["info", str(images / "pages-1.img")], 0),
        (["decode", "-i", str(images / "pstree-bad.img"), "-o", str(elsewhere / "bad.json")], 2),
        (["decode", "-i", str(images / "pages-1.img")], 2),
    ]
    for argv, rc in runs:
        assert cli.main(argv) == rc, argv
    capsys.readouterr()
    assert _snapshot(images) == before
    assert (elsewhere / "p.json").is_file()
