"""``imgtool mounts DIR`` (the dumped mount tree, mountpoints-*.img) and ``imgtool stats DIR`` (criu's
stats-dump / stats-restore: frozen time, memory dump time, pages scanned, written, lazy)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from imgtool.cli.commands.inspect import add_dump_option, open_checkpoint
from imgtool.errors import MissingImageError
from imgtool.format.image import Image
from imgtool.model.dump import Dump

# Per-mount MS_* flags (linux/mount.h) as the mount options they stand for; rw when MS_RDONLY is clear.
MOUNT_FLAGS = ((0x2, "nosuid"), (0x4, "nodev"), (0x8, "noexec"), (0x10, "sync"), (0x80, "dirsync"),
               (0x100, "nosymfollow"), (0x400, "noatime"), (0x800, "nodiratime"), (1 << 21, "relatime"),
               (1 << 24, "strictatime"), (1 << 25, "lazytime"))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mounts", help="the dumped mount tree: sources, types, options, external and bind marks")
    p.add_argument("dir", help="image directory or checkpoint archive")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_dump_option(p)
    p.set_defaults(func=cmd_mounts)
    p = sub.add_parser("stats", help="criu's dump and restore statistics (stats-dump, stats-restore)")
    p.add_argument("dir", help="image directory, checkpoint archive or a stats-dump/stats-restore file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_dump_option(p)
    p.set_defaults(func=cmd_stats)


# -- mounts -------------------------------------------------------------------------


def mount_options(flags: int) -> list[str]:
    return ["ro" if flags & 1 else "rw", *(name for bit, name in MOUNT_FLAGS if flags & bit)]


def fstype_name(entry: Message) -> str:
    if entry.HasField("fsname") and entry.fsname:
        return entry.fsname
    from imgtool.format.pb import mnt_pb2  # imported on first use: building the parser stays cheap

    try:
        return mnt_pb2.fstype.Name(entry.fstype).lower()
    except ValueError:
        return f"fstype {entry.fstype}"


def mount_json(entry: Message) -> dict[str, Any]:
    marks = []
    if entry.ext_mount or entry.ext_key:
        marks.append("external")
    if entry.root not in ("/", ""):
        marks.append("bind")
    if entry.shared_id:
        marks.append(f"shared:{entry.shared_id}")
    if entry.master_id:
        marks.append(f"master:{entry.master_id}")
    if entry.deleted:
        marks.append("deleted")
    if entry.with_plugin:
        marks.append("plugin")
    return {"mnt_id": entry.mnt_id, "parent_mnt_id": entry.parent_mnt_id, "mountpoint": entry.mountpoint,
            "root": entry.root, "source": entry.source, "type": fstype_name(entry),
            "options": mount_options(entry.flags) + [o for o in entry.options.split(",") if o],
            "flags": entry.flags, "sb_flags": entry.sb_flags if entry.HasField("sb_flags") else None,
            "external": bool(entry.ext_mount or entry.ext_key), "ext_key": entry.ext_key or None,
            "bind": entry.root not in ("/", ""), "marks": marks}


def mount_namespaces(dump: Dump) -> dict[str, list[dict[str, Any]]]:
    """Each mountpoints-<ns>.img's mounts, parents before children (depth first, by mount point)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name in dump.files_named("mountpoints-"):
        mounts = [mount_json(e) for e in dump.entries(name.removesuffix(".img"))]
        found[name.removesuffix(".img").removeprefix("mountpoints-")] = _tree_order(mounts)
    return found


