"""Checkpoint archives (Podman, CRI-O, Kubernetes): detect, open without unpacking what is not read.

``podman container checkpoint --export`` and CRI-O / the kubelet write a tar (plain, gzip or, by
default since podman 4, zstd whatever the file is called) holding the CRIU image directory
``checkpoint/``, the engine's JSON files (``config.dump``, ``spec.dump``, ...), ``stats-dump`` and
other artifacts (``rootfs-diff.tar``, ...).

``open_archive()`` (what ``Dump.open`` uses) writes only what commands read, and nothing for a plain tar::

    with open_archive("checkpoint.tar.zst") as ar:
        Image.open(path := ar.images / "pstree.img", ar.backing(path))
        ar.metadata["config.dump"]["spec"]["process"]["args"]

- pass 1 streams the archive once into a private temporary directory.  A compressed archive's small
  members are unpacked there: the images but the pages files, the engine files, other members up to
  ``SMALL_OTHER_BYTES``.  Bigger artifacts and GPU pages are skipped: an empty file of their size (a hole)
  stands in for them, so that sizes are right, but their bytes are not there (``Archive.skipped`` names
  them); nothing is written for them however big they claim to be;
- every other member of a plain tar, and each ``pages-N.img`` of a compressed one, becomes an empty
  placeholder of its size (a hole: no disk space); ``Archive.backing`` says where its bytes are.  A plain
  tar's members are read in place, at their offset in the tar (mmap and pread of the tar file itself; a
  sparse member is unpacked instead): nothing is written.  A compressed archive's pages files are unpacked
  by one more streaming pass when a pages file is first opened
  (``Archive.unpack_later``: once, every pages file a pagemap names, each only up to what its pagemaps say it
  holds, after a check of the free space);
- a process's argv, which ``ps`` and ``summary`` show, is at the top of its stack: the last pages of its
  pages file.  Pass 1 of a compressed archive keeps the last ``TAIL_BYTES`` of each pages file in memory,
  then writes into the placeholders just the argv bytes the pagemaps place there; a store reading only
  such a window (``cmdline_of``) is served from the placeholders, without the second pass;
- ``cache`` / ``IMGTOOL_CACHE``: a compressed archive is unpacked under ``DIR/<kind>-<dev>-<ino>-<size>-
  <mtime>/`` instead, pass 1 and the pages files once for all the commands that follow (off by default;
  flock'ed; never cleaned by imgtool: remove the directory to reclaim the space);
- SIGTERM and SIGHUP are turned into ``SystemExit`` while imgtool runs (``catch_signals``), like SIGINT's
  ``KeyboardInterrupt``: the temporary directory goes with the exception or the finalizer at exit;
  ``remove_tree`` removes any depth of nesting without recursion.

``extract()`` is the old whole unpack, kept for callers that want every member on disk::

    with extract("checkpoint.tar.gz") as ex:
        Image.open(ex.images / "pstree.img")

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
  written, not taken from headers; members skipped or left for later count only once written.

Decompression is ours (``zstandard``, ``gzip``, ``bz2``, ``lzma`` streams) and tarfile reads the
decompressed bytes as a file that seeks forward only (``_Source``: members not read are skipped by an lseek
in a plain tar, by decompressing into a scratch buffer otherwise), so no archive is held in memory and the
header limit sees decompressed bytes.  Every
failure is an ``ArchiveError`` naming the archive (and the member), raised after the temporary
directory has been removed.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import fcntl
import gzip
import io
import json
import lzma
import os
import posixpath
import re
import signal
import stat
import tarfile
import tempfile
import threading
import weakref
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from imgtool.errors import ArchiveError, ArchiveLimitError, ImgtoolError, NoImageDirError, UnsafeMemberError
from imgtool.format import located, pagemap
from imgtool.format.extras import human_size
from imgtool.format.flags import PE_PARENT, PE_PRESENT
from imgtool.format.image import Image
from imgtool.format.located import Backing
from imgtool.memory.vma import page_size_of

__all__ = [
    "CACHE_ENV", "DEFAULT_LIMITS", "ENGINE_FILES", "Archive", "ArchiveError", "ArchiveLimitError", "Extracted",
    "Limits", "NoImageDirError", "Pending", "UnsafeMemberError", "detect", "extract", "open_archive", "remove_tree",
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

    def __init__(self, root: Path, images: Path, metadata: dict[str, Any], stats_dump: Path | None,
                 *, remove: bool = True) -> None:
        self.root, self.images, self.metadata, self.stats_dump = root, images, metadata, stats_dump
        self._cleanup = weakref.finalize(self, _release, str(root) if remove else None)

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


def extract(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
            select: Callable[[tuple[str, ...], tarfile.TarInfo], str] | None = None) -> Extracted:
    """Unpack a checkpoint archive into a new ``imgtool-*`` temporary directory; see the module doc.

    ``select`` (e.g. ``for_restore``) says what to do with each regular member; by default all are written."""
    archive = os.fspath(path)
    kind = detect(archive)
    if kind is None:
        what = "is a directory, not an archive" if os.path.isdir(archive) else \
            "not a tar, gzip, zstd, bzip2 or xz archive"
        raise ArchiveError(what, path=archive)
    root = Path(tempfile.mkdtemp(prefix="imgtool-"))
    try:
        with _tar_stream(archive, kind, limits) as tar:
            _Unpacker(root, archive, limits, select).run(tar)
        images = _images_dir(root, archive)
        metadata = _metadata(root, limits)
        stats = root / "stats-dump"
        return Extracted(root, images, metadata, stats if stats.is_file() and not stats.is_symlink() else None)
    except BaseException:
        remove_tree(root)
        raise


def _release(root: str | None) -> None:
    if root is not None:
        remove_tree(root)


def remove_tree(root: str | os.PathLike[str]) -> None:
    """``rm -rf root`` without recursion or long paths: 2,000 levels of nesting are one loop, one fd at a time."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(root)
        return
    names: list[str] = []
    try:
        while True:
            child = None
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        child = entry.name
                        break
                    with contextlib.suppress(OSError):
                        os.unlink(entry.name, dir_fd=fd)
            if child is not None:
                try:
                    sub = os.open(child, _DIR_FLAGS, dir_fd=fd)
                except OSError:     # cannot enter: give up on it (rmdir below fails quietly)
                    break
                os.close(fd)
                fd = sub
                names.append(child)
                continue
            if not names:
                break
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            with contextlib.suppress(OSError):
                os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(root)


