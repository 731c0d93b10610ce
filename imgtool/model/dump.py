"""A whole checkpoint: its image directory, decoded lazily, as processes and threads.

``imgtool.open(path)`` accepts a CRIU image directory, a Docker/runc
checkpoint directory (the images may sit one level down), an unpacked
Podman/CRI-O export (``checkpoint/`` beside ``config.dump``) or such an
archive (tar, gzip or zstd, detected by content; its small members unpacked
safely into a private temp dir that ``close()`` removes, its pages files read in
place from a plain tar or unpacked when memory is first read: model/archive.py).
Images are decoded on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from google.protobuf.message import Message

from imgtool.errors import ImgtoolError, MissingImageError, ParentLinkError, UsageError, WrongKindError
from imgtool.format import located, magic
from imgtool.format.fields import enum_name
from imgtool.format.image import Image
from imgtool.format.located import Backing

if TYPE_CHECKING:
    from imgtool.memory.chain import DumpMemory
    from imgtool.memory.space import AddressSpace
    from imgtool.model.files import Fd, FileTable

PARENT_LINK = "parent"  # criu/image.c: CR_PARENT_LINK

# compel/include/uapi/task-state.h.  CRIU writes TASK_DEAD (2) for a zombie (cr-dump.c dump_one_zombie: a core
# image and nothing else: no ids, mm, fs, fdinfo or pagemap); 6 is compel's seize-time name for the same thing.
TASK_STATES = {1: "alive", 2: "zombie", 3: "stopped", 6: "zombie"}


def find_image_dir(path: Path, name: str | None = None, archive: str | None = None) -> Path:
    """The folder holding inventory.img: ``path`` itself, ``checkpoint/``, or the one folder one level down that
    has one (``name`` picks one of several: a directory holding several dumps is an error without it).
    ``archive``: ``path`` is where that archive is unpacked; errors name the archive."""
    shown = archive or str(path)
    if name is not None:
        chosen = path / name
        if (chosen / "inventory.img").is_file():
            return chosen
        found = _dumps_below(path)
        raise MissingImageError(f"{shown if archive else chosen}: no CRIU image directory "
                                f"{'named ' + name + ' ' if archive else ''}(no inventory.img)"
                                + (f"; {shown} holds: {', '.join(p.name for p in found)}" if found else ""))
    if (path / "inventory.img").is_file():
        return path
    if (path / "checkpoint" / "inventory.img").is_file():
        return path / "checkpoint"
    found = _dumps_below(path)
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        way = "" if archive else f"as {path / found[0].name} or "
        raise UsageError(f"{shown} holds several dumps ({names}): name one, {way}with --dump {found[0].name}")
    raise MissingImageError(f"{shown}: no CRIU image directory (no inventory.img here or one level down)")


def _dumps_below(path: Path) -> list[Path]:
    """The folders right under ``path`` that hold an inventory.img."""
    try:
        folders = sorted(p for p in path.iterdir() if p.is_dir())
    except OSError as exc:
        raise MissingImageError(f"{path}: cannot list: {exc.strerror}") from None
    return [p for p in folders if (p / "inventory.img").is_file()]


class Dump:
    """One checkpoint.  Use as a context manager, or call close()."""

    def __init__(self, images: Path, *, root: Path | None = None, parent_of: Dump | None = None,
                 metadata: dict[str, Any] | None = None, archive: Any = None) -> None:
        self.path = images                 # the CRIU image directory
        self.root = root or images         # archive contents root, docker checkpoint dir...
        self.source = self.root            # what the user named (set by open())
        self.metadata = metadata or {}     # container engine files (config.dump, spec.dump...)
        self._child = parent_of
        self._archive = archive    # the model.archive.Archive its files come from (its parents' too); the newest
                                   # dump of the chain (the one opened) closes it
        self._images: dict[str, Image | None] = {}
        self._entries: dict[str, list[Message]] = {}
        self._memory_store: DumpMemory | None = None

    # -- opening and closing ---------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], dump: str | None = None) -> Dump:
        """Open a checkpoint; ``dump`` names one of several dumps in the directory ``path``."""
        path = Path(path)
        if not path.exists():
            raise MissingImageError(f"{path}: no such file or directory")
        if path.is_dir():
            images = find_image_dir(path, dump)
            dump = cls(images, root=path, metadata=_engine_metadata(images.parent if images != path else path))
        else:
            from imgtool.model import archive  # only archives need it

            # small members unpacked, pages files read in place (plain tar) or unpacked on first use
            extracted = archive.open_archive(path)
            try:   # the archive's dump, or the one named of several, as in a directory
                images = find_image_dir(extracted.root, dump, archive=str(path))
            except ImgtoolError:
                extracted.close()
                raise
            dump = cls(images, root=extracted.root, metadata=extracted.metadata, archive=extracted)
        dump.source = path
        return dump

    def close(self) -> None:
        if self._memory_store is not None:    # unmap the pages files
            self._memory_store.close()
            self._memory_store = None
        for image in self._images.values():
            if image is not None:
                image.close()
        self._images.clear()
        if "parent" in self.__dict__ and self.parent is not None:
            self.parent.close()
        if self._archive is not None and self._child is None:   # after the parents: their files are in it too
            self._archive.close()

    def __enter__(self) -> Dump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Dump {self.path}>"

    @property
    def location(self) -> str:
        """Where the images are, as the user finds them: the image directory, or an archive and the folder in it
        (``ckpt.tar.zst:checkpoint``; ``path`` is then a private temp dir, gone with the dump)."""
        if self._archive is None:
            return str(self.path)
        inner = self.path.relative_to(self._archive.root).as_posix()
        return self._archive.archive if inner == "." else f"{self._archive.archive}:{inner}"

    def backing(self, path: str | os.PathLike[str], window: tuple[int, int] | None = None) -> Backing | None:
        """Where the bytes of this dump's file at ``path`` are: in an archive's file (a member of a plain tar,
        read in place; a compressed archive's pages file, unpacked now), or (None) in that file.  ``window``:
        the addresses a reader of a pages file needs (None: any)."""
        return self._archive.backing(path, window) if self._archive is not None else None

    def open_image(self, path: str | os.PathLike[str]) -> Image:
        """An image file of this dump (or of its archive), mapped where its bytes are."""
        return Image.open(path, self.backing(path))

    def chunks(self, path: str | os.PathLike[str], chunk: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of a file of this dump (or of its archive), ``chunk`` at a time."""
        return located.read_chunks(path, self.backing(path), chunk)

    @contextmanager
    def on_disk(self) -> Iterator[Path]:
        """The image directory with every file CRIU reads really in it, for ``criu restore``: this dump's own
        directory, or for an archive a new unpack of its images whole (the other commands leave pages files in
        the archive, or holes in their place, until they read them)."""
        if self._archive is None:
            yield self.path
            return
        from imgtool.model import archive  # only archives need it

        with archive.extract(self._archive.archive, select=archive.for_restore) as whole:
            yield whole.root / self.path.relative_to(self._archive.root)

    @property
    def memory_store(self) -> DumpMemory:
        """The pages files and pagemaps of this dump, shared by its tasks (created on first use, closed by close)."""
        if self._memory_store is None:
            from imgtool.memory.chain import DumpMemory

            self._memory_store = DumpMemory(self)
        return self._memory_store

    # -- images ------------------------------------------------------------------

    def image(self, name: str) -> Image | None:
        """The image file ``name`` (".img" optional), opened once; None when absent."""
        if name not in self._images:
            path = self.path / name
            if not path.exists() and (self.path / f"{name}.img").exists():
                path = self.path / f"{name}.img"
            image = self.open_image(path) if path.is_file() else None
            expected = magic.kind_for_name(path.name)
            if image is not None and expected is not None and image.magic != expected:
                image.close()
                raise WrongKindError(f"wrong kind of image: the magic says {image.magic}, the file name says "
                                     f"{expected}", path=str(path))
            self._images[name] = image
        return self._images[name]

    def require(self, name: str) -> Image:
        image = self.image(name)
        if image is None:
            raise MissingImageError(f"{self.location}: {name}.img is missing")
        return image

    def entries(self, name: str) -> list[Message]:
        """Decoded messages of an image (cached); empty when the image is absent."""
        if name not in self._entries:
            image = self.image(name)
            self._entries[name] = list(image.messages()) if image is not None else []
        return self._entries[name]

    def first(self, name: str) -> Message:
        """The single entry of a one-entry image (core-N, mm-N, ids-N, fs-N, inventory)."""
        found = self.entries(name)
        if not found:
            raise MissingImageError(f"{self.location}: {name}.img is missing or empty")
        return found[0]

    def files_named(self, prefix: str) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.name.startswith(prefix))

    @cached_property
    def inventory(self) -> Message:
        return self.first("inventory")

    @cached_property
    def parent(self) -> Dump | None:
        """The previous dump of an incremental chain (``parent`` link), or None."""
        target = parent_path(self.path)
        if target is None:
            return None
        dump: Dump | None = self
        while dump is not None:   # this dump and the ones it is the parent of: a link back to one of them loops
            if dump.path.resolve() == target:
                raise ParentLinkError(f"{self.path / PARENT_LINK}: the parent link loops back to {target}")
            dump = dump._child
        return Dump(target, parent_of=self, archive=self._archive)

    def chain(self) -> Iterator[Dump]:
        """This dump, then its parent, grandparent... (stops on a loop)."""
        seen: set[Path] = set()
        dump: Dump | None = self
        while dump is not None and dump.path.resolve() not in seen:
            seen.add(dump.path.resolve())
            yield dump
            dump = dump.parent

    @cached_property
    def file_table(self) -> FileTable:
        """files.img resolved: what each file id is."""
        from imgtool.model.files import FileTable  # imported on first use: reading memory does not need it

        return FileTable(self)

    # -- processes ---------------------------------------------------------------

    @cached_property
    def tasks(self) -> list[Task]:
        """Every process in pstree order (the root first)."""
        return [Task(self, entry) for entry in self.entries("pstree")]

    @cached_property
    def tasks_by_ppid(self) -> dict[int, list[Task]]:
        """Tasks by parent pid, in pstree order (children in O(1), whatever the size of the tree)."""
        found: dict[int, list[Task]] = {}
        for task in self.tasks:
            found.setdefault(task.ppid, []).append(task)
        return found

    def require_pstree(self) -> None:
        """Raise, saying what this dump is, when it has no process tree (a pre-dump, an incomplete copy)."""
        if self.image("pstree") is not None:
            return
        parent = parent_path(self.path)
        link = f"; its parent link points to {parent}" if parent is not None else ""
        inventory = self.entries("inventory")
        if inventory and inventory[0].HasField("pre_dump_mode"):
            raise MissingImageError(f"{self.location}: a pre-dump (criu pre-dump: memory pages only, no processes "
                                    f"or files){link}; open the dump taken after it to see processes")
        raise MissingImageError(f"{self.location}: pstree.img is missing: no process tree (an incomplete copy of a "
                                f"dump?){link}")

    def task(self, pid: int) -> Task:
        for task in self.tasks:
            if task.pid == pid:
                return task
        self.require_pstree()
        known = ", ".join(str(t.pid) for t in self.tasks[:20]) + (", ..." if len(self.tasks) > 20 else "")
        raise UsageError(f"{self.location}: no process with pid {pid} in pstree.img (pids: {known or 'none'})")

    @property
    def root_task(self) -> Task | None:
        return next((t for t in self.tasks if t.ppid == 0), self.tasks[0] if self.tasks else None)


