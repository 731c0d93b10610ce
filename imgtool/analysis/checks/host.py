"""Host checks: will this host, with these criu options, accept the dump?"""

from __future__ import annotations

import ipaddress
import os
import platform
import re
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.message import Message

from imgtool.analysis.checks import ERROR, INFO, WARNING, Context, Finding, check
from imgtool.analysis.checks.images import REMAP_GHOST, REMAP_GHOST_BIT, REMAP_LINKED, page_size, unix_sockets
from imgtool.analysis.checks.mounts import AUTODETECTED_MOUNT, Location, MountTree
from imgtool.crit.explore import pagemap_runs
from imgtool.format.elf import as_words, build_id
from imgtool.format.fields import enum_name
from imgtool.format.flags import PE_PRESENT, VMA_AREA_MEMFD, VMA_FILE_PRIVATE, VMA_FILE_SHARED
from imgtool.model.dump import Dump

ARCHES = {"X86_64": ("x86_64",), "AARCH64": ("aarch64", "arm64"), "ARM": ("armv7l", "armv6l"),
          "PPC64": ("ppc64le",), "S390": ("s390x",), "MIPS": ("mips64",), "LOONGARCH64": ("loongarch64",),
          "RISCV64": ("riscv64",)}
O_ACCMODE, O_WRONLY, O_APPEND = 3, 1, 0o2000
USK_EXTERN = 1
SOCK_DGRAM = 2


def _restorable(dump: Dump) -> bool:
    return dump.image("pstree") is not None


def _own_namespace(dump: Dump, kind: str) -> bool:
    """Whether the dumped tasks live in their own namespace of ``kind`` (pid, mnt, net...)."""
    root = dump.root_task
    inv = dump.inventory
    field = f"{kind}_ns_id"
    if root is None or dump.image(f"ids-{root.pid}") is None:
        return False
    if not inv.HasField("root_ids") or not root.ids.HasField(field):
        return False
    return getattr(root.ids, field) != getattr(inv.root_ids, field)


# ------------------------------------------------------------------ files


def _referenced_files(dump: Dump) -> dict[int, str]:
    """File ids criu opens by path on restore: fds, mapped files, exe, cwd and root."""
    table, ids = dump.file_table, {}
    for task in dump.tasks:
        for fd in task.fds if dump.image(f"ids-{task.pid}") is not None else []:
            if fd.file.kind == "REG":
                ids[fd.file.id] = f"fd {fd.fd} of task {task.pid}"
        if task.mm is not None:
            ids.setdefault(task.mm.exe_file_id, f"executable of task {task.pid}")
            for vma in task.mm.vmas:
                if vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) and not vma.status & VMA_AREA_MEMFD:
                    ids.setdefault(vma.shmid, f"mapping {vma.start:#x} of task {task.pid}")
        if task.fs is not None:
            ids.setdefault(task.fs.cwd_id, f"cwd of task {task.pid}")
            ids.setdefault(task.fs.root_id, f"root of task {task.pid}")
    return {i: why for i, why in ids.items() if table.payload("REG", i) is not None}


@check("files on the host", kind="host")
def files_on_host(ctx: Context) -> Iterator[Finding]:
    """Every file criu reopens by path, looked up where the restored task will see it (see mounts.py)."""
    dump = ctx.dump
    if not _restorable(dump):
        return
    tree = MountTree(dump, ctx.criu_options)
    if tree.present:
        root = _restore_root(ctx)
        problems = list(_mount_namespace(ctx, tree, root))
        yield from problems
        if root is None or any(f.code == "host-root-missing" for f in problems):
            return
    else:
        root = _host_root(ctx)
    remaps = {r.orig_id: r for r in dump.entries("remap-fpath")}
    elsewhere: dict[str, int] = {}
    for file_id, why in sorted(_referenced_files(dump).items()):
        reg = dump.file_table.payload("REG", file_id)
        remap = remaps.get(file_id)
        if remap is not None:
            if _remap_type(remap) != REMAP_LINKED:
                continue          # ghost (from its image) or a dead task's /proc file: nothing on the host
            link = dump.file_table.payload("REG", remap.remap_id)
            if link is None:
                continue
            reg, why = link, f"link of deleted {reg.name}, {why}"
        where = tree.locate(reg.name, reg.mnt_id if reg.HasField("mnt_id") else None, root)
        if where.how == "host" and _proc_of_dumped_task(dump, reg.name):
            where = Location(None, None, "recreated", "they are /proc files of dumped tasks, which the restore "
                             "brings back with their pids")
        if where.host is None:
            elsewhere[where.why] = elsewhere.get(where.why, 0) + 1
            continue
        yield from _check_file(ctx, reg, why, where.host)
    for why, count in sorted(elsewhere.items()):
        yield Finding(INFO, "host-files-restored", f"{count} file(s) not looked for on this host: {why}",
                      image="files.img")


def _proc_of_dumped_task(dump: Dump, path: str) -> bool:
    """Whether ``path`` is /proc/PID/... (or /proc/PID/task/TID/...) of a task the restore recreates."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "" or parts[1] != "proc" or not parts[2].isdigit():
        return False
    return int(parts[2]) in {tid for task in dump.tasks for tid in task.threads}


def _host_root(ctx: Context) -> Path:
    """Where files are without a mount namespace: criu ignores its --root then (it opens "/")."""
    criu_root = ctx.option_value("--root")
    if criu_root is not None and ctx.root == Path(criu_root):
        return Path("/")
    return ctx.root


def _restore_root(ctx: Context) -> Path | None:
    """The directory criu binds as the root of a restored mount namespace: its --root (None: not given), looked
    for at imgtool's own --root when that names another place."""
    criu_root = ctx.option_value("--root")
    if criu_root is None:
        return None
    return ctx.root if ctx.root != Path("/") else Path(criu_root)


