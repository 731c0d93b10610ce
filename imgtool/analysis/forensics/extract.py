"""The content that lives in a checkpoint, beside process memory: each piece as a descriptor and a byte stream.

``contents(dump)`` yields ``(Item, stream)`` pairs: ``stream`` is an iterator of ``bytes`` chunks (at most
``CHUNK`` each), read from the images only as it is consumed, so a script can hash or scan a large memfd or
ghost file without holding it.  What comes, in this order (criu's image in brackets):

* ``ghost-file``: a deleted file still open or mapped, whole (``ghost-file-<remap id, hex>.img``, named by
  remap-fpath; sparse ones (``chunks``) with their holes as zeros);
* ``memfd``: a memfd's content (``memfd.img`` inode, its ``pagemap-shmem-<shmid>.img`` and pages; holes as
  zeros), ``anon-shared``: a MAP_SHARED|MAP_ANONYMOUS object (criu 4 dumps those as memfd inodes named
  ``/dev/zero``; older dumps as VMAs of their own), ``sysv-shm``: a SysV segment (``ipcns-shm-*.img``, its
  content in ``pagemap-shmem-<ipc id>.img`` or inline);
* ``sysv-msg``: each message of a SysV queue, its type in the descriptor (``ipcns-msg-*.img``),
  ``sysv-sem``: a semaphore set's values as JSON (``ipcns-sem-*.img``);
* ``pipe`` and ``fifo``: unread data (``pipes-data.img``, ``fifo-data.img``), ``unix-queue``: what a unix
  socket has to read, one item per receiving socket (``sk-queues.img``), ``tcp-recv``/``tcp-send``: a TCP
  connection's queues (``tcp-stream-<ino, hex>.img``);
* ``tmpfs``: a tmpfs tarball, as it is (``tmpfs-dev-<dev>.tar.gz.img``, ``tmpfs-<mnt id>.tar.gz.img``).

``write_contents(dump, out)`` writes them all under ``out`` with ``manifest.json``.  File names are built here
from numbers and sanitised names (``safe_component``), every file is created relative to a directory
descriptor with ``O_NOFOLLOW`` (a symlink planted under ``out`` is never followed) and nothing is written
outside ``out``; an ``out`` that holds anything is refused unless ``force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from imgtool.errors import ImgtoolError, UsageError
from imgtool.memory.vma import DEFAULT_PAGE_SIZE, Vma, page_size_of, vma_from_entry
from imgtool.model.dump import Dump, Task

CHUNK = 1 << 20            # bytes per chunk of a stream
MANIFEST = "manifest.json"
NAME_MAX = 100             # longest component we build
GHOST = 1                  # remap_file_path_entry.remap_type of a ghost file

Stream = Iterator[bytes]


@dataclass
class Item:
    """One piece of content: what it is, who has it, where it came from and the file it goes to."""

    kind: str                       # ghost-file, memfd, anon-shared, sysv-shm, sysv-msg, sysv-sem, pipe, ...
    name: str                       # original path or name ("/tmp/x (deleted)", "memfd:foo", "key 0x1234")
    size: int                       # bytes the stream yields
    file: str                       # relative path under OUT (built here, sanitised)
    source: str                     # the image(s) it comes from
    holders: list[tuple[int, int | None]] = field(default_factory=list)   # (pid, fd or None for a mapping)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.holders[0][0] if self.holders else None

    @property
    def fd(self) -> int | None:
        return self.holders[0][1] if self.holders else None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "size": self.size, "file": self.file, "source": self.source,
                "pid": self.pid, "fd": self.fd, "holders": [{"pid": p, "fd": f} for p, f in self.holders],
                **({"details": self.details} if self.details else {})}


# -- names ------------------------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@-]+")


def safe_component(text: str) -> str:
    """``text`` as one path component we may create: [A-Za-z0-9._+=@-] only, no leading dot, not empty, short."""
    cleaned = _UNSAFE.sub("_", text).strip("_")[:NAME_MAX]
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned


def _path(*parts: str) -> str:
    return "/".join(safe_component(p) for p in parts)


def _basename(path: str | None) -> str:
    return (path or "").rstrip("/").rsplit("/", 1)[-1] or "unnamed"


# -- streams ----------------------------------------------------------------------------------------------------

def _zeros(count: int) -> Stream:
    while count > 0:
        n = min(count, CHUNK)
        yield bytes(n)
        count -= n


def _slices(data: memoryview | bytes) -> Stream:
    view = memoryview(data)
    for pos in range(0, len(view), CHUNK):
        yield bytes(view[pos:pos + CHUNK])


def _shmem(dump: Dump, shmid: int, size: int, page_size: int) -> Stream:
    """Bytes ``[0, size)`` of shared object ``shmid`` (pagemap-shmem-<shmid>.img; what is not there is zeros),
    read with pread a chunk at a time."""
    segments = dump.memory_store.stream(f"pagemap-shmem-{shmid}", page_size) or iter(())
    pos = 0
    for segment in segments:
        for start, end, pages, offset in segment.slices(pos, size):
            yield from _zeros(start - pos)
            while start < end:
                n = min(end - start, CHUNK)
                buf = bytearray(n)
                pages.read_into(memoryview(buf), offset)
                yield bytes(buf)
                start, offset = start + n, offset + n
            pos = end
        if pos >= size:
            break
    yield from _zeros(size - pos)


def _shmem_extent(dump: Dump, shmid: int, page_size: int) -> int:
    """Where the dumped part of shared object ``shmid`` ends (0 when it has no pagemap)."""
    end = 0
    for segment in dump.memory_store.stream(f"pagemap-shmem-{shmid}", page_size) or ():
        if len(segment):
            end = segment.ends[-1]
    return end


def _lazy(make: Callable[[], Stream]) -> Stream:
    """A stream that starts reading only when first asked."""
    yield from make()


# -- who holds what ---------------------------------------------------------------------------------------------

class _Holders:
    """Every task's fds and shared mappings, by what they refer to."""

    def __init__(self, dump: Dump) -> None:
        self.fds: dict[tuple[str, Any], list[tuple[int, int | None]]] = {}
        self.maps: dict[tuple[str, int], list[tuple[int, int | None]]] = {}
        self.vmas: dict[tuple[str, int], list[Vma]] = {}
        self.page_size = DEFAULT_PAGE_SIZE
        self.ipc: dict[int, list[tuple[int, int | None]]] = {}     # IPC namespace id: its tasks
        sized = False
        for task in dump.tasks:
            if task.dead:
                continue
            try:
                self._task(task, sized)
            except ImgtoolError:     # a task whose images are damaged owns nothing we can name; the content stays
                continue
            sized = sized or task.mm is not None

    def _task(self, task: Task, sized: bool) -> None:
        if task.ids.HasField("ipc_ns_id"):
            self._add(self.ipc, task.ids.ipc_ns_id, task.pid, None)
        for fd in task.fds:
            f = fd.file
            self._add(self.fds, (f.kind, f.id), task.pid, fd.fd)
            for key in ("pipe_id", "inode_id", "ino"):
                if key in f.details:
                    self._add(self.fds, (f.kind, key, f.details[key]), task.pid, fd.fd)
        if task.mm is None:
            return
        if not sized:
            self.page_size = page_size_of(task.mm)
        for entry in task.mm.vmas:
            vma = vma_from_entry(entry)
            kind = vma.shared_object
            if kind is not None:
                self._add(self.maps, (kind, vma.shmid), task.pid, None)
                self.vmas.setdefault((kind, vma.shmid), []).append(vma)

    @staticmethod
    def _add(table: dict, key: Any, pid: int, fd: int | None) -> None:
        found = table.setdefault(key, [])
        if (pid, fd) not in found:
            found.append((pid, fd))

    def of(self, key: Any) -> list[tuple[int, int | None]]:
        return list(self.fds.get(key, []))


