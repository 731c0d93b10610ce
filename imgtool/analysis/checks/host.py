"""Host checks: will this host, with these criu options, accept the dump?"""

from __future__ import annotations

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
from imgtool.analysis.checks.images import page_size, unix_sockets
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
    dump = ctx.dump
    if not _restorable(dump):
        return
    if _own_namespace(dump, "mnt") and ctx.root == Path("/") and not ctx.has_option("--root"):
        yield Finding(INFO, "host-files-skipped", "the dump has its own mount namespace: its files are "
                      "checked only against --root ROOTFS", "pass the container's rootfs with --root")
        return
    remapped = {r.orig_id for r in dump.entries("remap-fpath")}
    for file_id, why in sorted(_referenced_files(dump).items()):
        if file_id not in remapped:
            yield from _check_file(ctx, dump.file_table.payload("REG", file_id), why)


def _check_file(ctx: Context, reg, why: str) -> Iterator[Finding]:
    path = ctx.root / reg.name.lstrip("/")
    where = f"{reg.name} ({why})"
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
    if established and not ctx.has_option("--tcp-established", "--tcp-close"):
        yield Finding(ERROR, "option-tcp-established", f"{len(established)} connected TCP socket(s) in the dump: "
                      "criu says 'Connected TCP socket in image'", "add --tcp-established (or --tcp-close)",
                      "files.img", option="--tcp-established")
    yield from _external_unix(ctx)


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
    if not _restorable(dump) or root is None or ctx.has_option("--shell-job", "-j"):
        return
    has_tty = bool(dump.entries("tty-info")) or any(e.HasField("tty") for e in dump.entries("files"))
    conflict = "it uses a terminal" if has_tty else _session_conflict(dump, os.getsid(0), os.getpgid(0))
    if conflict:
        yield Finding(ERROR, "option-shell-job", f"dumped as a shell job: {conflict}", "add --shell-job (and "
                      "restore from a terminal)", "pstree.img", option="--shell-job")
    elif root.sid not in {t.pid for t in dump.tasks}:
        yield Finding(INFO, "option-shell-job", f"dumped as a shell job (session leader {root.sid} is not in the "
                      "dump): without --shell-job criu restores it into the session criu runs in",
                      "add --shell-job to restore it as a job of the restoring shell", "pstree.img")


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


@check("external mounts", kind="host")
def external_mounts(ctx: Context) -> Iterator[Finding]:
    if ctx.has_option("--ext-mount-map", "--external"):
        return
    for name in ctx.dump.files_named("mountpoints-"):
        external = [m for m in ctx.dump.entries(name.removesuffix(".img")) if m.ext_key]
        if external:
            shown = ", ".join(f"{m.mountpoint} ({m.ext_key})" for m in external[:3])
            more = f" and {len(external) - 3} more" if len(external) > 3 else ""
            yield Finding(ERROR, "option-ext-mount", f"{len(external)} external mount(s): {shown}{more}; criu says "
                          "'No mapping for ... mountpoint'", "add --ext-mount-map KEY:HOST-PATH for each "
                          "(container engines pass these themselves: restore through them)", name)


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