def _mount_namespace(ctx: Context, tree: MountTree, root: Path | None) -> Iterator[Finding]:
    """What rebuilding the dumped mount namespace needs: --root, and every external mount mapped to a host path."""
    root_mount = next((m for m in tree.mounts if tree.is_root(m)), None)
    shown = f" (it was {root_mount.entry.root} on the dumped host)" if root_mount is not None else ""
    image = f"mountpoints-{root_mount.ns}.img" if root_mount is not None else None
    if root is None:
        yield Finding(ERROR, "option-root", "the dump has its own mount namespace: criu says 'The --root option "
                      "is required to restore a mount namespace'", f"pass --root ROOTFS, the directory that holds "
                      f"the dumped root filesystem{shown}", image)
    elif not root.is_dir():
        yield Finding(ERROR, "host-root-missing", f"--root {root} is not a directory here: criu cannot bind "
                      f"it as the root of the restored mount namespace{shown}", "pass the rootfs directory as --root",
                      image)
    for m in tree.mounts:
        if not m.ext_key:
            continue
        value, problem = tree.external_value(m)
        image = f"mountpoints-{m.ns}.img"
        if problem:
            key = m.ext_key
            hint = ("add --ext-mount-map auto" if key == AUTODETECTED_MOUNT else
                    f"add --external 'mnt[{key}]:HOST-PATH' (container engines pass these themselves: restore "
                    "through them)")
            yield Finding(ERROR, "option-ext-mount", f"external mount {m.mountpoint}: {problem}", hint, image)
        elif value is not None and not Path(value).exists():
            yield Finding(ERROR, "host-ext-mount-missing", f"external mount {m.mountpoint} is mapped to {value}, "
                          "which does not exist here: criu cannot bind-mount it", f"create {value} or map "
                          f"mnt[{m.ext_key}] to another path", image)


def _remap_type(remap: Message) -> int:
    """REMAP_TYPE of a remap-fpath entry; old images flag a ghost in remap_id's top bit (files-reg.c:733)."""
    if remap.HasField("remap_type"):
        return remap.remap_type
    return REMAP_GHOST if remap.remap_id & REMAP_GHOST_BIT else REMAP_LINKED


def _check_file(ctx: Context, reg, why: str, path: Path) -> Iterator[Finding]:
    shown = "" if path == Path("/") / reg.name.lstrip("/") else f", here {path}"
    where = f"{reg.name} ({why}{shown})"
    try:
        st = path.stat()
    except FileNotFoundError:
        yield Finding(ERROR, "host-file-missing", f"{where} does not exist", f"restore {reg.name} or "
                      "restore on the host the dump was made on", "files.img")
        return
    except OSError as exc:
        yield Finding(WARNING, "host-file-unreadable", f"{where}: {exc.strerror}", "", "files.img")
        return
    if reg.HasField("size") and stat.S_ISREG(st.st_mode) and st.st_size != reg.size:
        yield Finding(ERROR, "host-file-size", f"{where} has size {st.st_size}, the dump expects {reg.size}",
                      "criu refuses a file that changed since the dump: put the original back", "files.img")
        return
    if reg.HasField("size") and reg.build_id and stat.S_ISREG(st.st_mode) and _checks_build_id(ctx):
        found = build_id(path)
        if found is not None and as_words(found) != list(reg.build_id):
            yield Finding(ERROR, "host-file-build-id", f"{where} is a different build of the binary (build-ID "
                          "differs)", "install the exact binary the process ran, or restore on its host; if it "
                          "is compatible, pass --file-validation filesize", "files.img")
            return
    if reg.HasField("mode") and st.st_mode != reg.mode:
        skip = ctx.has_option("--skip-file-rwx-check")
        if skip and (st.st_mode & ~0o777) == (reg.mode & ~0o777):
            return
        yield Finding(ERROR, "host-file-mode", f"{where} has mode {st.st_mode:o}, the dump expects {reg.mode:o}",
                      f"chmod {reg.mode & 0o7777:o} {reg.name}" + ("" if skip else " or pass --skip-file-rwx-check"),
                      "files.img", option=None if skip else "--skip-file-rwx-check")


def _checks_build_id(ctx: Context) -> bool:
    """criu restore compares ELF build-IDs unless told --file-validation filesize (files-reg.c:2180)."""
    return ctx.option_value("--file-validation") != "filesize"


# ------------------------------------------------------------------ pids