def parent_path(images: Path) -> Path | None:
    """Where ``images/parent`` points: a symlink, or (as copied by some tools) a file holding the path."""
    link = images / PARENT_LINK
    try:
        if link.is_symlink() or link.is_dir():
            target = link.resolve(strict=True)
        elif link.is_file() and link.stat().st_size < 4096:
            target = (images / link.read_text(errors="surrogateescape").strip()).resolve(strict=True)
        else:
            return None
        return target if (target / "inventory.img").is_file() or target.is_dir() else None
    except FileNotFoundError:
        return None     # a dangling link: no parent to read (checks report it)
    except (OSError, RuntimeError, ValueError) as exc:   # a symlink loop (RuntimeError before Python 3.13), NUL...
        raise ParentLinkError(f"{link}: the parent link cannot be followed ({exc})") from None


def _engine_metadata(folder: Path) -> dict[str, Any]:
    """Container engine files beside an unpacked export (config.dump, spec.dump, ...)."""
    found: dict[str, Any] = {}
    for name in ("config.dump", "spec.dump", "status.dump", "network.status", "pod.options", "pod.dump"):
        path = folder / name
        if path.is_file():
            import json

            try:
                found[name] = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                found[name] = f"unreadable: {exc}"
    return found


def _task_id(entry: Message, name: str) -> int:
    """pstree ids: the plain field, or the first ns_ one (crit's get_task_id)."""
    if entry.HasField(name):
        return getattr(entry, name)
    ns = getattr(entry, "ns_" + name, None)
    return ns[0] if ns else 0


