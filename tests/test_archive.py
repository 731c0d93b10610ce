"""imgtool.archive: detecting and safely unpacking Podman / CRI-O checkpoint archives."""

from __future__ import annotations

import bz2
import gc
import gzip
import io
import lzma
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from imgtool.crit import decode
from imgtool.format.image import Image
from imgtool.model.archive import (
    DEFAULT_LIMITS,
    ArchiveError,
    ArchiveLimitError,
    Extracted,
    Limits,
    NoImageDirError,
    UnsafeMemberError,
    detect,
    extract,
)

from corpus import CORPUS

PODMAN = CORPUS / "podman" / "checkpoint.tar.gz"
needs_podman = pytest.mark.skipif(not PODMAN.is_file(), reason=f"team corpus absent: no {PODMAN}")

MiB, GiB = 1 << 20, 1 << 30


# -- a sandbox: tempfile's directory inside tmp_path, with an "outside" sentinel around it --------


@dataclass
class Sandbox:
    base: Path       # tmp_path
    archives: Path   # where test archives are written
    outside: Path    # sentinel: must only ever hold tmp/
    tmp: Path        # tempfile.gettempdir() for the test; "../x" from an extraction root lands here

    def listing(self) -> set[str]:
        return {str(p.relative_to(self.base)) for p in self.base.rglob("*")}

    def assert_untouched(self, before: set[str]) -> None:
        assert self.listing() == before
        assert [p.name for p in self.outside.iterdir()] == ["tmp"]
        assert list(self.tmp.iterdir()) == []


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    box = Sandbox(tmp_path, tmp_path / "archives", tmp_path / "outside", tmp_path / "outside" / "tmp")
    for d in (box.archives, box.tmp):
        d.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(box.tmp))
    assert tempfile.gettempdir() == str(box.tmp)
    return box


# -- building archives ----------------------------------------------------------------------

Member = tuple[tarfile.TarInfo, bytes | None]