@check("pids are free", kind="host")
def pids_free(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    if not _restorable(dump) or _own_namespace(dump, "pid"):
        return
    for task in dump.tasks:
        for tid in task.threads:
            if Path(f"/proc/{tid}").exists():
                yield Finding(ERROR, "host-pid-taken", f"pid {tid} (task {task.comm}) is in use on this host: "
                              f"criu would fail with 'Can't fork for {tid}'",
                              f"stop process {tid}, or restore inside a new pid namespace", "pstree.img")


# ------------------------------------------------------------------ options the dump needs


@check("dump flags to repeat", kind="host")
def repeated_flags(ctx: Context) -> Iterator[Finding]:
    inv = ctx.dump.inventory
    if inv.tcp_close and not ctx.has_option("--tcp-close"):
        yield Finding(ERROR, "option-tcp-close", "dumped with --tcp-close: criu says 'Need to set the "
                      "--tcp-close options.'", "add --tcp-close", "inventory.img", option="--tcp-close")
    if inv.allow_uprobes and not ctx.has_option("--allow-uprobes"):
        yield Finding(ERROR, "option-allow-uprobes", "dumped with --allow-uprobes; restore needs it too",
                      "add --allow-uprobes", "inventory.img", option="--allow-uprobes")
    plugins = list(inv.plugins_entry.plugins) if inv.HasField("plugins_entry") else []
    for name in plugins:
        yield Finding(WARNING, "option-plugin", f"the dump needs criu plugin {name!r}",
                      "install the plugin where criu looks for plugins (--libdir)", "inventory.img")


@check("sockets", kind="host")
def sockets(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    if not _restorable(dump):
        return
    entries = dump.entries("files")
    established = [e.isk for e in entries if e.HasField("isk") and e.isk.proto == 6 and e.isk.dst_port]
    # the option they need is an image check, offline too: checks/docker.py connected_tcp
    yield from _ping_sockets(ctx)
    yield from _tcp_unsent(ctx, established)
    yield from _external_unix(ctx)
    yield from _unix_bind_paths(ctx)


USK_TCP_ESTABLISHED, USK_TCP_LISTEN = 1, 10


def _userns_root(dump: Dump) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]], int, int] | None:
    """(uid map, gid map, host uid, host gid of the namespace's root) when the dump has its own user namespace."""
    root = dump.root_task
    if root is None or dump.image(f"ids-{root.pid}") is None or not root.ids.HasField("user_ns_id"):
        return None
    inv = dump.inventory
    if inv.HasField("root_ids") and inv.root_ids.user_ns_id == root.ids.user_ns_id:
        return None
    found = dump.entries(f"userns-{root.ids.user_ns_id}")
    if not found:
        return None
    uids = [(e.first, e.lower_first, e.count) for e in found[0].uid_map]
    gids = [(e.first, e.lower_first, e.count) for e in found[0].gid_map]
    uid = next((low for first, low, _ in uids if first == 0), None)
    gid = next((low for first, low, _ in gids if first == 0), None)
    return None if uid is None or gid is None else (uids, gids, uid, gid)


def _unlink_denied(path: Path, userns: tuple) -> str | None:
    """Why the root of the dumped user namespace may not unlink ``path`` (None: it may)."""
    uids, gids, uid, gid = userns

    def mapped(value: int, ranges: list[tuple[int, int, int]]) -> bool:
        return any(low <= value < low + count for _, low, count in ranges)

    try:
        parent, st = path.parent.stat(), path.lstat()
    except OSError:
        return None
    privileged = mapped(parent.st_uid, uids) and mapped(parent.st_gid, gids)   # capable_wrt_inode_uidgid
    if not privileged:
        bits = (parent.st_mode >> 6 if parent.st_uid == uid else parent.st_mode >> 3 if parent.st_gid == gid
                else parent.st_mode) & 0o7
        if bits & 0o3 != 0o3:
            return f"{path.parent} (mode {parent.st_mode & 0o7777:o}, owner {parent.st_uid}) is not writable by " \
                   f"the namespace's root, host uid {uid}"
    if parent.st_mode & stat.S_ISVTX and uid not in (st.st_uid, parent.st_uid) \
            and not (mapped(st.st_uid, uids) and mapped(st.st_gid, gids)):
        return f"{path.parent} is sticky and {path.name} belongs to uid {st.st_uid}"
    return None


def _unix_bind_paths(ctx: Context) -> Iterator[Finding]:
    """A unix socket criu binds to a path again (all but connected stream sockets, sk-unix.c bind_unix_sk).

    criu first removes a stale socket file there (unlink_sk), never another kind of file, and as the restored
    root task: in a dumped user namespace with that namespace's root's rights. Whatever stays makes bind() fail
    'Address already in use'.
    """
    dump = ctx.dump
    if not _restorable(dump):
        return
    tree = MountTree(dump, ctx.criu_options)
    root = _restore_root(ctx) if tree.present else _host_root(ctx)
    if root is None:
        return
    userns = _userns_root(dump)
    for usk in unix_sockets(dump):
        raw = bytes(usk.name).rstrip(b"\0")
        if not raw or raw[:1] == b"\0" or usk.uflags & USK_EXTERN or usk.deleted:
            continue      # abstract, outside the dump, or deleted (bound aside the file there, bind_on_deleted)
        if usk.type != SOCK_DGRAM and usk.state == USK_TCP_ESTABLISHED:
            continue
        name = os.fsdecode(raw)
        if not name.startswith("/"):
            if not usk.HasField("name_dir") or not usk.name_dir.startswith("/"):
                continue
            name = f"{usk.name_dir.rstrip('/')}/{name}"
        where = tree.locate(name, usk.mnt_id if usk.HasField("mnt_id") else None, root)
        if where.host is None or not os.path.lexists(where.host):
            continue
        mode = where.host.lstat().st_mode
        why = None
        if not stat.S_ISSOCK(mode):
            why = "is not a socket file, which criu leaves alone"
        elif userns is not None:
            denied = _unlink_denied(where.host, userns)
            why = f"is a stale socket file criu cannot remove: {denied}" if denied else None
        if why:
            shown = "" if str(where.host) == name else f" (here {where.host})"
            yield Finding(ERROR, "host-unix-path-taken", f"unix socket ino {usk.ino} is bound to {name}{shown}, "
                          f"which {why}: criu would fail 'Can't bind ... Address already in use'",
                          f"remove {where.host} before restoring", "files.img")


