"""Docker's metadata around a checkpoint: which container it belongs to and what that container is.

``docker checkpoint create C NAME`` (Docker 20.10 with containerd and runc) writes the CRIU images straight into
``<data-root>/containers/<id>/checkpoints/<NAME>/`` (plus runc's descriptors.json), so the container's own
files sit two levels up: ``config.v2.json`` (name with a leading slash, ID, Config.Image/Tty/Cmd, Path and Args,
Created, NetworkSettings, MountPoints) and ``hostconfig.json`` (NetworkMode, Runtime, Binds, IpcMode...).
``docker start --checkpoint NAME C2`` restores from ``C2``'s own checkpoints dir (Docker 20.10 refuses
``--checkpoint-dir``: "custom checkpointdir is not supported"), so the container a checkpoint is restored into is
described by such a container dir too (:func:`read_container`).

Everything imgtool knows about Docker is here: the layout, the JSON fields, which mounts Docker itself provides,
and how runc takes extra CRIU options (:func:`criu_option_hint`). Nothing here raises for a checkpoint outside
Docker's layout: :func:`container_of` returns None.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field, make_dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from imgtool.errors import UsageError

ENGINE = "Docker"                      # as model/container.py names engines
CONFIG, HOSTCONFIG = "config.v2.json", "hostconfig.json"
CHECKPOINTS = "checkpoints"            # <container dir>/checkpoints/<name>/
MAX_CONFIG_BYTES = 16 << 20            # a config.v2.json is a few KiB; refuse to slurp anything huge

# The bind mounts dockerd adds to every container from files of the container dir (HostnamePath, HostsPath,
# ResolvConfPath); runc marks every bind mount external on checkpoint (key: the destination) and passes the same
# keys back on restore, so a restore into any Docker container finds them.
STANDARD_BINDS = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
# runc's masked paths (/proc/keys, /proc/timer_list, ...) are binds of /dev/null, which runc also marks external.
MASKED_PATH_SOURCE = "/dev/null"
# cgroup v1 without a cgroup namespace: runc bind-mounts each controller's hierarchy and marks the binds external.
CGROUP_V1 = "/sys/fs/cgroup"
CONSOLE = "/dev/console"               # bound from the container's pty when it has one (docker run -t)
SHM = "/dev/shm"                       # bound from ShmPath when the IPC mode is "shareable" (or "private" before 18.09)

# runc reads extra CRIU options from this file (one option a line, without the dashes), or from the file named by
# the container's org.criu.config annotation; Docker 20.10's CLI cannot set annotations.
RUNC_CRIU_CONFIG = "/etc/criu/runc.conf"
CRIU_CONFIG_ANNOTATION = "org.criu.config"


@dataclass(frozen=True)
class Mount:
    """One entry of config.v2.json's MountPoints (a volume, a bind mount or a tmpfs)."""

    destination: str
    source: str
    type: str                          # "bind", "volume", "tmpfs"...
    name: str = ""                     # the volume's name
    rw: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"destination": self.destination, "source": self.source, "type": self.type, "name": self.name,
                "rw": self.rw}


@dataclass(frozen=True)
class Checkpoint:
    """One folder of a container's checkpoints dir."""

    name: str
    path: Path
    size: int                          # bytes of its files
    created: str                       # the folder's mtime, ISO 8601 UTC
    images: bool                       # holds inventory.img (a failed dump leaves none, or no folder at all)
    parent: str | None = None          # the parent link of an incremental checkpoint (runc --parent-path)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "size": self.size, "created": self.created,
                "images": self.images, "parent": self.parent}


