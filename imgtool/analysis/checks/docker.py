"""Checks for a restore through Docker (``docker start --checkpoint``), and the criu options a dump needs that
Docker users cannot pass on a command line.

``check --for-container CONTAINER_DIR`` (``ctx.container``: a ``model.docker.Container``) compares the dump with
the container Docker will restore it into: its terminal (``-t``), the mounts Docker provides, its image. runc, not
the user, chooses the criu options there: it marks every bind mount external (key: the destination) and passes
the same keys back on restore, and it reads any other option from /etc/criu/runc.conf or the file the
``org.criu.config`` annotation names (``model.docker.criu_option_hint``).

The connected-TCP check is an image check: it runs with ``--offline`` and without ``--for-container`` too, and
gives the Docker hint whenever the dump is a Docker checkpoint or is checked for a Docker container.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.message import Message

from imgtool.analysis.checks import ERROR, INFO, WARNING, Context, Finding, check
from imgtool.analysis.checks.mounts import MountTree
from imgtool.model import docker
from imgtool.model.dump import Dump

IPPROTO_TCP = 6
PTS_MAJORS = range(136, 144)     # UNIX98_PTY_SLAVE_MAJOR .. + UNIX98_PTY_MAJOR_COUNT
PTMX = (5, 2)                    # TTYAUX_MAJOR, /dev/ptmx


def source_container(ctx: Context) -> docker.Container | None:
    """The Docker container the checkpoint was taken of (its dir in Docker's layout), else None."""
    dump = ctx.dump
    for path in dict.fromkeys((dump.source, dump.root, dump.path)):
        if isinstance(path, (str, os.PathLike)) and Path(path).is_dir():
            found = docker.container_of(path)
            if found is not None:
                return found
    return None


def target_container(ctx: Context) -> docker.Container | None:
    target = ctx.container
    return target if isinstance(target, docker.Container) else None


def _runc_options(ctx: Context) -> list[str]:
    """The criu options of /etc/criu/runc.conf on this host (none offline, or when there is no such file)."""
    if ctx.offline:
        return []
    try:
        text = Path(docker.RUNC_CRIU_CONFIG).read_text(errors="replace")
    except OSError:
        return []
    return ["--" + line.split()[0].lstrip("-") for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


# ------------------------------------------------------------------ connected TCP sockets (image check)

@check("connected TCP sockets")
def connected_tcp(ctx: Context) -> Iterator[Finding]:
    """criu restore refuses a connected TCP socket without --tcp-established (sk-inet.c: 'Connected TCP socket in
    image'), or closes it with --tcp-close; a dump taken with --tcp-close has none left to restore."""
    dump = ctx.dump
    if dump.image("pstree") is None or dump.inventory.tcp_close:
        return
    connected = [e.isk for e in dump.entries("files")
                 if e.HasField("isk") and e.isk.proto == IPPROTO_TCP and e.isk.dst_port]
    runc = _runc_options(ctx)
    if not connected or ctx.has_option("--tcp-established", "--tcp-close") \
            or any(o in ("--tcp-established", "--tcp-close") for o in runc):
        return
    first = connected[0]
    hint = "add --tcp-established (or --tcp-close: the connections are closed on restore)"
    if target_container(ctx) is not None or source_container(ctx) is not None:
        hint += "; " + docker.criu_option_hint("--tcp-established")
    yield Finding(ERROR, "option-tcp-established",
                  f"{len(connected)} connected TCP socket(s) in the dump (e.g. port {first.src_port} -> "
                  f"{first.dst_port}): criu restore says 'Connected TCP socket in image' without --tcp-established",
                  hint, "files.img", option="--tcp-established")


# ------------------------------------------------------------------ --for-container

@check("docker: the target container")
def target(ctx: Context) -> Iterator[Finding]:
    tgt = target_container(ctx)
    if tgt is None:
        return
    src = source_container(ctx)
    yield Finding(INFO, "docker-host-checks", "the checks of a plain criu restore on this host (files under --root, "
                  "external mounts, --shell-job, pids, kernel) are not run: runc chooses criu's options itself "
                  "(the container's rootfs, its bind mounts, its terminal); the images and the container's config are "
                  "checked" + ("" if ctx.offline else f", and {docker.RUNC_CRIU_CONFIG} for extra criu options"))
    if src is not None and src.id == tgt.id:
        yield Finding(INFO, "docker-same-container", f"restoring into the container the checkpoint was taken of: "
                      f"{docker.describe(tgt)}")
    elif src is not None:
        yield Finding(INFO, "docker-other-container", f"checkpoint of {src.name} ({src.id[:12]}), restored into "
                      f"{docker.describe(tgt)}")
    if tgt.runtime and tgt.runtime != "runc":
        yield Finding(WARNING, "docker-runtime", f"{tgt.name} runs with runtime {tgt.runtime!r}: Docker "
                      "checkpoints and restores through runc", "create the container with --runtime runc")
    if tgt.running:
        yield Finding(WARNING, "docker-running", f"{tgt.name} was running when its config.v2.json was written: "
                      "docker start --checkpoint restores only into a created or stopped container",
                      f"docker stop {tgt.name} first (or create a new container)")


def _inherited_ptys(dump: Dump) -> list[Message]:
    """tty-info entries of pty slaves whose master is not in the dump: the container's terminal (docker -t)."""
    infos = dump.entries("tty-info")
    masters = {tie.pty.index for tie in infos
               if (os.major(tie.rdev), os.minor(tie.rdev)) == PTMX and tie.HasField("pty")}
    used = {f.tty_info_id for f in [e.tty for e in dump.entries("files") if e.HasField("tty")] + dump.entries("tty")}
    return [tie for tie in infos if os.major(tie.rdev) in PTS_MAJORS and tie.id in used
            and not (tie.HasField("pty") and tie.pty.index in masters)]


@check("docker: terminal")
def terminal(ctx: Context) -> Iterator[Finding]:
    tgt = target_container(ctx)
    if tgt is None or ctx.dump.image("pstree") is None:
        return
    src = source_container(ctx)
    ptys = _inherited_ptys(ctx.dump)
    original = f", or into the original container {src.name}" if src is not None and src.id != tgt.id else ""
    if ptys and not tgt.tty:
        tie = ptys[0]
        index = tie.pty.index if tie.HasField("pty") else "?"
        yield Finding(ERROR, "docker-tty", f"the dumped processes use the container's terminal (pty {index}, "
                      f"session {tie.sid}; the checkpointed container was created with -t) but {tgt.name} has no "
                      "terminal (Config.Tty false): criu restore says \"Don't have tty to inherit session from\"",
                      f"restore into a container created with -t (docker create -t ...){original}", "tty-info.img")
    elif not ptys and tgt.tty:
        what = " (created with -t)" if src is not None and src.tty else ""
        yield Finding(WARNING, "docker-tty", f"{tgt.name} has a terminal (-t) but the dumped processes use none"
                      f"{what}: the restored processes do not get it (docker attach shows nothing)",
                      f"restore into a container created without -t{original}", "tty-info.img")


@check("docker: mounts")
def mounts(ctx: Context) -> Iterator[Finding]:
    """Every external mount of the dump must be one runc passes back on restore: Docker's own binds, or a volume
    or bind mount of the target (MountPoints); criu otherwise says 'No mapping for ... mountpoint'."""
    tgt = target_container(ctx)
    if tgt is None:
        return
    src = source_container(ctx)
    tree = MountTree(ctx.dump, [])
    provided = tgt.provided_mounts()
    source_mounts = {m.destination: m for m in src.mounts} if src is not None else {}
    dumped: set[str] = set()
    for m in tree.mounts:
        key = m.ext_key
        if key is None:
            continue
        dumped.add(key)
        if docker.provides(provided, key) or key == docker.CONSOLE:     # the terminal: the tty check's business
            continue
        what = source_mounts.get(key)
        desc = f"{what.type} mount of {what.name or what.source}" if what is not None else "an external mount"
        yield Finding(ERROR, "docker-mount-missing", f"{m.describe()} is {desc} in the dump (external key {key!r}) "
                      f"but {tgt.name} has no mount at {key}: criu restore says 'No mapping for {key} mountpoint'",
                      f"create the container with the same mount (docker create -v SOURCE:{key} ...)",
                      f"mountpoints-{m.ns}.img")
    for dest, mount in sorted((m.destination, m) for m in tgt.mounts):
        if dest not in dumped and tree.present:
            yield Finding(WARNING, "docker-mount-unused", f"{tgt.name} mounts {mount.type} "
                          f"{mount.name or mount.source} at {dest}, which the dump does not have: criu rebuilds the "
                          "dumped mount tree, so the restored processes do not see it")
        elif dest in source_mounts and (source_mounts[dest].source, source_mounts[dest].name) \
                != (mount.source, mount.name):
            yield Finding(INFO, "docker-mount-other", f"{dest}: the checkpoint had {source_mounts[dest].type} "
                          f"{source_mounts[dest].name or source_mounts[dest].source}, {tgt.name} mounts "
                          f"{mount.type} {mount.name or mount.source} there: its files must be the same")


O_ACCMODE, O_RDONLY = 3, 0


@check("docker: image and rootfs")
def image(ctx: Context) -> Iterator[Finding]:
    """Files are reopened by path in the target's rootfs: the same image, and for files the original container
    wrote (its writable layer, not in the checkpoint), the same container."""
    tgt = target_container(ctx)
    if tgt is None:
        return
    src = source_container(ctx)
    if src is None:
        yield Finding(INFO, "docker-image-unknown", "the checkpoint is not in a Docker container dir "
                      "(<data-root>/containers/<id>/checkpoints/<name>): its image cannot be compared with "
                      f"{tgt.name}'s ({tgt.image})")
        return
    if (src.image_id and tgt.image_id and src.image_id != tgt.image_id) or src.image != tgt.image:
        yield Finding(WARNING, "docker-image", f"the checkpoint was taken in image {src.image} ({src.image_id[:19]}) "
                      f"but {tgt.name} runs {tgt.image} ({tgt.image_id[:19]}): open and mapped files are reopened from "
                      "its rootfs, and criu fails on any that differ ('has bad size', 'bad build-ID') or are missing",
                      f"create the container from {src.image} ({src.image_id})")
    if src.id == tgt.id or ctx.dump.image("pstree") is None:
        return
    written = sorted({f.file.entry.name for t in ctx.dump.tasks if not t.dead for f in t.fds
                      if f.file.kind == "REG" and f.file.entry is not None and _writable(f.file.entry)
                      and not f.file.entry.name.startswith(("/dev/", "/proc/"))})
    if written:
        shown = ", ".join(written[:5]) + (f" and {len(written) - 5} more" if len(written) > 5 else "")
        yield Finding(WARNING, "docker-rootfs", f"files open for writing in {src.name}: {shown}: a checkpoint "
                      f"does not hold the container's writable layer, so {tgt.name} must have them (same size) or "
                      "criu restore fails ('Can't open file', 'has bad size')",
                      f"restore into {src.name}, or copy the files into {tgt.name} first (docker cp)")


def _writable(reg: Message) -> bool:
    return reg.flags & O_ACCMODE != O_RDONLY