TCP_STATES = {1: "ESTABLISHED", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK",
              11: "CLOSING"}


def _ip(words: list[int], family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address of an InetSkEntry (src_addr/dst_addr: 32-bit words in network byte order, as in memory)."""
    raw = b"".join(w.to_bytes(4, "little") for w in words)
    try:
        return ipaddress.ip_address(raw[:4] if family == socket.AF_INET else raw[:16])
    except ValueError:
        return None


def _proc_net_connections() -> set[tuple[str, int, str, int]] | None:
    """(local ip, port, remote ip, port) of every TCP socket of the current net namespace (None: unreadable)."""
    found = set()
    for name, size in (("tcp", 4), ("tcp6", 16)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            ends = []
            for end in fields[1:3]:
                addr, port = end.split(":")
                raw = b"".join(int(addr[i:i + 8], 16).to_bytes(4, "little") for i in range(0, len(addr), 8))
                ends += [str(ipaddress.ip_address(raw[:size])), int(port, 16)]
            found.add(tuple(ends))
    return found


def _locked(src: str, sport: int, dst: str, dport: int) -> bool | None:
    """Whether criu's dump-time DROP rule for the connection is in this net namespace (netfilter.c
    IPTABLES_CONN_CMD); None when iptables cannot be asked."""
    import shutil

    for tool in ("iptables", "ip6tables"):
        binary = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if binary is None:
            return None
        try:
            out = subprocess.run([binary, "-w", "-S"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        for line in out.splitlines():
            if "DROP" in line and f"--sport {sport}" in line and f"--dport {dport}" in line:
                return True
    return False


def _tcp_unsent(ctx: Context, connections: list[Message]) -> Iterator[Finding]:
    """Data a TCP socket had not sent yet: criu sends it with repair mode off (soccr.c, 'not-sent send' queue).

    Packets of a restored connection reach the network unless criu's dump-time DROP rules are still in place; a
    loopback peer that is gone answers with a reset, send() fails with EPIPE and so does the restore ('Can't
    restore not-sent send queue data'). A peer on another host still holds the connection: nothing to tell.
    """
    dump = ctx.dump
    if not connections or not ctx.has_option("--tcp-established") or dump.files_named("netns-"):
        return
    alive = None
    for isk in connections:
        stream = dump.entries(f"tcp-stream-{isk.ino:x}")
        if not stream or not stream[0].unsq_len:
            continue
        src, dst = _ip(list(isk.src_addr), isk.family), _ip(list(isk.dst_addr), isk.family)
        mapped = getattr(dst, "ipv4_mapped", None)
        if src is None or dst is None or not (dst.is_loopback or (mapped is not None and mapped.is_loopback)):
            continue
        if alive is None:
            alive = _proc_net_connections()
            if alive is None:
                return
        if (str(dst), isk.dst_port, str(src), isk.src_port) in alive or _peer_in_dump(connections, isk):
            continue
        locked = _locked(str(src), isk.src_port, str(dst), isk.dst_port)
        if locked:
            continue
        state = TCP_STATES.get(isk.state, f"state {isk.state}")
        text = (f"TCP {src}:{isk.src_port} -> {dst}:{isk.dst_port} ({state}) has {stream[0].unsq_len} unsent "
                f"bytes, its loopback peer is neither in the dump nor here")
        if locked is None:
            yield Finding(WARNING, "host-tcp-peer-gone", f"{text}, and iptables cannot tell whether criu's dump-time "
                          "DROP rules still hold its packets: if not, the restore fails 'Can't restore not-sent "
                          "send queue data'", "restore where the connection's peer still runs", "files.img")
        else:
            yield Finding(ERROR, "host-tcp-peer-gone", f"{text}, and no DROP rule of criu holds its packets: the "
                          "peer's reset makes criu fail 'Can't restore not-sent send queue data ... Broken pipe'",
                          "restore in the net namespace (and with the iptables rules) the dump left, with the "
                          "peer running", "files.img")
            return


def _peer_in_dump(connections: list[Message], isk: Message) -> bool:
    """Whether the other end of the connection is a socket of the dump too."""
    return any(o.src_port == isk.dst_port and o.dst_port == isk.src_port and list(o.src_addr) == list(isk.dst_addr)
               for o in connections)


IPPROTO_ICMP, IPPROTO_ICMPV6 = 1, 58


def _ping_range(dump: Dump, isk: Message) -> tuple[tuple[int, int], str]:
    """(net.ipv4.ping_group_range the socket is created under, where it comes from).

    criu restores a dumped net namespace's ping_group_range before the sockets (net.c, ipv4_sysctl, skipped when it
    is the default "1 0"); a socket of criu's own net namespace gets this host's current value.
    """
    ns_id = isk.ns_id if isk.HasField("ns_id") else None
    if ns_id is None and dump.root_task is not None and dump.image(f"ids-{dump.root_task.pid}") is not None:
        ns_id = dump.root_task.ids.net_ns_id
    netns = dump.entries(f"netns-{ns_id}") if ns_id is not None else []
    if netns:
        values = [e.sarg for e in netns[0].ipv4_sysctl if e.HasField("sarg")]
        text, where = (values[0] if values else "1 0"), "the dumped net namespace"
    else:
        try:
            text, where = Path("/proc/sys/net/ipv4/ping_group_range").read_text(), "this host"
        except OSError:
            return (0, 0xFFFFFFFF), "unknown"
    try:
        low, high = (int(x) for x in text.split()[:2])
    except ValueError:
        return (0, 0xFFFFFFFF), "unknown"
    return (low, high), where


def _ping_sockets(ctx: Context) -> Iterator[Finding]:
    """ICMP datagram ("ping") sockets: the kernel lets only groups in net.ipv4.ping_group_range create them
    (ping_init_sock, no capability overrides it): criu fails 'Can't create inet socket: Permission denied'."""
    dump = ctx.dump
    groups = {os.getegid(), *os.getgroups()}
    for entry in dump.entries("files"):
        isk = entry.isk if entry.HasField("isk") else None
        if isk is None or isk.type != SOCK_DGRAM or isk.proto not in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            continue
        (low, high), where = _ping_range(dump, isk)
        if not any(low <= g <= high for g in groups):
            yield Finding(ERROR, "host-ping-group", f"ICMP datagram socket (ino {isk.ino}): net.ipv4.ping_group_range "
                          f"of {where} is {low} {high}, which excludes criu's groups {sorted(groups)}: criu says "
                          "'Can't create inet socket: Permission denied'", "widen it first: sysctl -w "
                          "net.ipv4.ping_group_range='0 2147483647'", "files.img")
            return


