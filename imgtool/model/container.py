"""The container around a checkpoint, from the engine's files in ``dump.metadata`` (what checkpointctl
show/inspect prints): engine, runtime, name, id, image, times, network interfaces, sizes.

One detector per engine: a function decorated with ``@detector("Engine")`` that returns a ``Container``
(or None when the files are not that engine's). Detectors run in registration order; the first answer wins.
Sizes are filled in for every engine by ``container_of``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgtool.model.dump import Dump


@dataclass(slots=True)
class Interface:
    """One network interface the engine recorded (network.status)."""

    name: str
    ip: list[str] = field(default_factory=list)        # addresses with prefix length, as recorded
    mac: str | None = None
    gateway: list[str] = field(default_factory=list)
    network: str | None = None


@dataclass(slots=True)
class Container:
    engine: str                       # "Podman", "CRI-O", "containerd", "Docker"
    id: str | None = None
    name: str | None = None
    runtime: str | None = None        # "runc", "crun", ...
    image: str | None = None
    image_id: str | None = None
    created: str | None = None
    checkpointed: str | None = None
    pod: str | None = None
    namespace: str | None = None      # Kubernetes namespace
    command: list[str] = field(default_factory=list)
    tty: bool | None = None
    interfaces: list[Interface] = field(default_factory=list)
    # bytes: checkpoint, memory_pages, rootfs_diff, gpu_pages
    sizes: dict[str, int | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Detector = Callable[["Dump", Mapping[str, Any]], Container | None]
DETECTORS: list[tuple[str, Detector]] = []


def detector(engine: str) -> Callable[[Detector], Detector]:
    """Register a detector for ``engine`` (one function per engine)."""
    def register(func: Detector) -> Detector:
        DETECTORS.append((engine, func))
        return func
    return register


def container_of(dump: Dump) -> Container | None:
    """The container this checkpoint was taken of, or None for a plain ``criu dump``."""
    meta = dump.metadata or {}
    for _engine, func in DETECTORS:
        found = func(dump, meta)
        if found is not None:
            process = _dict(_dict(meta.get("spec.dump") or _dict(meta.get("config.dump")).get("spec")).get("process"))
            if not found.command and isinstance(process.get("args"), list):
                found.command = [str(a) for a in process["args"]]
            if found.tty is None and isinstance(process.get("terminal"), bool):
                found.tty = process["terminal"]
            found.sizes = sizes(dump)
            return found
    return None


# -- helpers ------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _annotations(meta: Mapping[str, Any]) -> dict[str, str]:
    spec = _dict(meta.get("spec.dump"))
    config_spec = _dict(_dict(meta.get("config.dump")).get("spec"))
    return {**_dict(config_spec.get("annotations")), **_dict(spec.get("annotations"))}


def _runtime(value: Any) -> str | None:
    return os.path.basename(value) if isinstance(value, str) and value else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def interfaces(status: Any) -> list[Interface]:
    """network.status in its two shapes: netavark's ``{network: {"interfaces": {name: {"subnets": [...],
    "mac_address": ...}}}}`` and CNI results ``[{"interfaces": [{"name", "mac"}], "ips": [{"address",
    "gateway", "interface"}]}]``."""
    found: list[Interface] = []
    if isinstance(status, dict):
        for network, block in status.items():
            for name, iface in _dict(_dict(block).get("interfaces")).items():
                iface = _dict(iface)
                subnets = [_dict(s) for s in iface.get("subnets") or []]
                found.append(Interface(str(name), [str(s["ipnet"]) for s in subnets if s.get("ipnet")],
                                       _str(iface.get("mac_address")),
                                       [str(s["gateway"]) for s in subnets if s.get("gateway")], str(network)))
    elif isinstance(status, list):
        for result in status:
            result = _dict(result)
            ifaces = [_dict(i) for i in result.get("interfaces") or []]
            made = [Interface(str(i.get("name", "?")), mac=_str(i.get("mac"))) for i in ifaces]
            for ip in (_dict(x) for x in result.get("ips") or []):
                idx = ip.get("interface")
                if not isinstance(idx, int) or not 0 <= idx < len(made):
                    made.append(Interface("?"))
                    idx = len(made) - 1
                if ip.get("address"):
                    made[idx].ip.append(str(ip["address"]))
                if ip.get("gateway"):
                    made[idx].gateway.append(str(ip["gateway"]))
            found += [i for i in made if i.ip or i.mac]
    return found


def _size_of(paths: Iterable[Path]) -> int:
    total = 0
    for path in paths:
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
            elif path.is_dir() and not path.is_symlink():
                total += _size_of(path.iterdir())
        except OSError:
            continue
    return total


def sizes(dump: Dump) -> dict[str, int | None]:
    """checkpointctl's sizes: the checkpoint (archive file, or the image directory), the memory pages
    (pages-*.img), the root file system diff (rootfs-diff.tar) and GPU pages (amdgpu-pages-*.img), in bytes;
    None when the checkpoint does not have it."""
    source = Path(dump.source)
    rootfs = Path(dump.root) / "rootfs-diff.tar"
    gpu = list(dump.path.glob("amdgpu-pages-*.img"))
    return {"checkpoint": source.stat().st_size if source.is_file() else _size_of([dump.path]),
            "memory_pages": _size_of(dump.path.glob("pages-*.img")),
            "rootfs_diff": rootfs.stat().st_size if rootfs.is_file() else None,
            "gpu_pages": _size_of(gpu) if gpu else None}


# -- engines ------------------------------------------------------------------------


def _config_container(engine: str, config: dict[str, Any], meta: Mapping[str, Any]) -> Container:
    """podman and CRI-O write the same config.dump (libpod's / CRI-O's ContainerConfig)."""
    return Container(engine, id=_str(config.get("id")), name=_str(config.get("name")),
                     runtime=_runtime(config.get("runtime") or config.get("ociRuntime")),
                     image=_str(config.get("rootfsImageName") or config.get("RawImageName")
                                or config.get("rootfsImageRef") or config.get("rootfsImage")),
                     image_id=_str(config.get("rootfsImageID") or config.get("rootfsImageRef")),
                     created=_str(config.get("createdTime")), checkpointed=_str(config.get("checkpointedTime")),
                     interfaces=interfaces(meta.get("network.status")))


@detector("Podman")
def podman(dump: Dump, meta: Mapping[str, Any]) -> Container | None:
    config = _dict(meta.get("config.dump"))
    manager = _annotations(meta).get("io.container.manager")
    if not config or (manager != "libpod" and not ("rootfsImageName" in config and "lockID" in config)):
        return None
    return _config_container("Podman", config, meta)


@detector("CRI-O")
def crio(dump: Dump, meta: Mapping[str, Any]) -> Container | None:
    config = _dict(meta.get("config.dump"))
    notes = _annotations(meta)
    if not config or not (notes.get("io.container.manager") == "cri-o"
                          or (any(k.startswith("io.kubernetes.cri-o.") and k != "io.kubernetes.cri-o.TTY"
                                 for k in notes) and notes.get("io.container.manager") != "libpod")):
        return None
    found = _config_container("CRI-O", config, meta)
    found.name = notes.get("io.kubernetes.container.name") or found.name
    found.pod = notes.get("io.kubernetes.pod.name")
    found.namespace = notes.get("io.kubernetes.pod.namespace")
    return found


@detector("containerd")
def containerd(dump: Dump, meta: Mapping[str, Any]) -> Container | None:
    spec = _dict(meta.get("spec.dump"))
    notes = _annotations(meta)
    if not spec or "io.kubernetes.cri.container-name" not in notes:
        return None
    config = _dict(meta.get("config.dump"))
    return Container("containerd", id=_str(config.get("id")), name=notes.get("io.kubernetes.cri.container-name"),
                     runtime=_runtime(config.get("runtime")), image=notes.get("io.kubernetes.cri.image-name"),
                     created=_str(config.get("createdTime")), pod=notes.get("io.kubernetes.cri.sandbox-name"),
                     namespace=notes.get("io.kubernetes.cri.sandbox-namespace"),
                     interfaces=interfaces(meta.get("network.status")))


@detector("Docker")
def docker(dump: Dump, meta: Mapping[str, Any]) -> Container | None:
    """Docker: config.v2.json/hostconfig.json two levels up from the checkpoint dir (all of it in model/docker.py,
    which gets the classes passed in and never imports this module)."""
    from imgtool.model import docker as engine  # lazy, sideways: read only when no other engine answered

    return engine.detect(dump, Container, Interface)


__all__ = ["DETECTORS", "Container", "Interface", "container_of", "detector", "interfaces", "sizes"]