# -- the items ------------------------------------------------------------------------------------------------

def contents(dump: Dump) -> Iterator[tuple[Item, Stream]]:
    """Every piece of content of ``dump`` (see the module docstring), each with a lazy stream of its bytes."""
    holders = _Holders(dump)
    for producer in (_ghosts, _memfds, _anon_shared, _sysv_shm, _sysv_msg, _sysv_sem, _pipes, _fifos,
                     _unix_queues, _tcp_queues, _tmpfs):
        yield from producer(dump, holders)


def _ghosts(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    seen: set[str] = set()
    for remap in dump.entries("remap-fpath"):
        if remap.remap_type != GHOST:
            continue
        image_name = _ghost_image(dump, remap.remap_id)
        if image_name is None or image_name in seen:
            continue
        seen.add(image_name)
        path = dump.file_table.path(remap.orig_id)
        found = _ghost(dump, image_name, path, holders.of(("REG", remap.orig_id)), remap.orig_id)
        if found is not None:
            yield found
    for image_name in dump.files_named("ghost-file-"):       # ghost images no remap names (a damaged dump)
        name = image_name.removesuffix(".img")
        if name not in seen:
            found = _ghost(dump, name, None, [], None)
            if found is not None:
                yield found


def _ghost_image(dump: Dump, remap_id: int) -> str | None:
    """``ghost-file-<id>`` as criu names it (hex, criu/files-reg.c), or the decimal name some tools wrote."""
    for name in (f"ghost-file-{remap_id:x}", f"ghost-file-{remap_id}"):
        if (dump.path / f"{name}.img").is_file():
            return name
    return None


def _ghost(dump: Dump, image_name: str, path: str | None, held: list, file_id: int | None
           ) -> tuple[Item, Stream] | None:
    image = dump.image(image_name)
    if image is None:
        return None
    entries = list(image.entries())
    if not entries:
        return None
    head = entries[0].message
    if head.mode and not stat.S_ISREG(head.mode):       # directories and symlinks carry no content
        return None
    if head.chunks:
        chunks = [(e.message.off, e.message.len, e.extra) for e in entries[1:]]
        size = max([head.size if head.HasField("size") else 0] + [off + n for off, n, _ in chunks])

        def stream() -> Stream:
            pos = 0
            for off, n, data in chunks:
                yield from _zeros(off - pos)
                yield from _slices(memoryview(data or b"")[:n])
                pos = off + n
            yield from _zeros(size - pos)
    else:
        data = entries[0].extra or memoryview(b"")
        size = len(data)

        def stream() -> Stream:
            yield from _slices(data)

    ident = image_name.removeprefix("ghost-file-")
    item = Item("ghost-file", path or f"(unknown path, {image_name})", size,
                _path("ghost-files", f"{ident}-{_basename(path)}"), f"{image_name}.img", held,
                {"file_id": file_id, "mode": stat.filemode(head.mode) if head.mode else None,
                 "sparse": bool(head.chunks)})
    return item, _lazy(stream)


def _memfds(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    for inode in dump.entries("memfd"):
        held = holders.of(("MEMFD", "inode_id", inode.inode_id))
        for file in dump.entries("files"):      # mappings name the memfd's file id
            if file.HasField("memfd") and file.memfd.inode_id == inode.inode_id:
                held += [h for h in holders.maps.get(("memfd", file.id), []) if h not in held]
        anon = inode.name == "/dev/zero"
        kind = "anon-shared" if anon else "memfd"
        name = inode.name if anon else f"memfd:{inode.name}"
        folder = "anon-shared" if anon else "memfd"
        item = Item(kind, name, inode.size, _path(folder, f"{inode.inode_id}-{_basename(inode.name)}"),
                    f"memfd.img, pagemap-shmem-{inode.shmid}.img", held,
                    {"inode_id": inode.inode_id, "shmid": inode.shmid})
        yield item, _lazy(lambda i=inode: _shmem(dump, i.shmid, i.size, holders.page_size))


def _anon_shared(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    for (kind, shmid), vmas in sorted(holders.vmas.items()):
        if kind != "anon-shared":
            continue
        size = max(max(v.pgoff + v.size for v in vmas), _shmem_extent(dump, shmid, holders.page_size))
        item = Item("anon-shared", f"shared anonymous memory {shmid}", size, _path("anon-shared", f"shmem-{shmid}"),
                    f"pagemap-shmem-{shmid}.img", holders.maps.get((kind, shmid), []), {"shmid": shmid})
        yield item, _lazy(lambda s=shmid, n=size: _shmem(dump, s, n, holders.page_size))


def _ipc(dump: Dump, prefix: str) -> Iterator[tuple[str, Any]]:
    """(image name, image) of each IPC namespace's ``prefix`` image."""
    for name in dump.files_named(prefix):
        image = dump.image(name)
        if image is not None:
            yield name, image


def _ipc_tasks(holders: _Holders, image_name: str) -> list[tuple[int, int | None]]:
    """The tasks of the IPC namespace an ``ipcns-*-<ns id>.img`` belongs to (they all see its objects)."""
    found = re.search(r"-(\d+)\.img$", image_name)
    return list(holders.ipc.get(int(found.group(1)), [])) if found else []


def _ipc_name(desc: Any) -> str:
    return f"key-{desc.key:#x}-id-{desc.id}"


def _sysv_shm(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    for image_name, image in _ipc(dump, "ipcns-shm-"):
        for entry in image.entries():
            msg = entry.message
            desc = msg.desc
            if msg.in_pagemaps:
                source = f"{image_name}, pagemap-shmem-{desc.id}.img"
                stream = _lazy(lambda i=desc.id, n=msg.size: _shmem(dump, i, n, holders.page_size))
            else:
                source = image_name
                stream = _slices(bytes(image.extra_parts(entry)))
            item = Item("sysv-shm", f"SysV shm key {desc.key:#x} id {desc.id}", msg.size,
                        _path("sysv-shm", _ipc_name(desc)), source,
                        holders.maps.get(("sysv", desc.id)) or _ipc_tasks(holders, image_name),
                        {"key": desc.key, "id": desc.id, "mode": oct(desc.mode), "uid": desc.uid})
            yield item, stream


def _sysv_msg(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    for image_name, image in _ipc(dump, "ipcns-msg-"):
        for entry in image.entries():
            desc = entry.message.desc
            parts = image.extra_parts(entry) or []
            for index, (head, text) in enumerate(zip(parts[::2], parts[1::2], strict=True)):
                item = Item("sysv-msg", f"SysV msg queue key {desc.key:#x} id {desc.id} message {index}",
                            len(text), _path("sysv-msg", _ipc_name(desc), f"{index:05d}-type-{head.mtype}"),
                            image_name, _ipc_tasks(holders, image_name),
                            {"key": desc.key, "id": desc.id, "index": index, "mtype": head.mtype})
                yield item, iter([bytes(text)])


def _sysv_sem(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    for image_name, image in _ipc(dump, "ipcns-sem-"):
        for entry in image.entries():
            desc = entry.message.desc
            values = list(image.extra_parts(entry) or [])
            text = (json.dumps({"key": desc.key, "id": desc.id, "values": values}) + "\n").encode()
            item = Item("sysv-sem", f"SysV semaphore set key {desc.key:#x} id {desc.id}", len(text),
                        _path("sysv-sem", _ipc_name(desc) + ".json"), image_name, _ipc_tasks(holders, image_name),
                        {"key": desc.key, "id": desc.id, "values": values})
            yield item, iter([text])


def _queued(dump: Dump, image_name: str, key: str) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = {}
    image = dump.image(image_name)
    for entry in image.entries() if image is not None else ():
        found.setdefault(getattr(entry.message, key), []).append(bytes(entry.extra or b""))
    return found


def _pipes(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    for pipe_id, parts in sorted(_queued(dump, "pipes-data", "pipe_id").items()):
        data = b"".join(parts)
        item = Item("pipe", f"pipe:[{pipe_id}]", len(data), _path("pipes", f"pipe-{pipe_id}"), "pipes-data.img",
                    holders.of(("PIPE", "pipe_id", pipe_id)), {"pipe_id": pipe_id})
        yield item, iter([data])


def _fifos(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    paths = {f.fifo.pipe_id: dump.file_table.path(f.fifo.regf_id) for f in dump.entries("files")
             if f.HasField("fifo") and f.fifo.HasField("regf_id")}
    for pipe_id, parts in sorted(_queued(dump, "fifo-data", "pipe_id").items()):
        data, path = b"".join(parts), paths.get(pipe_id)
        item = Item("fifo", path or f"fifo:[{pipe_id}]", len(data), _path("fifos", f"{pipe_id}-{_basename(path)}"),
                    "fifo-data.img", holders.of(("FIFO", "pipe_id", pipe_id)), {"pipe_id": pipe_id})
        yield item, iter([data])


def _unix_queues(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    sockets = {f.id: f.usk for f in dump.entries("files") if f.HasField("usk")}
    sockets.update({e.id: e for e in dump.entries("unixsk") if e.id not in sockets})
    for sk_id, parts in sorted(_queued(dump, "sk-queues", "id_for").items()):
        data, usk = b"".join(parts), sockets.get(sk_id)
        ino = usk.ino if usk is not None else 0
        peer = usk.peer if usk is not None else 0
        item = Item("unix-queue", f"unix socket ino {ino}: queued from peer ino {peer}", len(data),
                    _path("unix-queues", f"sk-{sk_id}-ino-{ino}-from-{peer}"), "sk-queues.img",
                    holders.of(("UNIXSK", sk_id)), {"socket_id": sk_id, "ino": ino, "peer": peer,
                                                     "packets": len(parts)})
        yield item, iter([data])


def _tcp_queues(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    sockets = {f.isk.ino: f.isk for f in dump.entries("files") if f.HasField("isk")}
    for image_name in dump.files_named("tcp-stream-"):
        name = image_name.removesuffix(".img")
        image = dump.image(name)
        entry = next(image.entries(), None) if image is not None else None
        if entry is None:
            continue
        ino = int(name.removeprefix("tcp-stream-"), 16)
        queues = image.extra_parts(entry) or {"inq": b"", "outq": b""}
        isk = sockets.get(ino)
        ends = f"{_ip(isk.src_addr)}:{isk.src_port}-{_ip(isk.dst_addr)}:{isk.dst_port}" if isk is not None else ""
        held = holders.of(("INETSK", "ino", ino))
        for kind, part, what in (("tcp-recv", "inq", "receive"), ("tcp-send", "outq", "send")):
            data = bytes(queues[part])
            item = Item(kind, f"tcp {ends or f'ino {ino}'} {what} queue", len(data),
                        _path("tcp", f"ino-{ino}-{ends}-{what}"), image_name, held, {"ino": ino, "queue": part})
            yield item, iter([data])


def _ip(words: Any) -> str:
    from imgtool.format.fields import ip_text

    return str(ip_text(list(words))[0]) if words else "?"


def _tmpfs(dump: Dump, holders: _Holders) -> Iterator[tuple[Item, Stream]]:
    mounts = [m for name in dump.files_named("mountpoints-") for m in dump.entries(name.removesuffix(".img"))]
    for image_name in dump.files_named("tmpfs"):
        match = re.fullmatch(r"tmpfs(-dev)?-(\d+)\.tar\.gz\.img", image_name)
        if match is None:
            continue
        number = int(match.group(2))
        mounted = [m for m in mounts if (m.root_dev if match.group(1) else m.mnt_id) == number]
        mounted.sort(key=lambda m: m.root != "/")          # the mount of the whole filesystem first (binds after)
        mount = mounted[0] if mounted else None
        path = dump.path / image_name
        size = path.stat().st_size
        item = Item("tmpfs", mount.mountpoint if mount is not None else f"tmpfs {number}", size,
                    _path("tmpfs", image_name), image_name, [],
                    {"dev" if match.group(1) else "mnt_id": number, "mountpoints": [m.mountpoint for m in mounted]})
        yield item, _lazy(lambda p=path: dump.chunks(p, CHUNK))


# -- writing ------------------------------------------------------------------------------------------------------

@dataclass
class Written:
    """An item as written: where, and the sha256 of its bytes."""

    item: Item
    file: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {**self.item.to_json(), "file": self.file, "size": self.size, "sha256": self.sha256}


class _Out:
    """Files created under one directory, relative to its descriptor, never through a symlink."""

    def __init__(self, path: os.PathLike[str] | str, force: bool) -> None:
        self.path, self.force = os.fspath(path), force
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            os.makedirs(self.path)
            st = os.lstat(self.path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{self.path}: not a directory (a symlink is not followed)")
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if os.listdir(self.fd) and not force:
            os.close(self.fd)
            raise UsageError(f"{self.path} is not empty: give --force to write into it")
        self.dirs: dict[str, int] = {"": self.fd}
        self.taken: set[str] = set()

    def _dir(self, rel: str) -> int:
        if rel in self.dirs:
            return self.dirs[rel]
        parent, _, name = rel.rpartition("/")
        pfd = self._dir(parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=pfd)
        self.dirs[rel] = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        return self.dirs[rel]

    def unique(self, rel: str) -> str:
        """``rel``, or ``rel`` with a number added when an earlier item took that name."""
        candidate, n = rel, 1
        while candidate in self.taken or candidate == MANIFEST:
            n += 1
            candidate = f"{rel}~{n}"
        self.taken.add(candidate)
        return candidate

    def open(self, rel: str) -> int:
        """A new file ``rel``: with ``force`` whatever had that name is unlinked first (never written through: it
        may be a hard link to a file outside OUT)."""
        folder, _, name = rel.rpartition("/")
        where = self._dir(folder)
        if self.force:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=where)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(name, flags, 0o644, dir_fd=where)

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()


def write_contents(dump: Dump, out: os.PathLike[str] | str, *, force: bool = False,
                   progress: Callable[[Written], None] | None = None) -> list[Written]:
    """Write every item of ``contents(dump)`` under ``out`` and ``manifest.json`` listing them; return them."""
    target = _Out(out, force)
    written: list[Written] = []
    try:
        for item, stream in contents(dump):
            rel = target.unique(item.file)
            digest, size = hashlib.sha256(), 0
            fd = target.open(rel)
            try:
                for chunk in stream:
                    digest.update(chunk)
                    size += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            done = Written(item, rel, size, digest.hexdigest())
            written.append(done)
            if progress is not None:
                progress(done)
        manifest = {"checkpoint": os.fspath(dump.source), "items": [w.to_json() for w in written]}
        fd = target.open(MANIFEST)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
    finally:
        target.close()
    return written


__all__ = ["CHUNK", "MANIFEST", "Item", "Stream", "Written", "contents", "safe_component", "write_contents"]