def _sun_name(usk: Message) -> str:
    """A unix socket name for messages: the path, or @name for an abstract one."""
    raw = bytes(usk.name)
    if raw[:1] == b"\0":
        return "@" + raw[1:].decode("utf-8", "replace")
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def _external_unix(ctx: Context) -> Iterator[Finding]:
    """Sockets connected to a peer outside the dump (USK_EXTERN entries), as criu 4.2.1 restores them.

    Every datagram socket gets a fake queuer, whose branch connects it by the peer's name without looking at
    --ext-unix-sk (sk-unix.c:1869, add_fake_unix_queuers); only other types reach 'External socket found in
    image' (sk-unix.c:1911). Either way connect() needs the peer bound again ('Can't connect', :1406).
    """
    sockets = unix_sockets(ctx.dump)
    external = {u.ino: u for u in sockets if u.uflags & USK_EXTERN}
    for usk in (u for u in sockets if u.peer in external and u.ino not in external):
        peer = external[usk.peer]
        name = _sun_name(peer) or f"ino {peer.ino}"
        if usk.type != SOCK_DGRAM and not ctx.has_option("--ext-unix-sk"):
            yield Finding(ERROR, "option-ext-unix-sk", f"unix socket ino {usk.ino} is connected to {name} outside "
                          "the dump: criu says 'External socket found in image'", "add --ext-unix-sk and make sure "
                          "the peer is listening", "files.img", option="--ext-unix-sk")
        why = _unreachable(ctx, peer, usk.type)
        if why:
            yield Finding(ERROR, "host-unix-peer-missing", f"unix socket ino {usk.ino} was connected to {name}, "
                          f"which {why} here: criu would fail with 'Can't connect'", f"bind {name} again (start "
                          "the service that owns it) before restoring", "files.img")


def _unreachable(ctx: Context, peer: Message, sock_type: int) -> str | None:
    """Why connect() to the external peer would fail here (None: it would not, or cannot be told)."""
    raw = bytes(peer.name)
    if not raw or (raw[:1] != b"\0" and not raw.startswith(b"/")):
        return None
    address = raw if raw[:1] == b"\0" else os.fspath(ctx.root / os.fsdecode(raw.rstrip(b"\0")).lstrip("/"))
    if sock_type != SOCK_DGRAM:   # a stream connect() would reach the listener: only look at the path
        if isinstance(address, bytes) or Path(address).is_socket():
            return None
        return "is not a socket" if Path(address).exists() else "does not exist"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:   # sets a destination, sends nothing
        try:
            probe.connect(address)
        except FileNotFoundError:
            return "does not exist"
        except ConnectionRefusedError:
            return "has no socket bound to it"
        except OSError as exc:
            return f"cannot be connected to ({exc.strerror})"
    return None


@check("file locks", kind="host")
def file_locks(ctx: Context) -> Iterator[Finding]:
    """Without --file-locks criu restore skips filelocks.img (file-lock.c:699): it succeeds, locks are gone."""
    locks = ctx.dump.entries("filelocks")
    if locks and not ctx.has_option("--file-locks", "-l"):
        yield Finding(WARNING, "option-file-locks", f"the dump holds {len(locks)} file lock(s): without "
                      "--file-locks criu restores the process without them", "add --file-locks", "filelocks.img",
                      option="--file-locks")


