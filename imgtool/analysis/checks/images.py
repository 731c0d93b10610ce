"""Offline checks: is the dump complete and self-consistent?  (No host access.)"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message

from imgtool.analysis.checks import ERROR, INFO, WARNING, Context, Finding, check
from imgtool.crit.explore import pagemap_runs
from imgtool.errors import ImgtoolError, RawImageError
from imgtool.format import magic, pagemap
from imgtool.format.flags import PE_PARENT, PE_PRESENT
from imgtool.memory.vma import page_size_of
from imgtool.model.dump import Dump, Task


def page_size(dump: Dump) -> int:
    """Page size of the dump: the root task's AT_PAGESZ (4096 when absent)."""
    task = dump.root_task
    return page_size_of(task.mm if task is not None else None)


@check("inventory")
def inventory(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    if dump.image("inventory") is None:
        yield Finding(ERROR, "image-missing", "inventory.img is missing: not a complete CRIU dump",
                      "point at the directory criu dump wrote", "inventory.img")
        return
    inv = dump.inventory
    if inv.HasField("pre_dump_mode"):   # only criu pre-dump sets it (cr-dump.c:1699; dump clears it, :2168)
        yield Finding(ERROR, "image-predump", "this is a pre-dump (memory only, no pstree.img): not restorable",
                      "restore the final dump that names this directory as its parent", "inventory.img")
        return
    if dump.image("pstree") is None:    # criu 4.2.1 reads it as empty and crashes (SIGSEGV)
        yield Finding(ERROR, "image-missing", "pstree.img is missing: criu cannot restore without the process "
                      "tree (criu 4.2.1 crashes)", "the dump is incomplete; take a new dump", "pstree.img")
        return
    if not inv.fdinfo_per_id:
        yield Finding(ERROR, "image-too-old", "images predate fdinfo_per_id: criu says 'Too old image'",
                      "restore with the CRIU release that made the dump", "inventory.img")
    if inv.img_version not in (1, 2):
        yield Finding(ERROR, "image-version", f"unsupported image version {inv.img_version}",
                      "restore with the CRIU release that made the dump", "inventory.img")
    if inv.HasField("root_cg_set") and inv.root_cg_set == 0:
        yield Finding(ERROR, "image-cgset", "root cgroup set is 0: criu says 'Corrupted root cgset'",
                      "take a new dump", "inventory.img")


def is_image_name(name: str) -> bool:
    """Whether criu reads a file of this name as an image: ``*.img``, ``stats-*`` or ``irmap-cache``.

    Anything else in the directory (criu's own ``dump.log``/``restore.log`` written there without
    ``--work-dir``, runc's ``descriptors.json``) is never opened by criu restore.
    """
    return name.endswith(".img") or name.startswith("stats-") or name == "irmap-cache"


@check("every image decodes")
def every_image_decodes(ctx: Context) -> Iterator[Finding]:
    for path in sorted(ctx.dump.path.iterdir()):
        if not path.is_file() or not is_image_name(path.name) or magic.raw_kind(path.name):
            continue
        try:
            with ctx.dump.open_image(path) as image:
                image.count()
        except RawImageError:
            continue
        except ImgtoolError as exc:
            yield Finding(ERROR, "image-corrupt", str(exc), "the dump is damaged; take a new dump", path.name)


TASK_DEAD = 2     # criu's task_state of a zombie (cr-dump.c dump_one_zombie); compel's 6 is never written


def is_zombie(dump: Dump, task: Task) -> bool:
    """A task that was dead at dump time: criu wrote only its core image (dump_one_zombie, cr-dump.c:944)."""
    if dump.image(f"core-{task.pid}") is None:
        return False
    core = task.core
    return core.HasField("tc") and core.tc.task_state in (TASK_DEAD, 6)


def _needed_images(dump: Dump, task: Task) -> list[str]:
    """The per-task images criu restore fails without.

    A zombie has a core image only: criu reads no ids (an empty ids image is fine, pstree.c:516), and restores it
    as a zombie without mm, fs, pagemap or fds (cr-restore.c restore_one_zombie).
    """
    if is_zombie(dump, task):
        return [f"core-{task.pid}"]
    needed = [f"core-{tid}" for tid in task.threads] + [f"ids-{task.pid}"]
    return [*needed, f"mm-{task.pid}", f"fs-{task.pid}", f"pagemap-{task.pid}"]


@check("per-task images")
def per_task_images(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    if dump.image("pstree") is None:
        return
    for task in dump.tasks:
        for name in _needed_images(dump, task):
            if dump.image(name) is None:
                yield Finding(ERROR, "image-missing", f"{name}.img is missing for task {task.pid}",
                              "the dump is incomplete; take a new dump", f"{name}.img")
        yield from _fdinfo_missing(dump, task)


def _fdinfo_missing(dump: Dump, task: Task) -> Iterator[Finding]:
    """criu opens a missing image as an empty one: without fdinfo-N.img the task comes back with no fds."""
    if is_zombie(dump, task) or dump.image(f"ids-{task.pid}") is None:
        return
    if dump.image(f"fdinfo-{task.ids.files_id}") is not None:
        return
    name = f"fdinfo-{task.ids.files_id}.img"
    yield Finding(WARNING, "image-fdinfo-missing", f"{name} is missing: criu restores task {task.pid} with no "
                  "open file descriptors at all (not even 0, 1, 2)", "the dump is incomplete; take a new dump", name)


@check("fds refer to files.img")
def fds_resolve(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    if dump.image("pstree") is None:
        return
    known = {e.id for e in dump.entries("files")}
    for task in dump.tasks:
        image = f"fdinfo-{task.ids.files_id}" if dump.image(f"ids-{task.pid}") else None
        for index, entry in enumerate(dump.entries(image) if image else []):
            if entry.id not in known:
                yield Finding(ERROR, "image-dangling-fd", f"fd {entry.fd} of task {task.pid} refers to file id "
                              f"{entry.id}, which files.img does not have", "take a new dump", f"{image}.img", index)


def _present_pages(dump: Dump, name: str) -> tuple[int | None, int]:
    """(pages_id, number of PE_PRESENT pages) of a pagemap image."""
    image = dump.image(name)
    head = next(image.entries(), None) if image is not None else None
    if head is None:
        return None, 0
    present = sum(n for _, pages, flags in pagemap.batches(image._view, head.end, image.header.byteorder, image.path)
                  for n, f in zip(pages, flags, strict=True) if f & PE_PRESENT)
    return head.message.pages_id, present


@check("pages files match pagemaps")
def pages_sizes(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    size = page_size(dump) if dump.image("pstree") is not None else 4096
    for name in dump.files_named("pagemap-"):
        stem = name.removesuffix(".img")
        pages_id, present = _present_pages(dump, stem)
        if pages_id is None:
            continue
        pages = dump.path / f"pages-{pages_id}.img"
        expected = present * size
        if not pages.is_file():
            if expected:
                yield Finding(ERROR, "image-pages-missing", f"{name} needs pages-{pages_id}.img "
                              f"({expected} bytes), which is missing", "take a new dump", name)
            continue
        actual = pages.stat().st_size
        if actual < expected:
            yield Finding(ERROR, "image-pages-short", f"pages-{pages_id}.img has {actual} bytes but {name} "
                          f"says {expected}: criu's restorer would spin forever at 100% CPU",
                          "the pages file is truncated; take a new dump", pages.name)
        elif actual > expected:   # pages are read at running offsets: all after a lost entry land wrong
            yield Finding(ERROR, "image-pages-long", f"pages-{pages_id}.img has {actual - expected} bytes more "
                          f"than {name} accounts for: a pagemap entry is lost, so criu would load the pages "
                          "after it from the wrong offsets (restore fails or the memory is wrong)",
                          "take a new dump", pages.name)


def unix_sockets(dump: Dump) -> list[Message]:
    """Every unix socket entry (UnixSkEntry): files.img, or unixsk.img of older dumps."""
    return [e.usk for e in dump.entries("files") if e.HasField("usk")] + dump.entries("unixsk")


@check("unix socket peers")
def unix_peers(ctx: Context) -> Iterator[Finding]:
    """A peer ino that no entry has: criu restore fails 'Peer %u unresolved for %u' (sk-unix.c:2285).

    criu dump writes this, without complaint, for a stream connect() to a listener outside the dump that the
    listener has not accept()ed yet (an in-flight connection, whose peer becomes the listener).
    """
    sockets = unix_sockets(ctx.dump)
    known = {u.ino for u in sockets}
    for u in sockets:
        if u.peer and u.peer not in known:
            yield Finding(ERROR, "image-unix-peer-missing", f"unix socket ino {u.ino} is connected to ino {u.peer}, "
                          f"which is not in the dump: criu says 'Peer {u.peer} unresolved'", "no criu option restores "
                          "it: dump again once the connection is closed", "files.img")


@check("parent chain")
def parent_chain(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    if dump.image("pstree") is None:
        return
    needs_parent = [(t.pid, v, n) for t in dump.tasks for v, n, f in pagemap_runs(dump, t.pid) if f & PE_PARENT]
    if not needs_parent:
        return
    parent = dump.parent
    if parent is None:
        yield Finding(ERROR, "image-parent-missing", f"{len(needs_parent)} pagemap runs are in the parent dump, "
                      "but there is no usable 'parent' link", "restore next to the parent dump directory "
                      "(keep the relative 'parent' link valid)", "parent")
        return
    yield Finding(INFO, "image-parent", f"incremental dump: {len(needs_parent)} runs come from {parent.path}")
    size, store = page_size(dump), dump.memory_store
    for pid in sorted({pid for pid, _, _ in needs_parent}):
        name = f"pagemap-{pid}"
        try:
            for _ in store.stream(name, size) or ():   # resolves PE_PARENT runs through the chain (nothing held),
                pass                                   # counting what is nowhere
        except ImgtoolError:
            continue                  # a damaged pagemap or pages file: the other checks report it
        missing = store.missing_parent_bytes.get(name, 0) // size
        if missing:
            yield Finding(ERROR, "image-parent-range", f"task {pid}: {missing} pages are marked in-parent but no "
                          "parent dump holds them", "take a full (non-incremental) dump", f"{name}.img")


REMAP_LINKED, REMAP_GHOST, REMAP_PROCFS = 0, 1, 2   # remap-file-path.proto remap_type
REMAP_GHOST_BIT = 1 << 31                            # images without remap_type flag a ghost in remap_id


def ghost_image(remap: Message) -> str | None:
    """The ghost image a remap-fpath entry needs: ``ghost-file-%x`` of its remap id (image-desc.c:68), or None."""
    if remap.HasField("remap_type"):
        ghost, remap_id = remap.remap_type == REMAP_GHOST, remap.remap_id
    else:
        ghost, remap_id = bool(remap.remap_id & REMAP_GHOST_BIT), remap.remap_id & ~REMAP_GHOST_BIT
    return f"ghost-file-{remap_id:x}" if ghost else None


@check("ghost files")
def ghost_files(ctx: Context) -> Iterator[Finding]:
    """A deleted file comes back from its ghost image; criu reads a missing one as empty and fails."""
    dump = ctx.dump
    for index, remap in enumerate(dump.entries("remap-fpath")):
        name = ghost_image(remap)
        if name is not None and dump.image(name) is None:
            path = dump.file_table.path(remap.orig_id) or f"file id {remap.orig_id}"
            yield Finding(ERROR, "image-ghost-missing", f"deleted file {path} needs {name}.img, which is missing",
                          "take a new dump", "remap-fpath.img", index)


@check("shared memory contents")
def shmem_images(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    for index, inode in enumerate(dump.entries("memfd")):
        if inode.size and dump.image(f"pagemap-shmem-{inode.shmid}") is None:
            yield Finding(WARNING, "image-shmem-missing", f"memfd {inode.name!r} ({inode.size} bytes) has no "
                          f"pagemap-shmem-{inode.shmid}.img: it restores empty", "take a new dump", "memfd.img", index)