@dataclass(frozen=True)
class Container:
    """A Docker container as its container dir describes it."""

    dir: Path
    id: str
    name: str                          # without Docker's leading slash
    image: str                         # Config.Image: what the user named (imgtool/busybox:latest)
    image_id: str                      # Image: the sha256 it resolved to
    command: tuple[str, ...]           # Path + Args: what runs as the container's pid 1
    created: str
    tty: bool                          # Config.Tty: created with -t
    open_stdin: bool                   # Config.OpenStdin: created with -i
    hostname: str
    network_mode: str                  # hostconfig NetworkMode: "default", "bridge", "host", "none", "container:X"
    networks: tuple[str, ...]          # NetworkSettings.Networks' names
    runtime: str                       # hostconfig Runtime: "runc" (only runc checkpoints)
    ipc_mode: str
    shm_path: str
    driver: str                        # the storage driver of the rootfs (overlay2)
    running: bool
    mounts: tuple[Mount, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / CHECKPOINTS

    def checkpoints(self) -> list[Checkpoint]:
        return list_checkpoints(self.dir)

    def provided_mounts(self) -> dict[str, str]:
        """Destination -> what Docker binds there when it starts (or restores) this container."""
        found = {dest: "Docker's own bind mount" for dest in STANDARD_BINDS}
        found[MASKED_PATH_SOURCE] = "runc's masked paths"
        if self.tty:
            found[CONSOLE] = "the container's terminal (-t)"
        if self.shm_path:
            found[SHM] = "the container's shm (IPC mode " + (self.ipc_mode or "private") + ")"
        for m in self.mounts:
            found[m.destination] = f"{m.type} {m.name or m.source}".strip()
        return found

    def to_json(self, checkpoint: Path | None = None) -> dict[str, Any]:
        """The container view: what ``summary --json`` shows under "container" (``checkpoint``: the one opened)."""
        data: dict[str, Any] = {
            "engine": ENGINE, "id": self.id, "name": self.name, "image": self.image, "image_id": self.image_id,
            "command": list(self.command), "created": self.created, "tty": self.tty, "hostname": self.hostname,
            "network_mode": self.network_mode, "networks": list(self.networks), "runtime": self.runtime,
            "mounts": [m.to_json() for m in self.mounts], "container_dir": str(self.dir),
        }
        if checkpoint is not None:
            data["checkpoint"] = checkpoint.name
            data["checkpoint_size"] = tree_size(checkpoint)
        data["checkpoints"] = [c.name for c in self.checkpoints()]
        return data


# -- finding and reading ----------------------------------------------------------------------------------------

def provides(provided: dict[str, str], destination: str) -> bool:
    """Whether a restore into a container whose :meth:`Container.provided_mounts` are ``provided`` gets an external
    mount at ``destination`` (runc's cgroup v1 binds under /sys/fs/cgroup come with every container)."""
    return destination in provided or destination.startswith(CGROUP_V1 + "/")


def container_dir_of(checkpoint: str | os.PathLike[str]) -> Path | None:
    """``<data-root>/containers/<id>`` for a checkpoint dir ``.../containers/<id>/checkpoints/<name>`` (its
    config.v2.json two levels up), else None."""
    path = Path(checkpoint)
    try:
        path = path.resolve()
    except (OSError, RuntimeError):
        return None
    if path.parent.name != CHECKPOINTS:
        return None
    folder = path.parent.parent
    return folder if (folder / CONFIG).is_file() else None


def container_of(checkpoint: str | os.PathLike[str]) -> Container | None:
    """The Docker container a checkpoint dir belongs to (None: not in Docker's layout, or its config unreadable)."""
    folder = container_dir_of(checkpoint)
    if folder is None:
        return None
    try:
        return read_container(folder)
    except UsageError:
        return None


def read_container(path: str | os.PathLike[str]) -> Container:
    """A container dir (or its config.v2.json); hostconfig.json beside it is optional. UsageError when
    config.v2.json is missing or not Docker's."""
    path = Path(path)
    folder = path.parent if path.name == CONFIG or path.is_file() else path
    config = _read_json(folder / (path.name if path.is_file() else CONFIG), required=True)
    host = _read_json(folder / HOSTCONFIG, required=False)
    if not isinstance(config.get("Config"), dict) or not isinstance(config.get("ID"), str):
        raise UsageError(f"{folder / CONFIG}: not a Docker container config (no ID and Config)")
    conf: dict[str, Any] = config["Config"]
    settings = config.get("NetworkSettings") or {}
    mounts = []
    for dest, mp in sorted((config.get("MountPoints") or {}).items()):
        if isinstance(mp, dict):
            mounts.append(Mount(str(mp.get("Destination") or dest), str(mp.get("Source") or ""),
                                str(mp.get("Type") or ""), str(mp.get("Name") or ""), bool(mp.get("RW", True))))
    command = [config.get("Path") or "", *(config.get("Args") or [])] if config.get("Path") else \
        [*(conf.get("Entrypoint") or []), *(conf.get("Cmd") or [])]
    return Container(
        dir=folder, id=config["ID"], name=str(config.get("Name") or "").removeprefix("/"),
        image=str(conf.get("Image") or ""), image_id=str(config.get("Image") or ""),
        command=tuple(map(str, command)), created=str(config.get("Created") or ""), tty=bool(conf.get("Tty")),
        open_stdin=bool(conf.get("OpenStdin")), hostname=str(conf.get("Hostname") or ""),
        network_mode=str(host.get("NetworkMode") or ""), networks=tuple(sorted(settings.get("Networks") or {})),
        runtime=str(host.get("Runtime") or ""), ipc_mode=str(host.get("IpcMode") or ""),
        shm_path=str(config.get("ShmPath") or ""), driver=str(config.get("Driver") or ""),
        running=bool((config.get("State") or {}).get("Running")), mounts=tuple(mounts),
        labels=dict(conf.get("Labels") or {}), annotations=dict(host.get("Annotations") or {}))


def _read_json(path: Path, *, required: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if required:
            raise UsageError(f"{path}: no such file (a Docker container dir holds {CONFIG} and {HOSTCONFIG})") \
                from None
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB: not a Docker container config")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: not a JSON object")
    return value


# -- checkpoints of a container ----------------------------------------------------------------------------------

def list_checkpoints(container_dir: str | os.PathLike[str]) -> list[Checkpoint]:
    """The folders of ``<container dir>/checkpoints``, by name (none: an empty list)."""
    folder = Path(container_dir) / CHECKPOINTS
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UsageError(f"{folder}: cannot list: {exc.strerror}") from None
    found = []
    for p in entries:
        link = p / "parent"
        parent = os.readlink(link) if link.is_symlink() else None
        created = datetime.fromtimestamp(p.stat().st_mtime).astimezone().isoformat(timespec="seconds")
        found.append(Checkpoint(p.name, p, tree_size(p), created, (p / "inventory.img").is_file(), parent))
    return found


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(folder, name)):
                total += st.st_size
    return total