@check("session and terminal", kind="host")
def shell_job(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    root = dump.root_task
    if not _restorable(dump) or root is None:
        return
    shell = ctx.has_option("--shell-job", "-j")
    yield from _ttys(ctx, shell)
    if shell:
        return
    conflict = _session_conflict(dump, os.getsid(0), os.getpgid(0))
    if conflict:
        yield Finding(ERROR, "option-shell-job", f"dumped as a shell job: {conflict}", "add --shell-job (and "
                      "restore from a terminal)", "pstree.img", option="--shell-job")
    elif root.sid not in {t.pid for t in dump.tasks}:
        yield Finding(INFO, "option-shell-job", f"dumped as a shell job (session leader {root.sid} is not in the "
                      "dump): without --shell-job criu restores it into the session criu runs in",
                      "add --shell-job to restore it as a job of the restoring shell", "pstree.img")


# tty drivers as criu 4.2.1 picks them by rdev (tty.c get_tty_driver); TTYAUX_MAJOR 5, TTY_MAJOR 4
PTM, PTS, CONSOLE, CTTY, VT, SERIAL, EXT = "ptmx", "pts", "console", "ctty", "vt", "serial", "ext"


def _tty_driver(ctx: Context, tie: Message) -> str | None:
    """The driver criu restores a tty-info entry with (None: 'Unable to find a tty driver')."""
    rdev, dev = tie.rdev, tie.dev
    key = f"tty[{rdev:x}:{dev:x}]"
    if any(key in opt for opt in ctx.criu_options):    # --external tty[..] or --inherit-fd fd[N]:tty[..]
        return EXT
    major, minor = os.major(rdev), os.minor(rdev)
    if major == 5:
        return {2: PTM, 1: CONSOLE, 0: CTTY}.get(minor)
    if major == 4:
        return VT if 1 <= minor <= 63 else None
    if major in (188, 204):
        return SERIAL
    if 128 <= major <= 135:
        return PTM
    return PTS if major == 136 else None


def _ttys(ctx: Context, shell: bool) -> Iterator[Finding]:
    """The terminals of the dump as criu 4.2.1 restores them (tty.c).

    Only a terminal inherited from outside the tree needs --shell-job: a pty slave whose master is not in the dump
    (tty_find_restoring_task -> 'No task found with sid', tty_verify_active_pairs -> 'Found slave peer index %d
    without correspond master peer'). A pty pair created inside the tree restores without it; a terminal's session
    must then be led by a dumped task (prepare_ctl_tty), --shell-job or not.
    """
    dump = ctx.dump
    infos = {tie.id: tie for tie in dump.entries("tty-info")}
    files = [e.tty for e in dump.entries("files") if e.HasField("tty")] + dump.entries("tty")
    if not files:
        return
    orphan = ctx.has_option("--orphan-pts-master")
    drivers = {i: _tty_driver(ctx, tie) for i, tie in infos.items()}
    for i, driver in drivers.items():
        if driver is None:
            tie = infos[i]
            yield Finding(ERROR, "tty-driver", f"tty {i:#x} (rdev {os.major(tie.rdev)}:{os.minor(tie.rdev)}): criu "
                          "says 'Unable to find a tty driver'", "", "tty-info.img")
            return

    def master(i: int) -> bool:
        d = drivers[i]
        return d in (PTM, CONSOLE, CTTY, EXT) or (d in (VT, SERIAL) and not shell)

    active = {i for i, tie in infos.items() if drivers[i] in (PTM, PTS) and tie.HasField("termios")}

    def paired(i: int) -> bool:
        return (i - 1 if master(i) else i + 1) in active

    used = [(f, infos.get(f.tty_info_id)) for f in files]
    missing = [f.tty_info_id for f, tie in used if tie is None]
    if missing:   # criu: 'Not all TTYs got its infos'
        yield Finding(ERROR, "image-tty-info-missing", f"tty-info.img has no entry {missing[0]:#x} for a terminal "
                      "file: criu says 'Not all TTYs got its infos'", "take a new dump", "tty-info.img")
        return
    pty_index = [tie.pty.index if drivers[tie.id] in (PTM, PTS) else None for _, tie in used]

    # tty_setup_slavery: the first terminal of each session (not a slave with its peer open) sets it up
    leader: dict[int, int] = {}
    for n, (_, tie) in enumerate(used):
        if not tie.sid or drivers[tie.id] == CTTY or tie.sid in leader:
            continue
        linked = pty_index[n] is not None and pty_index.count(pty_index[n]) > 1
        if not master(tie.id) and linked:
            continue
        leader[tie.sid] = n
    inherited = []
    for n, (_, tie) in enumerate(used):
        if not tie.HasField("termios") or drivers[tie.id] == CTTY:     # hung up, or /dev/tty itself
            continue
        if tie.sid:
            if not master(tie.id) and not paired(tie.id):
                if not orphan:
                    inherited.append(tie)
                    continue
            elif not master(tie.id):
                continue
            if leader.get(tie.sid) != n:
                continue
            first = next((t for t in dump.tasks if t.sid == tie.sid), None)
            if first is None or first.pid != first.sid:
                yield Finding(ERROR, "tty-session-missing", f"terminal {tie.id:#x} is the controlling terminal of "
                              f"session {tie.sid}, whose leader is not in the dump: criu says 'No task found with "
                              f"sid {tie.sid}'", "dump the whole session (from its leader)", "tty-info.img")
        elif not master(tie.id) and not paired(tie.id):
            inherited.append(tie)
    unpaired = sorted({i >> 1 for i in active if not i & 1 and i + 1 not in active})
    if len(unpaired) > 1:
        yield Finding(ERROR, "tty-external-peers", f"pty slaves {', '.join(map(str, unpaired))} have no master in "
                      "the dump: criu says 'Only one slave external peer is allowed'", "dump the process that "
                      "holds the terminal's master too", "tty-info.img")
    if shell:
        return
    if inherited or (unpaired and not orphan):
        tie = inherited[0] if inherited else None
        what = (f"terminal {tie.id:#x} (pty {tie.pty.index if tie.HasField('pty') else '?'})" if tie is not None
                else f"pty {unpaired[0]}")
        yield Finding(ERROR, "option-shell-job", f"{what} is inherited from outside the dump (its master peer is "
                      "not in it): criu needs --shell-job to give it the restoring terminal",
                      "add --shell-job (and restore from a terminal)", "tty-info.img", option="--shell-job")


def _session_conflict(dump: Dump, here_sid: int, here_pgid: int) -> str | None:
    """Why restoring without --shell-job from session here_sid, group here_pgid fails (None: it does not).

    criu lets the root task keep the restoring session (restore_sid skips it, cr-restore.c:1380); other tasks
    must inherit their sid (:1383). A process group led by no dumped task and not criu's own gets a helper
    task with that pid in the task's session (prepare_pstree_ids, pstree.c:816-846): its pid must be free and
    the session must be the restoring one.
    """
    root, pids = dump.root_task, {t.pid for t in dump.tasks}
    if root.sid in pids:
        return None
    stuck = [t.pid for t in dump.tasks if t is not root and t.sid == root.sid and here_sid != root.sid]
    if stuck:
        return f"task {stuck[0]} must keep session {root.sid}, but criu would restore it into session {here_sid}"
    for task in dump.tasks:
        if task.pgid in pids or task.pgid in (0, here_pgid):
            continue
        if here_sid != task.sid or task.pgid == task.sid:
            return (f"process group {task.pgid} of task {task.pid} is led by no dumped task, and criu cannot "
                    f"recreate it in session {task.sid} from session {here_sid}")
        if Path(f"/proc/{task.pgid}").exists():
            return f"process group {task.pgid} of task {task.pid} needs pid {task.pgid}, which is in use here"
    return None


# ------------------------------------------------------------------ machine


@check("architecture", kind="host")
def architecture(ctx: Context) -> Iterator[Finding]:
    dump, machine = ctx.dump, platform.machine()
    if not _restorable(dump) or dump.root_task is None:
        return
    if dump.image(f"core-{dump.root_task.pid}") is None:
        return   # "per-task images" reports it
    core = dump.root_task.core
    name = enum_name(core, "mtype")
    if machine not in ARCHES.get(name, (name.lower(),)):
        yield Finding(ERROR, "host-arch", f"dumped on {name}, this host is {machine}: 'Core march mismatch'",
                      "restore on a host of the same architecture", f"core-{dump.root_task.pid}.img")


@check("cpu", kind="host")
def cpu(ctx: Context) -> Iterator[Finding]:
    if ctx.dump.image("cpuinfo") is not None:
        cap = ctx.option_value("--cpu-cap")
        yield Finding(WARNING if cap != "none" else INFO, "host-cpu", "dumped with --cpu-cap: criu compares the "
                      "CPU features stored in cpuinfo.img with this CPU when --cpu-cap is given on restore",
                      "restore on the same CPU model, or use --cpu-cap=none", "cpuinfo.img")


@check("lsm", kind="host")
def lsm(ctx: Context) -> Iterator[Finding]:
    inv = ctx.dump.inventory
    kind = enum_name(inv, "lsmtype")
    if kind == "NO_LSM":
        return
    try:
        active = Path("/sys/kernel/security/lsm").read_text()
    except OSError:
        active = ""
    wanted = {"SELINUX": "selinux", "APPARMOR": "apparmor"}.get(kind, kind.lower())
    if wanted not in active:
        yield Finding(WARNING, "host-lsm", f"dumped under {kind}, which this host does not run",
                      "restore with --lsm-profile or on a host with the same LSM", "inventory.img")


@check("memory", kind="host")
def memory(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    if not _restorable(dump):
        return
    size = page_size(dump)
    need = sum(n for t in dump.tasks for _, n, f in pagemap_runs(dump, t.pid) if f & PE_PRESENT) * size
    try:
        meminfo = Path("/proc/meminfo").read_text()
        available = int(re.search(r"MemAvailable:\s+(\d+)", meminfo).group(1)) * 1024
    except (OSError, AttributeError):
        return
    if need > available:
        yield Finding(WARNING, "host-memory", f"the dump has {need >> 20} MiB of memory pages, the host has "
                      f"{available >> 20} MiB available", "free memory before restoring")


# ------------------------------------------------------------------ criu itself


def criu_version(criu: Path) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run([str(criu), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Version:\s*(\d+)\.(\d+)(?:\.(\d+))?", out)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def _uses_nr_pages(dump: Dump) -> bool:
    """Whether pagemaps keep counts only in CRIU 4.2's nr_pages (compat_nr_pages = 0)."""
    for name in dump.files_named("pagemap-")[:4]:
        image = dump.image(name.removesuffix(".img"))
        for index, entry in enumerate(image.entries() if image else []):
            if index and entry.message.HasField("nr_pages"):
                return entry.message.compat_nr_pages == 0
    return False


@check("criu", kind="host")
def criu(ctx: Context) -> Iterator[Finding]:
    if ctx.criu is None:
        yield Finding(WARNING, "host-criu-missing", "no criu binary found: the restore itself cannot run here",
                      "install CRIU >= 4.1 (scripts/get-criu.sh builds one) or pass --criu PATH")
        return
    version = criu_version(ctx.criu)
    if version is None:
        yield Finding(ERROR, "host-criu-broken", f"{ctx.criu} --version does not answer", "reinstall criu")
        return
    shown = ".".join(map(str, version))
    if version < (4, 2) and _uses_nr_pages(ctx.dump):
        yield Finding(ERROR, "host-criu-too-old", f"criu {shown} reads page counts from compat_nr_pages, which "
                      "CRIU >= 4.2 leaves 0: it would restore no memory", "use CRIU >= 4.2")
    if version < (4, 1):
        yield Finding(WARNING, "host-criu-old", f"criu {shown} is older than 4.1 (e.g. 3.17 fails on current "
                      "kernels' vDSO)", "use CRIU >= 4.1")
    if os.geteuid() != 0:
        yield Finding(WARNING, "host-not-root", "criu restore normally needs root", "run as root")


def find_criu(explicit: str | None = None) -> Path | None:
    """criu to use: --criu, $IMGTOOL_CRIU, scripts/get-criu.sh's cache, then PATH."""
    import shutil

    for candidate in (explicit, os.environ.get("IMGTOOL_CRIU")):
        if candidate:
            return Path(candidate)
    cache = Path(os.environ.get("IMGTOOL_CRIU_CACHE", Path.home() / ".cache" / "imgtool" / "criu"))
    built = sorted(cache.glob("*/criu"), reverse=True) if cache.is_dir() else []
    if built:
        return built[0]
    found = shutil.which("criu")
    return Path(found) if found else None


# ------------------------------------------------------------------ users, cgroups, kernel features


def _ids_in(path: Path) -> set[int]:
    """Numeric ids (third field) of an /etc/passwd or /etc/group file; empty when unreadable."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return set()
    return {int(f[2]) for f in (line.split(":") for line in lines) if len(f) > 2 and f[2].isdigit()}


@check("users and groups", kind="host")
def users_and_groups(ctx: Context) -> Iterator[Finding]:
    """criu restores numeric ids as they are; ids unknown to the target system are worth knowing."""
    dump = ctx.dump
    if not _restorable(dump):
        return
    users, groups = _ids_in(ctx.root / "etc/passwd"), _ids_in(ctx.root / "etc/group")
    if not users:
        return
    for task in dump.tasks:
        creds = task.creds
        if creds is None:
            continue
        unknown_users = sorted({creds.uid, creds.euid, creds.fsuid} - users)
        unknown_groups = sorted({creds.gid, creds.egid, creds.fsgid, *creds.groups} - groups) if groups else []
        if unknown_users or unknown_groups:
            shown = ", ".join([f"uid {u}" for u in unknown_users] + [f"gid {g}" for g in unknown_groups])
            yield Finding(INFO, "host-unknown-ids", f"task {task.pid} ({task.comm}) runs as {shown}, unknown to "
                          f"{ctx.root / 'etc'}", "nothing needed for criu; files it creates will show bare numbers",
                          f"core-{task.pid}.img")


@check("cgroups", kind="host")
def cgroups(ctx: Context) -> Iterator[Finding]:
    """cgroup paths of the dump that do not exist here: criu creates them, or fails in strict mode."""
    entries = ctx.dump.entries("cgroup")
    if not entries or not Path("/sys/fs/cgroup").is_dir():
        return
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    missing = set()
    for cg_set in entries[0].sets:
        for member in cg_set.ctls:
            base = Path("/sys/fs/cgroup") if unified else Path("/sys/fs/cgroup") / (member.name or "unified")
            if not (base / member.path.lstrip("/")).exists():
                missing.add(member.path)
    if missing:
        strict = ctx.option_value("--manage-cgroups") == "strict"
        shown = ", ".join(sorted(missing)[:3]) + (" ..." if len(missing) > 3 else "")
        yield Finding(ERROR if strict else INFO, "host-cgroup-missing", f"cgroup path(s) {shown} do not exist on "
                      "this host" + ("; --manage-cgroups=strict refuses that" if strict else "; criu creates them"),
                      "create them, or use --cgroup-root / another --manage-cgroups mode", "cgroup.img")


# Kernel features that an image needs, by the image that needs it (criu check --feature NAME).
FEATURES_BY_IMAGE = {"timens-": "timens"}


@check("kernel features", kind="host")
def kernel_features(ctx: Context) -> Iterator[Finding]:
    if ctx.criu is None or criu_version(ctx.criu) is None:
        return
    names = {p.name for p in ctx.dump.path.iterdir()}
    wanted = {feature for prefix, feature in FEATURES_BY_IMAGE.items() if any(n.startswith(prefix) for n in names)}
    for feature in sorted(wanted):
        try:
            done = subprocess.run([str(ctx.criu), "check", "--feature", feature], capture_output=True, text=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode != 0 and "Unknown feature" not in done.stderr:
            yield Finding(WARNING, "host-kernel-feature", f"this kernel lacks '{feature}', which the dump uses "
                          f"(criu check --feature {feature})", "restore on a kernel that has it")
