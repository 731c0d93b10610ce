"""Dump-wide facets: the inventory, and image files compared entry by entry (namespaces, mounts, cgroups, the rest)."""

from __future__ import annotations

from collections.abc import Iterator

from imgtool.analysis.changes import Change
from imgtool.analysis.diff.registry import DumpPair, claimed, facet
from imgtool.analysis.diff.values import diff_image_files, diff_values, image_names
from imgtool.crit.convert import to_dict

NAMESPACES = (r"(utsns|ipcns-\w+|userns|netns|pidns|timens|netdev|ifaddr|route6?|rule|ip6?tables|nftables|netns-\w+)"
              r"-[0-9a-f]+")
MOUNTS = r"(mountpoints|tmpfs(-dev)?|autofs)-\d+(\.tar\.gz)?"


def _own_images(pair: DumpPair, name: str) -> Iterator[Change]:
    """The image files the facet ``name`` covers (its ``images`` pattern), in either dump."""
    names = sorted(n for n in image_names(pair.a) | image_names(pair.b) if (f := claimed(n)) and f.name == name)
    yield from diff_image_files(name, names, pair.a, pair.b)


@facet("namespaces", scope="dump", order=100, help="namespace images: uts, ipc, net (devices, addresses, routes)",
       images=NAMESPACES)
def namespaces(pair: DumpPair) -> Iterator[Change]:
    yield from _own_images(pair, "namespaces")


@facet("mounts", scope="dump", order=110, help="mount points, tmpfs and autofs contents", images=MOUNTS)
def mounts(pair: DumpPair) -> Iterator[Change]:
    yield from _own_images(pair, "mounts")


@facet("cgroups", scope="dump", order=120, help="cgroup image", images="cgroup")
def cgroups(pair: DumpPair) -> Iterator[Change]:
    yield from _own_images(pair, "cgroups")


@facet("inventory", scope="dump", order=130, help="inventory: criu version, features, dump options",
       images=r"inventory|stats-\w+|irmap-cache")
def inventory(pair: DumpPair) -> Iterator[Change]:
    skip = {"root_ids"}  # ids are renumbered from dump to dump
    old = {k: v for k, v in to_dict(pair.a.inventory, True).items() if k not in skip}
    new = {k: v for k, v in to_dict(pair.b.inventory, True).items() if k not in skip}
    yield from diff_values("inventory", ("inventory",), old, new)


@facet("images", scope="dump", order=1000, help="every other image file, entry by entry")
def images(pair: DumpPair) -> Iterator[Change]:
    names = sorted(n for n in image_names(pair.a) | image_names(pair.b) if claimed(n) is None)
    yield from diff_image_files("images", names, pair.a, pair.b)