class Thread(NamedTuple):
    tid: int
    core: Message   # core-<tid>.img: thread_info (registers) and thread_core

    @property
    def comm(self) -> str:
        tc = self.core.thread_core
        return tc.comm if self.core.HasField("thread_core") and tc.comm else self.core.tc.comm


class Task:
    """A process of the dump: pstree entry plus its per-task images, decoded on demand."""

    def __init__(self, dump: Dump, entry: Message) -> None:
        self.dump, self.entry = dump, entry
        self.pid = _task_id(self.entry, "pid")
        self.ppid = self.entry.ppid
        self.pgid = _task_id(self.entry, "pgid")
        self.sid = _task_id(self.entry, "sid")
        self._memory: AddressSpace | None = None

    def __repr__(self) -> str:
        return f"<Task {self.pid} {self.comm!r}>"

    @property
    def threads(self) -> list[int]:
        listed = list(self.entry.threads)
        if listed and self.pid not in listed:
            # criu 4.2.1 writes an uninitialised thread id for a zombie (its only core image is core-<pid>)
            try:
                if self.dead:
                    return [self.pid]
            except ImgtoolError:
                pass
        return listed or [self.pid]

    @cached_property
    def core(self) -> Message:
        return self.dump.first(f"core-{self.pid}")

    def thread_core(self, tid: int) -> Message:
        return self.dump.first(f"core-{tid}")

    @property
    def thread_list(self) -> list[Thread]:
        """Each thread with its own core image (registers, signals, name)."""
        return [Thread(tid, self.thread_core(tid)) for tid in self.threads]

    @property
    def comm(self) -> str:
        core = self.core
        if core.HasField("tc") and core.tc.comm:
            return core.tc.comm
        return core.thread_core.comm if core.HasField("thread_core") else ""

    @property
    def state(self) -> str:
        value = self.core.tc.task_state if self.core.HasField("tc") else 0
        return TASK_STATES.get(value, f"state {value}")

    @property
    def dead(self) -> bool:
        """A zombie at dump time: only its core image exists (no fds, no memory, no fs)."""
        return self.state == "zombie"

    @property
    def exit_code(self) -> int:
        return self.core.tc.exit_code if self.core.HasField("tc") else 0

    @cached_property
    def ids(self) -> Message:
        return self.dump.first(f"ids-{self.pid}")

    @cached_property
    def mm(self) -> Message | None:
        found = self.dump.entries(f"mm-{self.pid}")
        return found[0] if found else None

    @cached_property
    def fs(self) -> Message | None:
        found = self.dump.entries(f"fs-{self.pid}")
        return found[0] if found else None

    @property
    def creds(self) -> Message | None:
        tc = self.core.thread_core if self.core.HasField("thread_core") else None
        if tc is not None and tc.HasField("creds"):
            return tc.creds
        found = self.dump.entries(f"creds-{self.pid}")  # images before CRIU 2.x
        return found[0] if found else None

    @property
    def children(self) -> list[Task]:
        return [t for t in self.dump.tasks_by_ppid.get(self.pid, ()) if t is not self]

    @property
    def parent(self) -> Task | None:
        return next((t for t in self.dump.tasks if t.pid == self.ppid), None)

    @property
    def memory(self) -> AddressSpace:
        """The task's address space: VMAs and the dumped bytes behind them (built on first use)."""
        if self._memory is None:
            from imgtool.memory.space import address_space

            self._memory = address_space(self)
        return self._memory

    @property
    def memory_built(self) -> bool:
        """Whether ``memory`` has been built (reading from it then costs no new walk of the pagemaps)."""
        return self._memory is not None

    @property
    def cmdline(self) -> list[str]:
        """argv as the process left it in memory ([] when it cannot be read: zombie, missing pages)."""
        from imgtool.memory.space import cmdline

        if self.mm is None:
            return []
        try:
            return cmdline(self.memory)
        except ImgtoolError:
            return []

    @property
    def environ(self) -> list[str]:
        from imgtool.memory.space import environ

        return environ(self.memory)

    @cached_property
    def fds(self) -> list[Fd]:
        """Open file descriptors in fd order, resolved to what they are (none for a zombie: CRIU writes no ids
        or fdinfo for it)."""
        from imgtool.model.files import Fd  # imported on first use: reading memory does not need it

        if self.dead:
            return []
        table = self.dump.file_table
        entries = self.dump.entries(f"fdinfo-{self.ids.files_id}")
        fds = [Fd(e.fd, e.flags, table.get(enum_name(e, "type"), e.id)) for e in entries]
        return sorted(fds, key=lambda f: f.fd)

    @property
    def cwd(self) -> str | None:
        return self.dump.file_table.path(self.fs.cwd_id) if self.fs is not None else None

    @property
    def root(self) -> str | None:
        return self.dump.file_table.path(self.fs.root_id) if self.fs is not None else None
