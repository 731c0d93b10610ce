"""Checkpoint archives (Podman, CRI-O, Kubernetes): detect, unpack safely, find the CRIU images.

``podman container checkpoint --export`` and CRI-O / the kubelet write a tar (plain, gzip or, by
default since podman 4, zstd whatever the file is called) holding the CRIU image directory
``checkpoint/``, the engine's JSON files (``config.dump``, ``spec.dump``, ...), ``stats-dump`` and
other artifacts.  ``extract()`` unpacks one into a private temporary directory::

    with extract("checkpoint.tar.gz") as ex:
        Image.open(ex.images / "pstree.img")
        ex.metadata["config.dump"]["spec"]["process"]["args"]

Archives are untrusted input.  Nothing is ever written outside the temporary directory:

- only regular files, directories, symlinks and hard links are accepted; device nodes, fifos and
  every other member type are refused;
- names must be relative and free of ``..``; each directory on the way is opened with
  ``O_NOFOLLOW`` (never through a symlink) and files are created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` (no overwriting, no following), mode 0o600, directories 0o700;
- a symlink's target must be relative and stay inside the directory, checked on its text when it
  is unpacked and again with ``realpath`` once everything is unpacked (links chain); CRIU image
  directories hold at most a relative ``parent`` link to an earlier dump in the same archive;
- a hard link must point at a regular file unpacked before it;
- ``Limits`` bounds the members, the bytes of each member and of all of them (GNU sparse members
  count at their expanded size), path length and tar header data (PAX records, long names, sparse
  maps, which tarfile would otherwise read into memory whole).  Bytes are counted as they are
  written, not taken from headers.

Decompression is ours (``zstandard``, ``gzip``, ``bz2``, ``lzma`` streams) and tarfile reads the
decompressed bytes in stream mode (``r|``), so no archive is held in memory and the header limit
sees decompressed bytes.  Every failure is an ``ArchiveError`` naming the archive (and the member),
raised after the temporary directory has been removed.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import json
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import weakref
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from imgtool.errors import ArchiveError, ArchiveLimitError, NoImageDirError, UnsafeMemberError
from imgtool.format.extras import human_size

__all__ = [
    "DEFAULT_LIMITS", "ENGINE_FILES", "ArchiveError", "ArchiveLimitError", "Extracted", "Limits", "NoImageDirError",
    "UnsafeMemberError", "detect", "extract",
]

GiB = 1 << 30
MiB = 1 << 20

# JSON files written by podman / CRI-O next to checkpoint/, parsed into Extracted.metadata.
ENGINE_FILES = ("config.dump", "spec.dump", "status.dump", "network.status", "pod.options", "pod.dump")

_CHUNK = MiB
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NODE_KINDS = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one archive may unpack to."""

    max_total_bytes: int = 64 * GiB      # data of all members together
    max_members: int = 100_000           # members of any type
    max_member_bytes: int = 32 * GiB     # one member (sparse members at their expanded size)
    max_path_bytes: int = 4096           # a member's name or link target, UTF-8
    max_header_bytes: int = MiB          # tar header data of one member (PAX, long names, sparse maps)
    max_metadata_bytes: int = 64 * MiB   # larger engine JSON files are listed, not parsed


DEFAULT_LIMITS = Limits()


# -- detecting ---------------------------------------------------------------------


