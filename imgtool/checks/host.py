"""Host checks: will this host, with these criu options, accept the dump?"""

from __future__ import annotations

import os
import platform
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ..dump import Dump
from ..elfid import as_words, build_id
from ..explore import VMA_FILE_PRIVATE, VMA_FILE_SHARED, VMA_MEMFD, pagemap_runs
from ..pagemap import PE_PRESENT
from . import ERROR, INFO, WARNING, Context, Finding, check
from .images import page_size

ARCHES = {"X86_64": ("x86_64",), "AARCH64": ("aarch64", "arm64"), "ARM": ("armv7l", "armv6l"),
          "PPC64": ("ppc64le",), "S390": ("s390x",), "MIPS": ("mips64",), "LOONGARCH64": ("loongarch64",),
          "RISCV64": ("riscv64",)}
O_ACCMODE, O_WRONLY, O_APPEND = 3, 1, 0o2000
USK_EXTERN = 1


def _restorable(dump: Dump) -> bool:
    return dump.image("pstree") is not None


def _own_namespace(dump: Dump, kind: str) -> bool:
    """Whether the dumped tasks live in their own namespace of ``kind`` (pid, mnt, net...)."""
    root = dump.root_task
    inv = dump.inventory
    field = f"{kind}_ns_id"
    if root is None or not inv.HasField("root_ids") or not root.ids.HasField(field):
        return False
    return getattr(root.ids, field) != getattr(inv.root_ids, field)


# ------------------------------------------------------------------ files


def _referenced_files(dump: Dump) -> dict[int, str]:
    """File ids criu opens by path on restore: fds, mapped files, exe, cwd and root."""
    table, ids = dump.file_table, {}
    for task in dump.tasks:
        for fd in task.fds:
            if fd.file.kind == "REG":
                ids[fd.file.id] = f"fd {fd.fd} of task {task.pid}"
        if task.mm is not None:
            ids.setdefault(task.mm.exe_file_id, f"executable of task {task.pid}")
            for vma in task.mm.vmas:
                if vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) and not vma.status & VMA_MEMFD:
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
    if reg.HasField("size") and reg.build_id and stat.S_ISREG(st.st_mode):
        found = build_id(path)
        if found is not None and as_words(found) != list(reg.build_id):
            yield Finding(ERROR, "host-file-build-id", f"{where} is a different build of the binary (build-ID "
                          "differs)", "install the exact binary the process ran, or restore on its host",
                          "files.img")
            return
    if reg.HasField("mode") and st.st_mode != reg.mode:
        skip = ctx.has_option("--skip-file-rwx-check")
        if skip and (st.st_mode & ~0o777) == (reg.mode & ~0o777):
            return
        yield Finding(ERROR, "host-file-mode", f"{where} has mode {st.st_mode:o}, the dump expects {reg.mode:o}",
                      f"chmod {reg.mode & 0o7777:o} {reg.name}" + ("" if skip else " or pass --skip-file-rwx-check"),
                      "files.img", option=None if skip else "--skip-file-rwx-check")


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
    external = [e.usk for e in entries if e.HasField("usk") and e.usk.uflags & USK_EXTERN]
    if external and not ctx.has_option("--ext-unix-sk"):
        names = ", ".join(u.name.decode("utf-8", "replace") or f"ino {u.ino}" for u in external)
        yield Finding(ERROR, "option-ext-unix-sk", f"connected to unix socket(s) outside the dump ({names})",
                      "add --ext-unix-sk and make sure the peer is listening", "files.img", option="--ext-unix-sk")


@check("file locks", kind="host")
def file_locks(ctx: Context) -> Iterator[Finding]:
    if ctx.dump.entries("filelocks") and not ctx.has_option("--file-locks", "-l"):
        yield Finding(ERROR, "option-file-locks", "the dump holds file locks; restoring them needs --file-locks",
                      "add --file-locks", "filelocks.img", option="--file-locks")


@check("session and terminal", kind="host")
def shell_job(ctx: Context) -> Iterator[Finding]:
    dump = ctx.dump
    if not _restorable(dump):
        return
    pids = {t.pid for t in dump.tasks}
    root = dump.root_task
    has_tty = bool(dump.entries("tty-info")) or any(e.HasField("tty") for e in dump.entries("files"))
    outside = root is not None and root.sid not in pids
    if (outside or has_tty) and not ctx.has_option("--shell-job", "-j"):
        why = f"its session leader {root.sid} is not in the dump" if outside else "it uses a terminal"
        yield Finding(ERROR, "option-shell-job", f"dumped as a shell job: {why}", "add --shell-job (and restore "
                      "from a terminal)", "pstree.img", option="--shell-job")


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
    core = dump.root_task.core
    name = core.DESCRIPTOR.fields_by_name["mtype"].enum_type.values_by_number[core.mtype].name
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
    kind = inv.DESCRIPTOR.fields_by_name["lsmtype"].enum_type.values_by_number[inv.lsmtype].name
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