def _tree_order(mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = {m["mnt_id"] for m in mounts}
    children: dict[int, list[dict[str, Any]]] = {}
    for m in mounts:
        children.setdefault(m["parent_mnt_id"], []).append(m)
    roots = [m for m in mounts if m["parent_mnt_id"] not in ids or m["parent_mnt_id"] == m["mnt_id"]]
    ordered, seen = [], set()
    stack = [(m, 0) for m in sorted(roots, key=lambda m: m["mountpoint"], reverse=True)]
    while stack:
        m, depth = stack.pop()
        if m["mnt_id"] in seen:
            continue
        seen.add(m["mnt_id"])
        ordered.append({**m, "depth": depth})
        kids = [k for k in children.get(m["mnt_id"], []) if k is not m]
        stack.extend((k, depth + 1) for k in sorted(kids, key=lambda k: k["mountpoint"], reverse=True))
    ordered += [{**m, "depth": 0} for m in mounts if m["mnt_id"] not in seen]   # a loop in damaged images
    return ordered


def cmd_mounts(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from imgtool.render.console import console, emit_json, table

    with open_checkpoint(args, tasks=False) as dump:
        namespaces = mount_namespaces(dump)
    if args.json:
        emit_json([{"mnt_ns": ns, "mounts": mounts} for ns, mounts in namespaces.items()])
        return 0
    out = console()
    if not namespaces:
        out.print("no mount namespace dumped (no mountpoints-*.img)")
    for ns, mounts in namespaces.items():
        rows = [(m["mnt_id"], escape("  " * m["depth"] + m["mountpoint"]), escape(m["type"]), escape(m["source"]),
                 escape(",".join(m["options"])), escape(" ".join(m["marks"] + ([f"root={m['root']}"] if m["bind"]
                                                                                  else []))))
                for m in mounts]
        out.print(table(f"mount namespace {ns}: {len(mounts)} mounts", ["id", "mount point", "type", "source",
                                                                        "options", "marks"], rows, right=["id"]))
    return 0


# -- stats --------------------------------------------------------------------------

STATS_FILES = ("stats-dump", "stats-restore")

# (field, label, unit): times are microseconds in the image.
DUMP_FIELDS = (("freezing_time", "freezing time", "us"), ("frozen_time", "frozen time", "us"),
               ("memdump_time", "memory dump time", "us"), ("memwrite_time", "memory write time", "us"),
               ("pages_scanned", "pages scanned", ""), ("pages_skipped_parent", "pages skipped (in parent)", ""),
               ("pages_written", "pages written", ""), ("pages_lazy", "pages lazy", ""),
               ("page_pipes", "page pipes", ""), ("page_pipe_bufs", "page pipe buffers", ""),
               ("shpages_scanned", "shared pages scanned", ""),
               ("shpages_skipped_parent", "shared pages skipped (in parent)", ""),
               ("shpages_written", "shared pages written", ""), ("irmap_resolve", "irmap resolve time", "us"))
RESTORE_FIELDS = (("forking_time", "forking time", "us"), ("restore_time", "restore time", "us"),
                  ("pages_compared", "pages compared", ""), ("pages_skipped_cow", "pages skipped (COW)", ""),
                  ("pages_restored", "pages restored", ""))


def stats_files(dump: Dump | None, path: Path) -> list[Path]:
    """stats-dump and stats-restore where criu leaves them: the image directory (its default work dir) or the
    checkpoint's top directory (podman, CRI-O archives)."""
    if dump is None:
        return [path]
    found: list[Path] = []
    for folder in dict.fromkeys([dump.path, Path(dump.root)]):
        for name in STATS_FILES:
            candidate = folder / name
            if candidate.is_file() and name not in {p.name for p in found}:
                found.append(candidate)
    return found


def read_stats(path: Path, dump: Dump | None = None) -> dict[str, Any]:
    """One stats file (of ``dump``, if given: its bytes may be in an archive) as {"file", "dump": {...}} or
    {"file", "restore": {...}} (fields criu set)."""
    with (dump.open_image(path) if dump is not None else Image.open(path)) as img:
        entries = list(img.messages())
    result: dict[str, Any] = {"file": path.name}
    for entry in entries:
        for part, fields in (("dump", DUMP_FIELDS), ("restore", RESTORE_FIELDS)):
            if entry.HasField(part):
                msg = getattr(entry, part)
                result[part] = {name: getattr(msg, name) for name, _, _ in fields if msg.HasField(name)}
    return result


def cmd_stats(args: argparse.Namespace) -> int:
    from imgtool.render.console import console, emit_json, table

    path = Path(args.dir)
    if path.is_file() and path.name.startswith("stats-"):
        found = [read_stats(path)]
    else:
        with open_checkpoint(args, tasks=False) as dump:
            found = [read_stats(p, dump) for p in stats_files(dump, path)]
    if not found:
        raise MissingImageError(f"{args.dir}: no stats-dump or stats-restore (criu writes them to its work dir)")
    if args.json:
        emit_json(found)
        return 0
    out = console()
    labels = {name: (label, unit) for name, label, unit in DUMP_FIELDS + RESTORE_FIELDS}
    for stats in found:
        for part in ("dump", "restore"):
            if part in stats:
                rows = [(labels[k][0], _value(v, labels[k][1])) for k, v in stats[part].items()]
                out.print(table(f"{stats['file']}: {part}", ["", "value"], rows, right=["value"]))
    return 0


def _value(value: int, unit: str) -> str:
    if unit == "us":
        return f"{value / 1000:.3f} ms"
    return str(value)