# -- what to tell a Docker user ---------------------------------------------------------------------------------

def criu_option_hint(option: str) -> str:
    """How a Docker user gets a criu option (``--tcp-established``) into runc's checkpoint and restore."""
    line = option.lstrip("-")
    return (f"Docker cannot pass criu options: runc reads them from {RUNC_CRIU_CONFIG} (add a line '{line}'; "
            f"it applies to every checkpoint and restore on the host) or from the file named by the container's "
            f"'{CRIU_CONFIG_ANNOTATION}' annotation (not settable with Docker 20.10's CLI)")


def describe(container: Container) -> str:
    """One line for people: ``name (id[:12]), image, command``."""
    return (f"{container.name} ({container.id[:12]}), image {container.image}, "
            f"command {shlex.join(container.command)!r}")


# -- the container view (model/container.py's Docker detector calls this) -----------------------------------------

def detect(dump: Any, container_class: type, interface_class: type) -> Any:
    """model/container.py's ``Container`` for a dump in Docker's layout (None otherwise).

    container.py passes its ``Container`` and ``Interface`` classes in, so that this module never imports it (it
    imports this one); the result is a subclass adding what only Docker records: the network mode, the
    checkpoint's name, the container dir and its volumes, and the command that restores the checkpoint."""
    found = None
    for path in dict.fromkeys((dump.source, dump.root, dump.path)):
        if isinstance(path, (str, os.PathLike)) and Path(path).is_dir():
            found = container_of(path)
            if found is not None:
                checkpoint = Path(path)
                break
    if found is None:
        return None
    interfaces = []
    for name, net in (_networks(found.dir)).items():
        ips = [f"{net[k]}/{net[p]}" for k, p in (("IPAddress", "IPPrefixLen"), ("GlobalIPv6Address",
                                                                                  "GlobalIPv6PrefixLen")) if net.get(k)]
        gateways = [str(net[k]) for k in ("Gateway", "IPv6Gateway") if net.get(k)]
        if ips or net.get("MacAddress"):     # a stopped container keeps its networks with the addresses blanked
            interfaces.append(interface_class(name, ips, net.get("MacAddress") or None, gateways, name))
    view = _view_class(container_class)
    return view(ENGINE, id=found.id, name=found.name, runtime=found.runtime or None, image=found.image or None,
                image_id=found.image_id or None, created=found.created or None, command=list(found.command),
                tty=found.tty, interfaces=interfaces, network_mode=found.network_mode or None,
                checkpoint=checkpoint.name, container_dir=str(found.dir),
                mounts=[m.to_json() for m in found.mounts],
                restore_command=f"docker start --checkpoint {shlex.quote(checkpoint.name)} "
                                f"{shlex.quote(found.name or found.id)}")


def _networks(folder: Path) -> dict[str, dict[str, Any]]:
    settings = _read_json(folder / CONFIG, required=False).get("NetworkSettings") or {}
    return {str(k): v for k, v in sorted((settings.get("Networks") or {}).items()) if isinstance(v, dict)}


@cache
def _view_class(base: type) -> type:
    """``base`` (container.py's Container) with Docker's own fields, made once per base class."""
    return make_dataclass("DockerContainer", [
        ("network_mode", "str | None", field(default=None)),      # hostconfig NetworkMode
        ("checkpoint", "str | None", field(default=None)),        # the checkpoint's name
        ("container_dir", "str | None", field(default=None)),     # <data-root>/containers/<id>
        ("mounts", "list[dict[str, Any]]", field(default_factory=list)),   # MountPoints
        ("restore_command", "str | None", field(default=None)),   # how Docker restores it
    ], bases=(base,), slots=True)