def info(name: str, type: bytes = tarfile.REGTYPE, *, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname, ti.mode = type, size, linkname, 0o644
    return ti


def file(name: str, data: bytes = b"x") -> Member:
    return info(name, size=len(data)), data


def dir_(name: str) -> Member:
    return info(name, tarfile.DIRTYPE), None


def symlink(name: str, target: str) -> Member:
    return info(name, tarfile.SYMTYPE, linkname=target), None


def hardlink(name: str, target: str) -> Member:
    return info(name, tarfile.LNKTYPE, linkname=target), None


def node(name: str, type: bytes) -> Member:
    ti = info(name, type)
    ti.devmajor, ti.devminor = 1, 3
    return ti, None


VALID = [dir_("checkpoint"), file("checkpoint/inventory.img", b"inventory"), file("checkpoint/pstree.img", b"ps")]


def tar_body(members: list[Member], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """The members' headers and data, without the end-of-archive blocks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
        end = tar.offset
    return buf.getvalue()[:end]


def tar_bytes(members: list[Member], fmt: int = tarfile.GNU_FORMAT, tail: bytes = b"") -> bytes:
    """A complete tar: the members, then ``tail`` (raw blocks), then the end-of-archive blocks."""
    return tar_body(members, fmt) + tail + bytes(1024)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def gnu_sparse(name: str, realsize: int, *, extended: bool = False) -> bytes:
    """An old-GNU sparse member (type 'S') whose map claims ``realsize`` bytes; 512 stored."""
    data = b"x" * 512
    buf = bytearray(info(name, size=len(data)).tobuf(tarfile.GNU_FORMAT))
    buf[156:157] = tarfile.GNUTYPE_SPARSE

    def num(n: int) -> bytes:
        return tarfile.itn(n, 12, tarfile.GNU_FORMAT)

    buf[386:398], buf[398:410] = num(realsize - len(data)), num(len(data))   # one data region at the end
    buf[482], buf[483:495] = int(extended), num(realsize)                   # more map blocks?, real size
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf) + (b"" if extended else data)


class Zeros:
    """A readable of ``n`` zero bytes made on the fly."""

    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, n: int = -1) -> bytes:
        k = self.left if n < 0 else min(n, self.left)
        self.left -= k
        return bytes(k)


def gzip_of_zeros(path: Path, sizes: list[int]) -> Path:
    """A gzip tar of zero-filled members, written streaming: nothing large in memory or on disk."""
    with gzip.open(path, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|", copybufsize=MiB) as tar:
        for i, n in enumerate(sizes):
            tar.addfile(info(f"zeros-{i:02d}", size=n), Zeros(n))
    return path


def files_under(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# -- the real podman archive ----------------------------------------------------------------


@needs_podman
def test_podman_archive(sandbox: Sandbox) -> None:
    assert detect(PODMAN) == "zstd"  # named .tar.gz
    before, corpus_before = sandbox.listing(), sorted(os.listdir(PODMAN.parent))
    with extract(PODMAN) as ex:
        assert ex.root.parent == sandbox.tmp and ex.root.name.startswith("imgtool-")
        assert ex.images == ex.root / "checkpoint"
        assert (ex.images / "inventory.img").is_file() and (ex.images / "pstree.img").is_file()
        with Image.open(ex.images / "pstree.img") as img:
            assert img.magic == "PSTREE"
        config, spec = ex.metadata["config.dump"], ex.metadata["spec.dump"]
        assert config["spec"]["process"]["args"][0] == "/bin/sh"
        assert "/bin/sh" in spec["process"]["args"] and spec["ociVersion"]
        assert ex.metadata["network.status"] is None  # the file holds JSON null
        assert {"checkpoint/", "stats-dump", "devshm-checkpoint.tar", "artifacts/"} <= set(ex.metadata["other"])
        assert ex.stats_dump == ex.root / "stats-dump"
        with Image.open(ex.stats_dump) as img:
            assert img.magic == "STATS"
            assert decode.to_dict(img)["entries"][0]["dump"]["pages_written"] > 0
        reference = CORPUS / "podman" / "extracted" / "checkpoint"
        if reference.is_dir():
            assert files_under(ex.images) == files_under(reference)
        for p in [ex.root, *ex.root.rglob("*")]:
            assert stat.S_IMODE(p.lstat().st_mode) & 0o077 == 0  # 0o600 files, 0o700 dirs
        root = ex.root
    assert not root.exists() and ex.closed
    sandbox.assert_untouched(before)
    assert sorted(os.listdir(PODMAN.parent)) == corpus_before


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "zstd":  # two frames, as pzstd or concatenated files would give
        half, cz = len(data) // 2, zstandard.ZstdCompressor()
        return cz.compress(data[:half]) + cz.compress(data[half:])
    return {"tar": bytes, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[kind](data)


@needs_podman
@pytest.mark.parametrize(("kind", "name"), [
    ("tar", "repacked.tar.gz"), ("gzip", "repacked.tar"), ("bzip2", "repacked.tar.zst"),
    ("xz", "repacked.tgz"), ("zstd", "repacked.tar"),
])
def test_repacked_podman_content_opens_the_same(sandbox: Sandbox, kind: str, name: str) -> None:
    with extract(PODMAN) as orig:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(orig.root, arcname=".")  # "./checkpoint/...", unlike podman's own names
        path = write(sandbox.archives / name, _compress(kind, buf.getvalue()))
        assert detect(path) == kind
        with extract(path) as ex:
            assert files_under(ex.images) == files_under(orig.images)
            assert ex.metadata == orig.metadata
            assert ex.stats_dump is not None
            with Image.open(ex.stats_dump) as img:
                assert img.magic == "STATS"


# -- layout, metadata, links that are fine ------------------------------------------------------


def test_metadata_problems_are_strings(sandbox: Sandbox) -> None:
    path = write(sandbox.archives / "meta.tar", tar_bytes([
        *VALID, file("config.dump", b"{not json"), dir_("spec.dump"),
        file("status.dump", b'{"big": "' + b"x" * 100 + b'"}'),
        file("network.status", b"null"), symlink("pod.options", "checkpoint/inventory.img"),
        file("pod.dump", b"\xff\xfe\x00garbage"), file("rootfs-diff.tar", b""), file("deleted.files", b"[]"),
        dir_("volumes"),
    ]))
    with extract(path, limits=Limits(max_metadata_bytes=64)) as ex:
        meta = ex.metadata
        assert meta["config.dump"].startswith("invalid JSON: ")
        assert meta["spec.dump"] == "not a regular file"
        assert meta["status.dump"].startswith("not parsed: ") and "max_metadata_bytes" in meta["status.dump"]
        assert meta["network.status"] is None
        assert meta["pod.options"] == "a symlink, not parsed"
        assert meta["pod.dump"].startswith("invalid JSON: ")
        assert meta["other"] == ["checkpoint/", "deleted.files", "rootfs-diff.tar", "volumes/"]
        assert ex.stats_dump is None


@pytest.mark.parametrize(("members", "where"), [
    ([file("inventory.img"), file("pstree.img")], "."),
    ([dir_("checkpoint"), file("checkpoint/descriptors.json"), file("dump-1/inventory.img")], "dump-1"),
    ([file("b/x"), file("a/inventory.img"), file("c/inventory.img")], "a"),
])
def test_image_dir_search(sandbox: Sandbox, members: list[Member], where: str) -> None:
    with extract(write(sandbox.archives / "a.tar", tar_bytes(members))) as ex:
        assert ex.images == (ex.root / where if where != "." else ex.root)


def test_links_inside_are_kept(sandbox: Sandbox) -> None:
    path = write(sandbox.archives / "links.tar", tar_bytes([
        dir_("pre"), file("pre/inventory.img", b"pre"),
        *VALID, symlink("checkpoint/parent", "../pre"), hardlink("checkpoint/pages-2.img", "checkpoint/pstree.img"),
        symlink("checkpoint/self", "."),
    ]))
    with extract(path) as ex:
        parent = ex.images / "parent"
        assert parent.is_symlink() and os.readlink(parent) == "../pre"
        assert (parent / "inventory.img").read_bytes() == b"pre"
        twin = ex.images / "pages-2.img"
        assert twin.read_bytes() == b"ps" and twin.stat().st_ino == (ex.images / "pstree.img").stat().st_ino


def test_no_image_dir(sandbox: Sandbox) -> None:
    path = write(sandbox.archives / "noinv.tar",
                 tar_bytes([dir_("checkpoint"), file("checkpoint/pstree.img"), file("config.dump", b"{}"),
                            file("stuff/deeper/inventory.img")]))
    before = sandbox.listing()
    with pytest.raises(NoImageDirError, match="no CRIU image directory") as err:
        extract(path)
    assert str(err.value).startswith(str(path) + ": ")
    sandbox.assert_untouched(before)


# -- cleanup -------------------------------------------------------------------------------------


def test_close_and_forgetting_remove_the_directory(sandbox: Sandbox) -> None:
    path = write(sandbox.archives / "ok.tar", tar_bytes(VALID))
    ex = extract(path)
    root = ex.root
    assert isinstance(ex, Extracted) and root.is_dir() and not ex.closed
    ex.close()
    ex.close()
    assert not root.exists() and ex.closed
    root = extract(path).root  # never closed: the finalizer removes it once the object is gone
    gc.collect()
    assert not root.exists()
    assert list(sandbox.tmp.iterdir()) == []


# -- hostile archives ---------------------------------------------------------------------------

Hostile = Callable[[Sandbox], list[Member]]

HOSTILE: list[tuple[str, Hostile, type[ArchiveError], str]] = [
    ("dotdot", lambda s: [*VALID, file("../escape")], UnsafeMemberError, "../escape"),
    ("dotdot-inside", lambda s: [*VALID, file("checkpoint/../../escape")], UnsafeMemberError,
     "checkpoint/../../escape"),
    ("absolute", lambda s: [*VALID, file("/abs/path")], UnsafeMemberError, "/abs/path"),
    ("symlink-to-etc", lambda s: [*VALID, symlink("link", "/etc"), file("link/passwd")], UnsafeMemberError, "link"),
    ("symlink-to-sentinel", lambda s: [*VALID, symlink("link", str(s.outside)), file("link/planted")],
     UnsafeMemberError, "link"),
    ("symlink-dotdot", lambda s: [*VALID, symlink("x", "../../x")], UnsafeMemberError, "x"),
    ("symlink-dotdot-deeper", lambda s: [*VALID, symlink("checkpoint/up", "../../x")], UnsafeMemberError,
     "checkpoint/up"),
    ("symlink-chain", lambda s: [*VALID, symlink("b", "."), symlink("c", "b/../x")], UnsafeMemberError, "c"),
    ("through-inner-symlink", lambda s: [*VALID, symlink("a", "checkpoint"), file("a/planted")],
     UnsafeMemberError, "a/planted"),
    ("hardlink-etc-passwd", lambda s: [*VALID, hardlink("pw", "/etc/passwd")], UnsafeMemberError, "pw"),
    ("hardlink-dotdot", lambda s: [*VALID, hardlink("h", "../outside-file")], UnsafeMemberError, "h"),
    ("hardlink-to-nothing", lambda s: [*VALID, hardlink("h", "checkpoint/missing")], UnsafeMemberError, "h"),
    ("hardlink-to-dir", lambda s: [*VALID, hardlink("h", "checkpoint")], UnsafeMemberError, "h"),
    ("char-device", lambda s: [*VALID, node("checkpoint/null", tarfile.CHRTYPE)], UnsafeMemberError,
     "checkpoint/null"),
    ("block-device", lambda s: [*VALID, node("sda", tarfile.BLKTYPE)], UnsafeMemberError, "sda"),
    ("fifo", lambda s: [*VALID, node("pipe", tarfile.FIFOTYPE)], UnsafeMemberError, "pipe"),
    ("duplicate-file", lambda s: [*VALID, file("checkpoint/inventory.img", b"again")],
     UnsafeMemberError, "checkpoint/inventory.img"),
    ("dir-over-file", lambda s: [*VALID, dir_("checkpoint/pstree.img")], UnsafeMemberError, "checkpoint/pstree.img"),
    ("file-under-file", lambda s: [*VALID, file("checkpoint/pstree.img/x")], UnsafeMemberError,
     "checkpoint/pstree.img/x"),
]


@pytest.mark.parametrize(("build", "error", "member"), [pytest.param(*h[1:], id=h[0]) for h in HOSTILE])
def test_hostile_member_refused(sandbox: Sandbox, build: Hostile, error: type[ArchiveError], member: str) -> None:
    path = write(sandbox.archives / "evil.tar", tar_bytes(build(sandbox)))
    before = sandbox.listing()
    with pytest.raises(error) as err:
        extract(path)
    msg = str(err.value)
    assert err.value.member == member
    assert msg.startswith(f"{path}: member {member!r}: ") and "\n" not in msg
    sandbox.assert_untouched(before)
    assert not Path("/abs/path").exists()


def _refused(sandbox: Sandbox, path: Path, error: type[ArchiveError], limits: Limits = DEFAULT_LIMITS,
             member: str | None = None, match: str | None = None) -> ArchiveError:
    before = sandbox.listing()
    with pytest.raises(error, match=match) as err:
        extract(path, limits=limits)
    if member is not None:
        assert err.value.member == member and repr(member) in str(err.value)
    assert str(err.value).startswith(str(path) + ": ")
    sandbox.assert_untouched(before)
    return err.value


def test_gnu_sparse_10gb_refused(sandbox: Sandbox) -> None:
    path = write(sandbox.archives / "sparse.tar", tar_bytes(VALID, tail=gnu_sparse("checkpoint/pages-1.img", 10 * GiB)))
    assert path.stat().st_size < 64 * 1024
    member = "checkpoint/pages-1.img"
    _refused(sandbox, path, ArchiveLimitError, Limits(max_member_bytes=GiB), member, "expanded size 10GB")
    _refused(sandbox, path, ArchiveLimitError, Limits(max_total_bytes=GiB), member, "max_total_bytes")


def test_sparse_member_counts_expanded_size(sandbox: Sandbox) -> None:
    path = write(sandbox.archives / "sparse.tar", tar_bytes(VALID, tail=gnu_sparse("sparse", 4096)))
    with extract(path) as ex:
        assert (ex.root / "sparse").read_bytes() == bytes(3584) + b"x" * 512
    _refused(sandbox, path, ArchiveLimitError, Limits(max_total_bytes=4096), "sparse")


def test_10gb_header_on_a_short_stream(sandbox: Sandbox) -> None:
    head = info("checkpoint/pages-1.img", size=10 * GiB).tobuf(tarfile.GNU_FORMAT)
    path = write(sandbox.archives / "liar.tar", tar_body(VALID) + head + b"y" * 4096)
    _refused(sandbox, path, ArchiveLimitError, Limits(max_member_bytes=GiB), "checkpoint/pages-1.img", "size 10GB")
    # within the limits, the stream simply ends: a truncated archive, and 4 KiB written at most
    err = _refused(sandbox, path, ArchiveError, member="checkpoint/pages-1.img", match="truncated")
    assert type(err) is ArchiveError


def test_gzip_bomb_refused(sandbox: Sandbox) -> None:
    path = gzip_of_zeros(sandbox.archives / "bomb.tar.gz", [200 * MiB])
    assert path.stat().st_size < 2 * MiB
    _refused(sandbox, path, ArchiveLimitError, Limits(max_total_bytes=50 * MiB), "zeros-00", "max_total_bytes")


def test_gzip_bomb_of_many_members_refused(sandbox: Sandbox) -> None:
    path = gzip_of_zeros(sandbox.archives / "bomb.tar.gz", [8 * MiB] * 25)
    _refused(sandbox, path, ArchiveLimitError, Limits(max_total_bytes=50 * MiB), "zeros-06", "max_total_bytes")


def test_bytes_are_counted_as_written(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if a member yields more than its header says, writing stops at the limit."""
    path = write(sandbox.archives / "small.tar", tar_bytes([*VALID, file("liar", b"z" * 1024)]))
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: Zeros(2 * MiB))
    _refused(sandbox, path, ArchiveLimitError, Limits(max_total_bytes=MiB), "checkpoint/inventory.img",
             "data goes past max_total_bytes")
    _refused(sandbox, path, ArchiveLimitError, Limits(max_member_bytes=MiB), "checkpoint/inventory.img",
             "data goes past max_member_bytes")


def test_too_many_members(sandbox: Sandbox) -> None:
    path = write(sandbox.archives / "many.tar", tar_bytes([*VALID, *(file(f"checkpoint/f{i}") for i in range(10))]))
    _refused(sandbox, path, ArchiveLimitError, Limits(max_members=5), "checkpoint/f2", "max_members")


def test_path_too_long(sandbox: Sandbox) -> None:
    name = "checkpoint/" + "a" * 100
    path = write(sandbox.archives / "long.tar", tar_bytes([*VALID, file(name)]))
    _refused(sandbox, path, ArchiveLimitError, Limits(max_path_bytes=64), name, "max_path_bytes")


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_huge_header_data_refused(sandbox: Sandbox, fmt: int) -> None:
    """GNU long names and PAX records are read whole by tarfile: capped by max_header_bytes."""
    ti, data = file("checkpoint/" + "n" * (2 * MiB))
    path = write(sandbox.archives / "longname.tar", tar_bytes([*VALID, (ti, data)], fmt))
    _refused(sandbox, path, ArchiveLimitError, match="max_header_bytes")


# -- corrupt and truncated archives ---------------------------------------------------------------


@needs_podman
@pytest.mark.parametrize("damage", ["half", "tail", "flip"])
def test_damaged_podman_archive(sandbox: Sandbox, damage: str) -> None:
    data = bytearray(PODMAN.read_bytes())
    if damage == "flip":
        data[len(data) // 2: len(data) // 2 + 64] = bytes(b ^ 0x5A for b in data[len(data) // 2: len(data) // 2 + 64])
    else:
        data = data[: len(data) // 2 if damage == "half" else len(data) - 10]
    path = write(sandbox.archives / "damaged.tar.gz", bytes(data))
    assert detect(path) == "zstd"
    err = _refused(sandbox, path, ArchiveError)
    assert type(err) is ArchiveError and "\n" not in str(err)


def _pax_bad_sparse_map() -> bytes:
    ti, data = file("checkpoint/pages-1.img", b"p" * 10)
    ti.pax_headers = {"GNU.sparse.major": "0", "GNU.sparse.minor": "1", "GNU.sparse.map": "a,b",
                      "GNU.sparse.size": "10"}
    return tar_bytes([*VALID, (ti, data)], tarfile.PAX_FORMAT)


CORRUPT: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty", lambda: b"", "not a tar"),
    ("garbage", lambda: b"\x00\x01garbage" * 600, "not a tar"),
    ("tar-without-end-blocks", lambda: tar_body(VALID),
     "end-of-archive"),
    ("tar-cut-mid-header", lambda: tar_body(VALID)[:512 * 3 + 100], "truncated"),
    ("tar-garbage-header", lambda: tar_body(VALID[:2]) + b"\x01" * 512 + bytes(1024), "invalid tar header"),
    ("gzip-truncated", lambda: gzip.compress(tar_bytes(VALID))[:60], "truncated|end"),
    ("gzip-bad-crc", lambda: (lambda g: g[:-8] + bytes(8))(gzip.compress(tar_bytes(VALID))), "CRC|corrupt"),
    ("bzip2-truncated", lambda: bz2.compress(tar_bytes(VALID))[:50], "corrupt|truncated|readable"),
    ("xz-truncated", lambda: lzma.compress(tar_bytes(VALID))[:80], "corrupt|truncated|readable"),
    ("sparse-extension-missing", lambda: tar_body(VALID) + gnu_sparse("s", 4096, extended=True), "corrupt"),
    ("pax-bad-sparse-map", _pax_bad_sparse_map, "corrupt"),
]


@pytest.mark.parametrize(("make", "match"), [pytest.param(*c[1:], id=c[0]) for c in CORRUPT])
def test_corrupt_archive(sandbox: Sandbox, make: Callable[[], bytes], match: str) -> None:
    path = write(sandbox.archives / "corrupt.tar", make())
    err = _refused(sandbox, path, ArchiveError, match=match)
    assert type(err) is ArchiveError


def test_not_archives(sandbox: Sandbox) -> None:
    assert detect(sandbox.archives) is None
    with pytest.raises(ArchiveError, match="is a directory"):
        extract(sandbox.archives)
    with pytest.raises(ArchiveError, match="cannot read"):
        detect(sandbox.archives / "missing")
    assert detect(write(sandbox.archives / "x.img", b"\x54\x50\x00\x00" * 200)) is None
    assert list(sandbox.tmp.iterdir()) == []