# -- reading the tar stream ---------------------------------------------------------------

# What tarfile and the decompressors raise on corrupt input; ValueError and IndexError come from
# tarfile's parsing of hostile PAX sparse maps and truncated GNU sparse extension blocks.
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, IndexError, zlib.error, lzma.LZMAError,
                zstandard.ZstdError)


class _Source:
    """The decompressed byte stream under tarfile; caps how much one member's headers may read.

    tarfile reads it in its "r:" mode, as a file: a member not read is skipped by a seek.  A plain tar's seek is
    an lseek; a decompressed stream goes forward only, decompressing into one scratch buffer (tarfile's "r|"
    mode copies every byte it skips, twice)."""

    def __init__(self, stream: IO[bytes], archive: str, header_limit: int, *, plain: bool) -> None:
        self.stream, self.archive, self.header_limit, self.plain = stream, archive, header_limit, plain
        self.pos = 0
        self.cap: int | None = None  # stream position header parsing may not pass
        self.capped = False          # a read of this header was cut short at the cap
        self._scratch: memoryview | None = None

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if self.plain:
            self.pos = self.stream.seek(pos, whence)
        elif whence != os.SEEK_SET or pos < self.pos:
            raise io.UnsupportedOperation("a decompressed stream only goes forward")
        else:
            self._skip(pos - self.pos)
        return self.pos

    def drain(self) -> None:
        """Read what follows the end of the tar, its record padding, up to a chunk: a decompressor checks its CRC
        or checksum at the end of its stream (more trailing data than that is not decompressed for nothing)."""
        if not self.plain:
            self._skip(_CHUNK)

    def _skip(self, n: int) -> None:
        if self._scratch is None:
            self._scratch = memoryview(bytearray(_CHUNK))
        while n > 0 and (got := self.stream.readinto(self._scratch[:min(n, _CHUNK)])):   # type: ignore[attr-defined]
            self.pos += got
            n -= got

    def read(self, n: int = -1) -> bytes:
        if self.cap is not None:
            if self.pos >= self.cap:
                raise self.over_cap()
            left = self.cap - self.pos
            self.capped = self.capped or n < 0 or n > left
            n = left if n < 0 else min(n, left)
        data = self.stream.read(n)
        self.pos += len(data)
        return data

    def over_cap(self) -> ArchiveLimitError:
        return ArchiveLimitError(f"tar header data at offset {self.pos:#x} goes past max_header_bytes "
                                 f"({human_size(self.header_limit)})", path=self.archive)

    @contextlib.contextmanager
    def header(self) -> Iterator[None]:
        outer = self.cap
        if outer is None:
            self.cap = self.pos + self.header_limit
            self.capped = False
        try:
            yield
        finally:
            self.cap = outer