def detect(path: str | os.PathLike[str]) -> str | None:
    """The archive kind by content: "tar", "gzip", "zstd", "bzip2", "xz", or None.

    None for directories, other non-regular files and anything else (including pre-POSIX tars
    without the ustar magic).
    """
    name = os.fspath(path)
    try:
        if not stat.S_ISREG(os.stat(name).st_mode):
            return None
        with open(name, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise ArchiveError(f"cannot read: {exc.strerror}", path=name) from None
    return _kind(head)


def _kind(head: bytes) -> str | None:
    if head[:4] == b"\x28\xb5\x2f\xfd" or (len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18"):
        return "zstd"  # a frame, or a skippable frame (pzstd starts with one)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[3:4] != b"0":
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    return None


# -- the extracted archive -------------------------------------------------------------


class Extracted:
    """An unpacked checkpoint archive in a private temporary directory, removed by ``close()``.

    ``root`` is that directory, ``images`` the CRIU image directory in it, ``metadata`` the
    parsed engine JSON files (a str in place of a file's value says why it was not parsed) plus
    ``"other"``: the names of the other top-level entries, directories ending in "/".
    ``stats_dump`` is the archive's top-level ``stats-dump`` image, if any.
    """

    def __init__(self, root: Path, images: Path, metadata: dict[str, Any], stats_dump: Path | None) -> None:
        self.root, self.images, self.metadata, self.stats_dump = root, images, metadata, stats_dump
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(root), ignore_errors=True)

    @property
    def closed(self) -> bool:
        return not self._cleanup.alive

    def close(self) -> None:
        """Remove the temporary directory (idempotent)."""
        self._cleanup()

    def __enter__(self) -> Extracted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else str(self.images)
        return f"<Extracted {state}>"


def extract(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Extracted:
    """Unpack a checkpoint archive into a new ``imgtool-*`` temporary directory; see the module doc."""
    archive = os.fspath(path)
    kind = detect(archive)
    if kind is None:
        what = "is a directory, not an archive" if os.path.isdir(archive) else \
            "not a tar, gzip, zstd, bzip2 or xz archive"
        raise ArchiveError(what, path=archive)
    root = Path(tempfile.mkdtemp(prefix="imgtool-"))
    try:
        with _tar_stream(archive, kind, limits) as tar:
            _Unpacker(root, archive, limits).run(tar)
        images = _images_dir(root, archive)
        metadata = _metadata(root, limits)
        stats = root / "stats-dump"
        return Extracted(root, images, metadata, stats if stats.is_file() and not stats.is_symlink() else None)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


# -- reading the tar stream ---------------------------------------------------------------

# What tarfile and the decompressors raise on corrupt input; ValueError and IndexError come from
# tarfile's parsing of hostile PAX sparse maps and truncated GNU sparse extension blocks.
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, IndexError, zlib.error, lzma.LZMAError,
                zstandard.ZstdError)


class _Source:
    """The decompressed byte stream under tarfile; caps how much one member's headers may read."""

    def __init__(self, stream: IO[bytes], archive: str, header_limit: int) -> None:
        self.stream, self.archive, self.header_limit = stream, archive, header_limit
        self.pos = 0
        self.cap: int | None = None  # stream position header parsing may not pass

    def read(self, n: int = -1) -> bytes:
        if self.cap is not None:
            if self.pos >= self.cap:
                raise ArchiveLimitError(f"tar header data at offset {self.pos:#x} goes past max_header_bytes "
                                        f"({human_size(self.header_limit)})", path=self.archive)
            n = self.cap - self.pos if n < 0 else min(n, self.cap - self.pos)
        data = self.stream.read(n)
        self.pos += len(data)
        return data

    @contextlib.contextmanager
    def header(self) -> Iterator[None]:
        outer = self.cap
        if outer is None:
            self.cap = self.pos + self.header_limit
        try:
            yield
        finally:
            self.cap = outer


def _strict_info(source: _Source) -> type[tarfile.TarInfo]:
    """A TarInfo class whose headers are read under ``source``'s cap and that refuses silent ends.

    tarfile stops without error at a short or garbled header after the first one; a checkpoint
    cut there would unpack partially, so only the end-of-archive zero block ends the archive.
    """

    class _Info(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
            with source.header():
                try:
                    return super().fromtarfile(tar)
                except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
                    if tar.offset == 0:
                        raise
                    raise tarfile.ReadError("ends without an end-of-archive block (truncated?)") from None
                except tarfile.InvalidHeaderError as exc:
                    if tar.offset == 0:
                        raise
                    raise tarfile.ReadError(f"invalid tar header at offset {tar.offset:#x}: {exc}") from None

    return _Info


def _decompressed(raw: IO[bytes], kind: str) -> IO[bytes]:
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw)
    if kind == "xz":
        return lzma.LZMAFile(raw)
    return raw


@contextlib.contextmanager
def _tar_stream(archive: str, kind: str, limits: Limits) -> Iterator[tarfile.TarFile]:
    with contextlib.ExitStack() as stack:
        try:
            raw = stack.enter_context(open(archive, "rb"))
            source = _Source(stack.enter_context(_decompressed(raw, kind)), archive, limits.max_header_bytes)
            tar = stack.enter_context(tarfile.open(fileobj=source, mode="r|", tarinfo=_strict_info(source)))
        except _READ_ERRORS as exc:
            what = "tar archive" if kind == "tar" else f"tar archive inside {kind}"
            raise ArchiveError(f"not a readable {what}: {exc}", path=archive) from None
        yield tar


# -- unpacking ----------------------------------------------------------------------------


class _OverBudget(Exception):
    pass


def _copy(read: Callable[[int], bytes], fd: int, budget: int) -> int:
    """Copy ``read`` chunks to ``fd`` until EOF; raise _OverBudget once more than ``budget`` came."""
    written = 0
    with open(fd, "wb", closefd=False) as out:
        while chunk := read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise _OverBudget
            out.write(chunk)
    return written


class _Unpacker:
    """Writes the members of one tar stream under ``root``, refusing anything unsafe."""

    def __init__(self, root: Path, archive: str, limits: Limits) -> None:
        self.root, self.archive, self.limits = root, archive, limits
        self.root_fd = -1
        self.members = 0
        self.total = 0
        self.files: set[tuple[str, ...]] = set()          # regular files written: hard link targets
        self.links: list[tuple[str, tuple[str, ...]]] = []  # symlinks, checked again at the end

    def run(self, tar: tarfile.TarFile) -> None:
        self.root_fd = os.open(self.root, _DIR_FLAGS)
        try:
            last = None
            while (member := self._next(tar, last)) is not None:
                self._member(tar, member)
                tar.members.clear()  # stream mode keeps every TarInfo otherwise
                last = member.name
            self._check_links()
        finally:
            os.close(self.root_fd)

    # errors

    def _unsafe(self, member: str, what: str) -> UnsafeMemberError:
        return UnsafeMemberError(what, path=self.archive, member=member)

    def _limit(self, member: str, what: str) -> ArchiveLimitError:
        return ArchiveLimitError(what, path=self.archive, member=member)

    def _next(self, tar: tarfile.TarFile, last: str | None) -> tarfile.TarInfo | None:
        try:
            return tar.next()
        except _READ_ERRORS as exc:
            where = "" if last is None else f" after member {last!r}"
            raise ArchiveError(f"corrupt or truncated archive{where}: {exc}", path=self.archive) from None

    # members

    def _member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise self._limit(m.name, f"more than max_members ({self.limits.max_members}) members")
        parts = self._parts(m.name, m.name, "path")
        if not parts:
            if m.isdir():
                return  # "." or "./": the root itself
            raise self._unsafe(m.name, "empty path")
        if m.isreg():
            self._file(tar, m, parts)
        elif m.isdir():
            self._dir(m.name, parts)
        elif m.issym():
            self._symlink(m, parts)
        elif m.islnk():
            self._hardlink(m, parts)
        else:
            kind = _NODE_KINDS.get(m.type, f"member of tar type {m.type!r}")
            raise self._unsafe(m.name, f"{kind} refused: only files, directories and links are unpacked")

    def _parts(self, member: str, text: str, what: str) -> tuple[str, ...]:
        """``text`` (a name or hard link target) split into components, or refused."""
        if "\0" in text:
            raise self._unsafe(member, f"{what} holds a NUL byte")
        if len(text.encode("utf-8", "surrogateescape")) > self.limits.max_path_bytes:
            raise self._limit(member, f"{what} longer than max_path_bytes ({self.limits.max_path_bytes})")
        if text.startswith("/"):
            raise self._unsafe(member, f"absolute {what} {text!r} refused")
        parts = tuple(p for p in text.split("/") if p not in ("", "."))
        if ".." in parts:
            raise self._unsafe(member, f"{what} {text!r} has a '..' component: it could leave the directory")
        return parts

    @contextlib.contextmanager
    def _parent(self, member: str, parts: tuple[str, ...]) -> Iterator[int]:
        """An fd of the directory that holds ``parts[-1]``, made as needed, never through a symlink."""
        fd = self.root_fd
        try:
            for comp in parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(comp, 0o700, dir_fd=fd)
                try:
                    sub = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    raise self._unsafe(member, f"path goes through {comp!r}, a symlink or not a directory") from None
                if fd != self.root_fd:
                    os.close(fd)
                fd = sub
            yield fd
        finally:
            if fd != self.root_fd:
                os.close(fd)

    def _dir(self, member: str, parts: tuple[str, ...]) -> None:
        with self._parent(member, parts) as fd:
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=fd)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
                    raise self._unsafe(member, "directory over an earlier member that is not one") from None

    def _file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        budget = self._budget(m)
        src = tar.extractfile(m)
        assert src is not None  # a regular member always has a reader
        with self._parent(m.name, parts) as dfd:
            try:
                fd = os.open(parts[-1], _FILE_FLAGS, 0o600, dir_fd=dfd)
            except FileExistsError:
                raise self._unsafe(m.name, "a member of that name was already unpacked") from None
            except OSError as exc:
                raise ArchiveError(f"cannot create: {exc.strerror}", path=self.archive, member=m.name) from None
            try:
                self.total += _copy(self._reader(m.name, src), fd, budget)
            except _OverBudget:
                raise self._limit(m.name, f"data goes past {self._budget_name(m)}") from None
            except OSError as exc:  # writing: reading errors are ArchiveError already
                raise ArchiveError(f"cannot write: {exc.strerror}", path=self.archive, member=m.name) from None
            finally:
                os.close(fd)
        self.files.add(parts)

    def _budget(self, m: tarfile.TarInfo) -> int:
        """Bytes ``m`` may write; refuses it now if its header already claims more."""
        lim, left = self.limits, self.limits.max_total_bytes - self.total
        size = ("expanded size " if m.issparse() else "size ") + human_size(m.size)
        if m.size > lim.max_member_bytes:
            raise self._limit(m.name, f"{size} is over max_member_bytes ({human_size(lim.max_member_bytes)})")
        if m.size > left:
            raise self._limit(m.name, f"{size} would take the total past max_total_bytes "
                                      f"({human_size(lim.max_total_bytes)})")
        return min(lim.max_member_bytes, left)

    def _budget_name(self, m: tarfile.TarInfo) -> str:
        lim = self.limits
        if lim.max_member_bytes <= lim.max_total_bytes - self.total:
            return f"max_member_bytes ({human_size(lim.max_member_bytes)})"
        return f"max_total_bytes ({human_size(lim.max_total_bytes)})"

    def _reader(self, member: str, src: IO[bytes]) -> Callable[[int], bytes]:
        def read(n: int) -> bytes:
            try:
                return src.read(n)
            except _READ_ERRORS as exc:
                raise ArchiveError(f"corrupt or truncated data: {exc}", path=self.archive, member=member) from None
        return read

    def _symlink(self, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        target = m.linkname
        if not target or "\0" in target or len(target.encode("utf-8", "surrogateescape")) > self.limits.max_path_bytes:
            raise self._unsafe(m.name, "symlink with an empty, NUL-holding or overlong target")
        if target.startswith("/"):
            raise self._unsafe(m.name, f"symlink to absolute path {target!r} refused")
        resolved = posixpath.normpath(posixpath.join(*parts[:-1], target))
        if resolved == ".." or resolved.startswith("../"):
            raise self._unsafe(m.name, f"symlink to {target!r} leaves the extraction directory")
        with self._parent(m.name, parts) as fd:
            try:
                os.symlink(target, parts[-1], dir_fd=fd)
            except FileExistsError:
                raise self._unsafe(m.name, "a member of that name was already unpacked") from None
        self.links.append((m.name, parts))

    def _hardlink(self, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        target = self._parts(m.name, m.linkname, "hard link target")
        if target not in self.files:
            raise self._unsafe(m.name, f"hard link to {m.linkname!r}, which is not a regular file unpacked before it")
        with self._parent(m.name, target) as src_fd, self._parent(m.name, parts) as dst_fd:
            try:
                os.link(target[-1], parts[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            except FileExistsError:
                raise self._unsafe(m.name, "a member of that name was already unpacked") from None
        self.files.add(parts)

    def _check_links(self) -> None:
        """Every symlink, followed through the others, must still land inside the root."""
        real_root = os.path.realpath(self.root)
        for member, parts in self.links:
            real = os.path.realpath(os.path.join(self.root, *parts))
            if real != real_root and not real.startswith(real_root + os.sep):
                raise self._unsafe(member, "symlink leaves the extraction directory through other symlinks")


# -- what was unpacked ---------------------------------------------------------------------


def _holds_inventory(d: Path) -> bool:
    return d.is_dir() and not d.is_symlink() and (d / "inventory.img").is_file()


def _images_dir(root: Path, archive: str) -> Path:
    """checkpoint/, else the root, else the first directory one level down with an inventory.img."""
    for cand in (root / "checkpoint", root, *sorted(root.iterdir())):
        if _holds_inventory(cand):
            return cand
    raise NoImageDirError("no CRIU image directory: no inventory.img in checkpoint/, the archive root "
                          "or any directory one level down", path=archive)


def _read_json(path: Path, cap: int) -> Any:
    """The parsed file, or a str saying why it could not be."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return "a symlink, not parsed" if exc.errno == errno.ELOOP else f"cannot open: {exc.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size > cap:
            return f"not parsed: {human_size(st.st_size)} is over max_metadata_bytes ({human_size(cap)})"
        with open(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1)
    finally:
        os.close(fd)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        return f"invalid JSON: {exc}"


def _metadata(root: Path, limits: Limits) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    other: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name in ENGINE_FILES:
            meta[entry.name] = _read_json(entry, limits.max_metadata_bytes)
        else:
            other.append(entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
    meta["other"] = other
    return meta
