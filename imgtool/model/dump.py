"""A whole checkpoint: its image directory, decoded lazily, as processes and threads.

``imgtool.open(path)`` accepts a CRIU image directory, a Docker/runc
checkpoint directory (the images may sit one level down), an unpacked
Podman/CRI-O export (``checkpoint/`` beside ``config.dump``) or such an
archive (tar, gzip or zstd, detected by content; unpacked safely into a
private temp dir that ``close()`` removes).  Images are decoded on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from google.protobuf.message import Message

from imgtool.errors import ImgtoolError, MissingImageError
from imgtool.format.image import Image

if TYPE_CHECKING:
    from imgtool.memory.space import AddressSpace
    from imgtool.model.files import Fd, FileTable

PARENT_LINK = "parent"  # criu/image.c: CR_PARENT_LINK

# compel/include/uapi/task-state.h
TASK_STATES = {1: "alive", 2: "dead", 3: "stopped", 6: "zombie"}


def find_image_dir(path: Path) -> Path:
    """The folder holding inventory.img: ``path`` itself, ``checkpoint/``, or one level down."""
    if (path / "inventory.img").is_file():
        return path
    candidates = [path / "checkpoint", *sorted(p for p in path.iterdir() if p.is_dir())]
    for folder in candidates:
        if (folder / "inventory.img").is_file():
            return folder
    raise MissingImageError(f"{path}: no CRIU image directory (no inventory.img here or one level down)")


class Dump:
    """One checkpoint.  Use as a context manager, or call close()."""

    def __init__(self, images: Path, *, root: Path | None = None, parent_of: Dump | None = None,
                 metadata: dict[str, Any] | None = None, cleanup: Any = None) -> None:
        self.path = images                 # the CRIU image directory
        self.root = root or images         # archive contents root, docker checkpoint dir...
        self.source = self.root            # what the user named (set by open())
        self.metadata = metadata or {}     # container engine files (config.dump, spec.dump...)
        self._child = parent_of
        self._cleanup = cleanup
        self._images: dict[str, Image | None] = {}
        self._entries: dict[str, list[Message]] = {}

    # -- opening and closing ---------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Dump:
        path = Path(path)
        if not path.exists():
            raise MissingImageError(f"{path}: no such file or directory")
        if path.is_dir():
            images = find_image_dir(path)
            dump = cls(images, root=path, metadata=_engine_metadata(images.parent if images != path else path))
        else:
            from imgtool.model import archive  # only archives need it

            extracted = archive.extract(path)
            dump = cls(extracted.images, root=extracted.root, metadata=extracted.metadata, cleanup=extracted)
        dump.source = path
        return dump

    def close(self) -> None:
        from imgtool.memory import space as memory

        memory.release(self)
        for image in self._images.values():
            if image is not None:
                image.close()
        self._images.clear()
        if self._cleanup is not None:
            self._cleanup.close()
            self._cleanup = None
        if "parent" in self.__dict__ and self.parent is not None:
            self.parent.close()

    def __enter__(self) -> Dump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Dump {self.path}>"

    # -- images ------------------------------------------------------------------

    def image(self, name: str) -> Image | None:
        """The image file ``name`` (".img" optional), opened once; None when absent."""
        if name not in self._images:
            path = self.path / name
            if not path.exists() and (self.path / f"{name}.img").exists():
                path = self.path / f"{name}.img"
            self._images[name] = Image.open(path) if path.is_file() else None
        return self._images[name]

    def require(self, name: str) -> Image:
        image = self.image(name)
        if image is None:
            raise MissingImageError(f"{self.path}: {name}.img is missing")
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
            raise MissingImageError(f"{self.path}: {name}.img is missing or empty")
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
        return Dump(target, parent_of=self)

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

    def task(self, pid: int) -> Task:
        for task in self.tasks:
            if task.pid == pid:
                return task
        raise ImgtoolError(f"{self.path}: no process with pid {pid} in pstree.img")

    @property
    def root_task(self) -> Task | None:
        return next((t for t in self.tasks if t.ppid == 0), self.tasks[0] if self.tasks else None)


def parent_path(images: Path) -> Path | None:
    """Where ``images/parent`` points: a symlink, or (as copied by some tools) a file holding the path."""
    link = images / PARENT_LINK
    if link.is_symlink() or link.is_dir():
        target = link.resolve()
    elif link.is_file() and link.stat().st_size < 4096:
        target = (images / link.read_text().strip()).resolve()
    else:
        return None
    return target if (target / "inventory.img").is_file() or target.is_dir() else None


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

    def __repr__(self) -> str:
        return f"<Task {self.pid} {self.comm!r}>"

    @property
    def threads(self) -> list[int]:
        return list(self.entry.threads) or [self.pid]

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
        return [t for t in self.dump.tasks if t.ppid == self.pid and t is not self]

    @property
    def parent(self) -> Task | None:
        return next((t for t in self.dump.tasks if t.pid == self.ppid), None)

    @cached_property
    def memory(self) -> AddressSpace:
        """The task's address space: VMAs and the dumped bytes behind them."""
        from imgtool.memory.space import address_space

        return address_space(self)

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
        """Open file descriptors, resolved to what they are."""
        from imgtool.model.files import task_fds

        return task_fds(self)

    @property
    def cwd(self) -> str | None:
        return self.dump.file_table.path(self.fs.cwd_id) if self.fs is not None else None

    @property
    def root(self) -> str | None:
        return self.dump.file_table.path(self.fs.root_id) if self.fs is not None else None