_SILENT_ENDS = (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError)   # tarfile would stop there, no error


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
                except tarfile.HeaderError as exc:
                    if source.capped:    # its data was cut at the cap (Python < 3.11.4 reports a bad header)
                        raise source.over_cap() from None
                    if tar.offset == 0 or not isinstance(exc, (*_SILENT_ENDS, tarfile.InvalidHeaderError)):
                        raise
                    if isinstance(exc, _SILENT_ENDS):
                        raise tarfile.ReadError("ends without an end-of-archive block (truncated?)") from None
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
            source = _Source(stack.enter_context(_decompressed(raw, kind)), archive, limits.max_header_bytes,
                             plain=kind == "tar")
            tar = stack.enter_context(tarfile.open(fileobj=source, mode="r:", tarinfo=_strict_info(source)))
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

    def __init__(self, root: Path, archive: str, limits: Limits,
                 select: Callable[[tuple[str, ...], tarfile.TarInfo], str] | None = None) -> None:
        self.root, self.archive, self.limits = root, archive, limits
        self.select = select     # WRITE, LATER (an empty placeholder, in ``later``) or SKIP; None: write all
        self.root_fd = -1
        self.members = 0
        self.total = 0
        self.files: set[tuple[str, ...]] = set()          # regular files written: hard link targets
        self.links: list[tuple[str, tuple[str, ...]]] = []  # symlinks, checked again at the end
        self.later: dict[tuple[str, ...], Pending] = {}   # placeholders: members unpacked when needed
        self.skipped: set[tuple[str, ...]] = set()        # members not needed: nothing made
        self._known: tuple[tuple[str, ...], int] = ((), -1)  # the last directory walked to, and its fd
        self.tails: dict[tuple[str, ...], tuple[int, bytes]] | None = None   # LATER members' last bytes (streams)
        self._tail_budget = TAIL_BUDGET

    def run(self, tar: tarfile.TarFile) -> None:
        self.root_fd = os.open(self.root, _DIR_FLAGS)
        self._known = ((), self.root_fd)
        try:
            last = None
            while (member := self._next(tar, last)) is not None:
                self._member(tar, member)
                tar.members.clear()  # tarfile keeps every TarInfo otherwise
                last = member.name
            self._drain(tar, last)
            self._check_links()
        finally:
            self._forget()
            os.close(self.root_fd)

    # errors

    def _unsafe(self, member: str, what: str) -> UnsafeMemberError:
        return UnsafeMemberError(what, path=self.archive, member=member)

    def _limit(self, member: str, what: str) -> ArchiveLimitError:
        return ArchiveLimitError(what, path=self.archive, member=member)

    def _next(self, tar: tarfile.TarFile, last: str | None) -> tarfile.TarInfo | None:
        with self._reading(last):
            return tar.next()

    def _drain(self, tar: tarfile.TarFile, last: str | None) -> None:
        assert isinstance(tar.fileobj, _Source)
        with self._reading(last):
            tar.fileobj.drain()

    @contextlib.contextmanager
    def _reading(self, last: str | None) -> Iterator[None]:
        """A read of the archive between members: its errors name the member read last."""
        try:
            yield
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
        if parts in self.skipped:
            raise self._unsafe(m.name, "a member of that name was already unpacked")
        if m.isreg() and self.select is not None and (how := self.select(parts, m)) != WRITE:
            self._placeholder(m, parts, later=how == LATER)
            if how == SKIP:
                self.skipped.add(parts)
            else:
                if self.tails is not None:
                    self._keep_tail(tar, m, parts)
        elif m.isreg():
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
        """An fd of the directory that holds ``parts[-1]``, made as needed, never through a symlink.

        The walk starts from the last directory walked to when it is on the way (members come in tree order):
        2,000 levels of nesting cost one step a member, not 2,000.  Directories are never replaced, so a
        directory once checked stays the one its path names."""
        dirs = parts[:-1]
        known, known_fd = self._known
        start = len(known) if dirs[:len(known)] == known else 0
        fd = os.dup(known_fd if start else self.root_fd)
        try:
            for comp in dirs[start:]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(comp, 0o700, dir_fd=fd)
                try:
                    sub = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    raise self._unsafe(member, f"path goes through {comp!r}, a symlink or not a directory") from None
                os.close(fd)
                fd = sub
            if start < len(dirs):
                self._forget()
                self._known = (dirs, os.dup(fd))
            yield fd
        finally:
            os.close(fd)

    def _forget(self) -> None:
        if self._known[1] != self.root_fd:
            os.close(self._known[1])
        self._known = ((), self.root_fd)

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

    def _placeholder(self, m: tarfile.TarInfo, parts: tuple[str, ...], later: bool) -> None:
        """An empty file of ``m``'s size (a hole) where it goes, unpacked (or read in place) when needed if
        ``later``, else never (its size is right for whoever lists sizes; its bytes are not there)."""
        with self._parent(m.name, parts) as dfd:
            try:
                fd = os.open(parts[-1], _FILE_FLAGS, 0o600, dir_fd=dfd)
            except FileExistsError:
                raise self._unsafe(m.name, "a member of that name was already unpacked") from None
            except OSError as exc:
                raise ArchiveError(f"cannot create: {exc.strerror}", path=self.archive, member=m.name) from None
            with contextlib.suppress(OSError):    # its size, for whoever lists sizes: a hole, nothing written
                os.ftruncate(fd, m.size)
            os.close(fd)
        if later:
            self.later[parts] = Pending(m.name, m.offset_data, m.size, m.issparse())
            self.files.add(parts)

    def _keep_tail(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        """Keep the last TAIL_BYTES of a pages file going by (where a process's argv is: the top of its stack,
        the last pages dumped), in memory, while the budget lasts; the stream reads them anyway."""
        want = min(TAIL_BYTES, m.size, self._tail_budget)
        if want <= 0 or m.issparse():
            return
        stream = tar.fileobj       # our _Source: a seek forward skips, as tarfile does past a member
        assert stream is not None
        read = self._reader(m.name, stream)
        skip, held = m.size - want, 0
        try:
            stream.seek(m.offset_data + skip)
        except _READ_ERRORS as exc:
            raise ArchiveError(f"corrupt or truncated data: {exc}", path=self.archive, member=m.name) from None
        chunks = []
        while held < want and (chunk := read(min(_CHUNK, want - held))):
            chunks.append(chunk)
            held += len(chunk)
        self._tail_budget -= want
        assert self.tails is not None
        self.tails[parts] = (skip, b"".join(chunks)[:want])

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
        if target not in self.files and target not in self.skipped:
            raise self._unsafe(m.name, f"hard link to {m.linkname!r}, which is not a regular file unpacked before it")
        if target in self.skipped:
            self.skipped.add(parts)
            return
        if target in self.later:
            self.later[parts] = self.later[target]
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


# -- opening without unpacking what is not read ----------------------------------------------------

WRITE, LATER, SKIP = "write", "later", "skip"   # what pass 1 does with a regular member
_PAGES = re.compile(r"pages-[0-9]+\.img")
_GPU_PAGES = re.compile(r"amdgpu-pages-.*\.img")        # device memory: no command reads it (sizes only)
SMALL_OTHER_BYTES = MiB    # members that are neither images nor engine files: unpacked up to this size, else skipped
CACHE_ENV = "IMGTOOL_CACHE"
TAIL_BYTES = MiB              # the end of each pages file pass 1 of a compressed archive keeps, for argv
TAIL_BUDGET = 64 * MiB        # for all of them


@dataclass(frozen=True, slots=True)
class Pending:
    """A member behind a placeholder: read in place (plain tar) or, a pages file, unpacked when first read."""

    name: str        # the member's name in the archive
    offset: int      # where its data starts in the (decompressed) tar
    size: int        # its size (expanded size for a sparse member)
    sparse: bool


def need(parts: tuple[str, ...], m: tarfile.TarInfo) -> str:
    """What pass 1 does with a regular member: pages files are for later, images and engine files are
    unpacked, other members (rootfs-diff.tar, devshm-checkpoint.tar, ...) only when small; GPU pages and
    big other members are skipped (a hole of their size stands in for them: ``Archive.skipped``)."""
    name = parts[-1]
    if _PAGES.fullmatch(name):
        return LATER
    if _GPU_PAGES.fullmatch(name):
        return SKIP
    if name.endswith(".img") or name in ENGINE_FILES or name == "stats-dump" or m.size <= SMALL_OTHER_BYTES:
        return WRITE
    return SKIP


def for_restore(parts: tuple[str, ...], m: tarfile.TarInfo) -> str:
    """What ``criu restore`` reads: every image, pages and GPU pages included; big engine artifacts are skipped."""
    how = need(parts, m)
    return WRITE if how == LATER or _GPU_PAGES.fullmatch(parts[-1]) else how


def in_place(parts: tuple[str, ...], m: tarfile.TarInfo) -> str:
    """What pass 1 does with a regular member of a plain tar: what ``need`` says, but a member it would write is
    read in place instead (an empty placeholder of its size, in ``later``), unless sparse (its data is not one
    range of the tar then)."""
    how = need(parts, m)
    return LATER if how == WRITE and not m.issparse() else how


Identity = tuple[int, int, int, int]


def _inode(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _identity(archive: str) -> Identity:
    st = os.stat(archive)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class Archive(Extracted):
    """A checkpoint archive opened for reading (``open_archive``).

    Its members are in ``root``: a plain tar's as empty placeholders of their size (holes) whose bytes are read
    in place; a compressed archive's small members unpacked and its pages files as placeholders, all unpacked by
    one more streaming pass the first time one of them is opened.  ``backing`` says where a file's bytes are.
    """

    def __init__(self, root: Path, images: Path, metadata: dict[str, Any], stats_dump: Path | None, *,
                 archive: str, kind: str, identity: Identity, limits: Limits, later: dict[tuple[str, ...], Pending],
                 written: int, covered: Covered | None = None, done: Path | None = None) -> None:
        super().__init__(root, images, metadata, stats_dump, remove=done is None)
        self.archive, self.kind, self.identity, self.limits = archive, kind, identity, limits
        self.later = later
        self.covered = covered or {}  # argv windows the placeholders hold already (a compressed archive's pass 1)
        self.skipped: set[str] = set()  # members never unpacked: their files are holes of their size
        self.written = written        # bytes unpacked so far
        self._done = done             # a cache's marker: the pages files are unpacked
        self._lock = threading.Lock()
        self._unpacked = done is not None and done.exists()
        self._placeholders = {_inode(root.joinpath(*parts)): parts for parts in later}   # links lead there too

    def backing(self, path: str | os.PathLike[str], window: tuple[int, int] | None = None) -> Backing | None:
        """Where the bytes of the file whose placeholder is at ``path`` are (``ImageSource.backing``); None for a
        file that is no placeholder of ours (its bytes are in it)."""
        parts = self._placeholders.get(_inode(path))
        return None if parts is None else self._backing(parts, window)

    def _backing(self, parts: tuple[str, ...], window: tuple[int, int] | None) -> Backing:
        member = self.later[parts]
        if self.closed:
            raise ArchiveError("archive closed", path=self.archive, member=member.name)
        if self.kind == "tar" and not member.sparse:   # contiguous in the tar file: read in place
            self._check_unchanged()
            return self.archive, member.offset, member.size
        if window is not None and window in self.covered.get((), ()):    # a process's argv: pass 1 kept all of it
            return str(self.root.joinpath(*parts)), 0, -1     # (in this file, or none of it is here)
        self.unpack_later()
        return str(self.root.joinpath(*parts)), 0, -1

    def _check_unchanged(self) -> None:
        try:
            now = _identity(self.archive)
        except OSError as exc:
            raise ArchiveError(f"cannot read: {exc.strerror}", path=self.archive) from None
        if now != self.identity:
            raise ArchiveError("the archive changed since it was opened", path=self.archive)

    def unpack_later(self) -> None:
        """Unpack every pages file left for later, in one streaming pass (once; a no-op afterwards)."""
        with self._lock:
            if self._unpacked:
                return
            with _cache_lock(self._done.parent if self._done is not None else None):
                if self._done is None or not self._done.exists():
                    self._check_unchanged()
                    wanted = self._wanted()
                    self._check_space(sum(keep for _, keep in wanted.values()))
                    refill = _Refill(self.root, self.archive, self.limits, wanted, self.written)
                    with _tar_stream(self.archive, self.kind, self.limits) as tar:
                        refill.run(tar)
                    self.written = refill.total
                    if self._done is not None:
                        self._done.touch()
            self._unpacked = True

    def _wanted(self) -> dict[str, tuple[tuple[str, ...], int]]:
        """name -> (parts, bytes to unpack) of the pages files the second pass unpacks: those a pagemap names
        (an unreferenced one is never read), each up to what its pagemaps say it holds."""
        present: dict[Path, dict[int, int] | None] = {}
        wanted: dict[str, tuple[tuple[str, ...], int]] = {}
        for parts, m in self.later.items():
            if self.kind == "tar" and not m.sparse:
                continue
            path = self.root.joinpath(*parts)
            if path.parent not in present:
                present[path.parent] = pagemap_pages(path.parent, self.backing)
            named = present[path.parent]
            pages_id = int(parts[-1].removeprefix("pages-").removesuffix(".img"))
            if named is None:                       # a pagemap could not be read: only the limits bound it
                wanted[m.name] = (parts, m.size)
            elif pages_id in named:
                wanted[m.name] = (parts, min(m.size, named[pages_id] * _MAX_PAGE))
        return wanted

    def _check_space(self, needed: int) -> None:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        if needed > free:
            raise ArchiveLimitError(f"unpacking the pages files needs {human_size(needed)}, {self.root} has "
                                    f"{human_size(free)} free", path=self.archive)


def _capture_argv(root: Path, later: dict[tuple[str, ...], Pending],
                  tails: dict[tuple[str, ...], tuple[int, bytes]]) -> Covered:
    """Write into the placeholders the bytes of each process's argv that the kept tails hold; return, per
    pages file, the argv windows (``cmdline_of``'s) it can now serve.  Nothing else is written.

    A process's argv may be in its own pages file and, for pages an incremental dump left to its parent
    (PE_PARENT), in the parent dump's (in the same archive).  A window counts only when, for every process with
    that window, the pages files hold all of it: then a store reading that window reads nothing from any other
    pages file (shared memory, ...), and those are served as they are too (key ``()``)."""
    covered: Covered = {}
    whole: dict[tuple[int, int], bool] = {}
    root = Path(os.path.realpath(root))     # as the parent links resolve
    for folder in sorted({root.joinpath(*parts[:-1]) for parts in later}):
        for window, pieces in _argv_pieces(root, folder):
            held = pieces is not None and sum(hi - lo for _, lo, hi in pieces) == window[1] - window[0] \
                and all(_in_tail(tails.get(parts), lo, hi) for parts, lo, hi in pieces)
            whole[window] = whole.get(window, True) and held
            if not held:
                continue
            assert pieces is not None
            for parts, lo, hi in pieces:
                start, data = tails[parts]
                fd = os.open(root.joinpath(*parts), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.pwrite(fd, data[lo - start:hi - start], lo)
                finally:
                    os.close(fd)
                covered.setdefault(parts, set()).add(window)
    covered = {parts: {w for w in windows if whole[w]} for parts, windows in covered.items()}
    covered[()] = {w for w, ok in whole.items() if ok}
    return covered


def _in_tail(tail: tuple[int, bytes] | None, lo: int, hi: int) -> bool:
    return tail is not None and tail[0] <= lo and hi <= tail[0] + len(tail[1])


Piece = tuple[tuple[str, ...], int, int]     # a pages file (parts under the root) and a byte range of it


def _argv_pieces(root: Path, folder: Path) -> Iterator[tuple[tuple[int, int], list[Piece] | None]]:
    """For each process of the dump in ``folder``: its argv window and the pieces of pages files holding it,
    through the parent dumps (None when an image cannot be read or some of it is in no pages file)."""
    for mm_path in sorted(folder.glob("mm-*.img")):
        pid = mm_path.name.removeprefix("mm-").removesuffix(".img")
        try:
            with Image.open(mm_path) as image:
                mm = next(image.entries()).message
            window = mm.mm_arg_start, max(mm.mm_arg_end, mm.mm_arg_start + 1)
        except (ImgtoolError, OSError, StopIteration):
            continue
        try:
            yield window, _pieces(root, folder, pid, window, page_size_of(mm), set())
        except (ImgtoolError, OSError, StopIteration):
            yield window, None


def _pieces(root: Path, folder: Path, pid: str, window: tuple[int, int], page: int,
            seen: set[Path]) -> list[Piece] | None:
    """Where the bytes of ``window`` of process ``pid`` are in the pages files of the dump in ``folder`` and its
    parents (None when some of them are in none: a hole, a missing or looping parent)."""
    lo, hi = window
    seen = seen | {folder}
    pieces: list[Piece] = []
    in_parent: list[tuple[int, int]] = []
    with Image.open(folder / f"pagemap-{pid}.img") as image:
        head = next(image.entries())
        parts = (*folder.relative_to(root).parts, f"pages-{head.message.pages_id}.img")
        offset = 0
        for vaddrs, counts, flags in pagemap.batches(image._view, head.end, image.header.byteorder, image.path):
            for vaddr, count, flag in zip(vaddrs, counts, flags, strict=True):
                end = vaddr + count * page
                a, b = max(lo, vaddr), min(hi, end)
                if a < b and flag & PE_PARENT:
                    in_parent.append((a, b))
                elif a < b and flag & PE_PRESENT:
                    pieces.append((parts, offset + a - vaddr, offset + b - vaddr))
                if flag & PE_PRESENT:
                    offset += count * page
    if in_parent:
        parent = Path(os.path.realpath(folder / "parent"))
        if parent in seen or not parent.is_relative_to(root) or not parent.is_dir():
            return None
        for sub in in_parent:
            more = _pieces(root, parent, pid, sub, page, seen)
            if more is None:
                return None
            pieces += more
    return pieces


def pagemap_pages(folder: Path, backing: Callable[[Path], Backing | None] = lambda _: None) -> dict[int, int] | None:
    """pages_id -> PE_PRESENT pages the pagemaps in ``folder`` (their bytes where ``backing`` says) name in it;
    None if one cannot be read."""
    found: dict[int, int] = {}
    try:
        for pm in folder.iterdir():
            if not pm.name.startswith("pagemap-") or pm.is_symlink() or not pm.is_file():
                continue
            with Image.open(pm, backing(pm)) as image:
                head = next(image.entries(), None)
                if head is None:
                    continue
                present = sum(n for _, counts, flags in pagemap.batches(image._view, head.end,
                                                                         image.header.byteorder, image.path)
                              for n, f in zip(counts, flags, strict=True) if f & PE_PRESENT)
                found[head.message.pages_id] = found.get(head.message.pages_id, 0) + present
    except (ImgtoolError, OSError):
        return None
    return found


# The largest page size Linux has (arm64, ppc64): a pages file holds at most this much per present page.
_MAX_PAGE = 64 * 1024


@contextlib.contextmanager
def _cache_lock(key_dir: Path | None) -> Iterator[None]:
    """An exclusive flock on a cache entry (nothing without a cache)."""
    if key_dir is None:
        yield
        return
    fd = os.open(key_dir.with_name(key_dir.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _Refill(_Unpacker):
    """The second pass: fills the placeholders of ``wanted`` (name -> (parts, bytes to keep)); the rest of a
    member past what it may hold is never written."""

    def __init__(self, root: Path, archive: str, limits: Limits, wanted: dict[str, tuple[tuple[str, ...], int]],
                 total: int) -> None:
        super().__init__(root, archive, limits)
        self.wanted, self.total = dict(wanted), total

    def run(self, tar: tarfile.TarFile) -> None:
        self.root_fd = os.open(self.root, _DIR_FLAGS)
        self._known = ((), self.root_fd)
        try:
            last = None
            while self.wanted and (m := self._next(tar, last)) is not None:
                if m.isreg() and m.name in self.wanted:
                    self._refill(tar, m, *self.wanted.pop(m.name))
                tar.members.clear()
                last = m.name
        finally:
            self._forget()
            os.close(self.root_fd)
        if self.wanted:
            raise ArchiveError(f"member {next(iter(self.wanted))!r} is gone: the archive changed", path=self.archive)

    def _refill(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parts: tuple[str, ...], keep: int) -> None:
        lim = self.limits
        if keep > lim.max_member_bytes or keep > lim.max_total_bytes - self.total:
            raise self._limit(m.name, f"{human_size(keep)} to unpack would go past max_member_bytes "
                                      f"({human_size(lim.max_member_bytes)}) or max_total_bytes "
                                      f"({human_size(lim.max_total_bytes)})")
        src = tar.extractfile(m)
        assert src is not None
        read, left = self._reader(m.name, src), keep

        def capped(n: int) -> bytes:
            nonlocal left
            chunk = read(min(n, left)) if left > 0 else b""
            left -= len(chunk)
            return chunk

        with self._parent(m.name, parts) as dfd:
            try:
                # overwritten in place, not truncated: a mapping of the placeholder (argv) stays valid
                fd = os.open(parts[-1], os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                raise ArchiveError(f"cannot write: {exc.strerror}", path=self.archive, member=m.name) from None
            try:
                self.total += _copy(capped, fd, keep)
            except OSError as exc:
                raise ArchiveError(f"cannot write: {exc.strerror}", path=self.archive, member=m.name) from None
            finally:
                os.close(fd)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def catch_signals() -> None:
    """SIGTERM and SIGHUP exit like SIGINT does: by an exception, so that temporary directories are removed
    (``finally``, finalizers).  Only where they would kill the process outright (default handlers, main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _exit_on_signal)


def open_archive(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
                 cache: str | os.PathLike[str] | None = None) -> Archive:
    """Open a checkpoint archive for reading, unpacking only what is read (see ``Archive``).

    ``cache`` (default: the ``IMGTOOL_CACHE`` environment variable; off when unset or empty) is a directory
    where a compressed archive is unpacked once, keyed by its device, inode, size and mtime, for the next
    commands on it; a plain tar is read in place and never cached.
    """
    archive = os.fspath(path)
    kind = detect(archive)
    if kind is None:
        what = "is a directory, not an archive" if os.path.isdir(archive) else \
            "not a tar, gzip, zstd, bzip2 or xz archive"
        raise ArchiveError(what, path=archive)
    catch_signals()
    identity = _identity(archive)
    cache = cache if cache is not None else os.environ.get(CACHE_ENV) or None
    if cache is not None and kind != "tar":
        return _open_cached(archive, kind, identity, limits, Path(cache))
    root = Path(tempfile.mkdtemp(prefix="imgtool-"))
    try:
        later, skipped, written, covered = _first_pass(root, archive, kind, limits)
        return _archive(root, archive, kind, identity, limits, later, skipped, written, covered, None)
    except BaseException:
        remove_tree(root)
        raise


Covered = dict[tuple[str, ...], set[tuple[int, int]]]     # pages file -> argv windows it holds already


def _first_pass(root: Path, archive: str, kind: str, limits: Limits) -> tuple[dict[tuple[str, ...], Pending],
                                                                             set[tuple[str, ...]], int, Covered]:
    unpacker = _Unpacker(root, archive, limits, in_place if kind == "tar" else need)
    if kind != "tar":
        unpacker.tails = {}
    with _tar_stream(archive, kind, limits) as tar:
        unpacker.run(tar)
    covered = _capture_argv(root, unpacker.later, unpacker.tails) if unpacker.tails else {}
    return unpacker.later, unpacker.skipped, unpacker.total, covered


def _archive(root: Path, archive: str, kind: str, identity: Identity, limits: Limits,
             later: dict[tuple[str, ...], Pending], skipped: set[tuple[str, ...]], written: int, covered: Covered,
             done: Path | None) -> Archive:
    images = _images_dir(root, archive)
    stats = root / "stats-dump"
    opened = Archive(root, images, {}, stats if stats.is_file() and not stats.is_symlink() else None,
                     archive=archive, kind=kind, identity=identity, limits=limits, later=later, written=written,
                     covered=covered, done=done)
    opened.skipped = {"/".join(parts) for parts in skipped}
    opened.metadata = _metadata(root, limits, {parts[0] for parts in skipped}, opened.backing)
    return opened


def _open_cached(archive: str, kind: str, identity: Identity, limits: Limits, cache: Path) -> Archive:
    """The archive unpacked under ``cache/<identity>/`` (pass 1 once; the pages files once, when needed)."""
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ArchiveError(f"cannot use the cache {cache}: {exc.strerror}", path=archive) from None
    key = cache / "-".join(map(str, (kind, *identity)))
    index = key / "index.json"
    with _cache_lock(key):
        if not index.is_file():
            remove_tree(key)        # what an interrupted run left
            tmp = Path(tempfile.mkdtemp(prefix=".imgtool-", dir=cache))
            try:
                (tmp / "root").mkdir(mode=0o700)
                later, skipped, written, covered = _first_pass(tmp / "root", archive, kind, limits)
                (tmp / "index.json").write_text(json.dumps({
                    "later": [[list(parts), *(getattr(m, f) for f in Pending.__slots__)] for parts, m in later.items()],
                    "skipped": sorted(list(p) for p in skipped), "written": written,
                    "covered": [[list(parts), sorted(windows)] for parts, windows in covered.items()]}))
                os.rename(tmp, key)
            except BaseException:
                remove_tree(tmp)
                raise
        saved = json.loads(index.read_text())
    later = {tuple(parts): Pending(*rest) for parts, *rest in saved["later"]}
    skipped = {tuple(p) for p in saved["skipped"]}
    covered = {tuple(parts): {(lo, hi) for lo, hi in windows} for parts, windows in saved["covered"]}
    return _archive(key / "root", archive, kind, identity, limits, later, skipped, saved["written"], covered,
                    key / "pages.done")


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


def _read_json(path: Path, cap: int, backing: Callable[[Path], Backing | None] = lambda _: None) -> Any:
    """The parsed file (its bytes where ``backing`` says), or a str saying why it could not be."""
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
        data = b"".join(located.read_chunks(path, backing(path)))[:cap + 1]
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    finally:
        os.close(fd)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        return f"invalid JSON: {exc}"


def _metadata(root: Path, limits: Limits, skipped: set[str] | frozenset[str] = frozenset(),
              backing: Callable[[Path], Backing | None] = lambda _: None) -> dict[str, Any]:
    """The engine files parsed (their bytes where ``backing`` says), and "other": the other top-level entries,
    members not unpacked (``skipped``) included."""
    meta: dict[str, Any] = {}
    other = {name: name for name in skipped}
    for entry in sorted(root.iterdir()):
        if entry.name in ENGINE_FILES:
            meta[entry.name] = _read_json(entry, limits.max_metadata_bytes, backing)
        else:
            other[entry.name] = entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else "")
    meta["other"] = [other[name] for name in sorted(other)]
    return meta
