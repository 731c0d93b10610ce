"""Explain a CRIU log: find the first real error, name its cause and say what to do.

Reads the logs of ``criu dump``, ``pre-dump``, ``restore`` and ``check`` written with ``-v4 -o FILE``, and
CRIU's stderr (lines without timestamps). The file is read in blocks and only lines holding "Error", "Warn",
a marker or a context line (the CRIU version, a socket's inode) are looked at, with a cap on line length, so
its size and contents (binary junk included) do not matter.

Message texts below are CRIU 4.2.1's; each rule cites the ``pr_err`` it matches as ``file:line``. Line
numbers in a log come from the CRIU build that wrote it, so rules never depend on them.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

Verdict = Literal["ok", "failed", "unknown"]
Operation = Literal["dump", "restore", "pre-dump", "check"]

BLOCK_BYTES = 1 << 20  # read size
MAX_LOG_BYTES = 64 << 20  # read no more of a log than this (/dev/zero, a FIFO that never ends): the rest is ignored
MAX_LINE_BYTES = 64 * 1024  # the rest of a longer line is skipped (binary junk has no newlines)
MAX_TEXT_CHARS = 500  # how much of a log line an Explanation quotes
MAX_KEPT_ERRORS = 200  # errors after these cannot change the first one
MAX_KEPT_WARNINGS = 10

# One CRIU message: "(00.012345) 1234: Error (criu/x.c:12): text". The timestamp, the "pie: " prefix of
# parasite/restorer messages and the pid prefix of restore's child processes are all optional.
_ENTRY = re.compile(r"^\s*(?:\(\s*\d+\.\d+\)\s*)?(?:pie:\s*)?(?:(?P<pid>\d+):\s+)?"
                    r"(?P<level>Error|Warn)\s+\((?P<source>[^()\s]+:\d+)\):\s?(?P<message>.*?)\s*$")

# Non-error lines that tell which command wrote the log, how it ended, or what the kernel lacks.
# Values: (operation, verdict, context flag).
_MARKERS: dict[bytes, tuple[Operation | None, Verdict | None, str | None]] = {
    b"Pre-dumping finished successfully": ("pre-dump", "ok", None),  # cr-dump.c:1772
    b"Pre-dumping FAILED.": ("pre-dump", "failed", None),  # cr-dump.c:1769
    b"Pre-dumping task (pid:": ("pre-dump", None, None),  # cr-dump.c:1334
    b"Enforcing memory tracking for pre-dump": ("pre-dump", None, None),  # cr-dump.c:1794
    b"Dumping processes (pid:": ("dump", None, None),  # cr-dump.c:1994
    b"Dumping finished successfully": ("dump", "ok", None),  # cr-dump.c:1978
    b"Dumping FAILED.": ("dump", "failed", None),  # cr-dump.c:1975
    b"Reading image tree": ("restore", None, None),  # pstree.c:652
    b"Restore finished successfully": ("restore", "ok", None),  # cr-restore.c:2287
    b"Restoring FAILED.": ("restore", "failed", None),  # cr-restore.c:2331
    b"fdinfo works OK": ("check", None, None),  # cr-check.c:314,397,439
    b"Dirty tracking support is OFF": (None, None, "no-dirty-track"),  # kerndat.c:469
    b"No pstree.img image": ("restore", None, "no-pstree"),  # image.c do_open_image: pr_info("No %s image")
    b"`- returned 0": ("restore", None, "pages-eof"),  # pie/restorer.c: pr_debug("`- returned %ld") after preadv
}
_MARKER_RE = re.compile(b"|".join(re.escape(m) for m in sorted(_MARKERS, key=len, reverse=True)))

# Non-error lines whose values the rules' texts use (the last one before an error counts): needle -> pattern.
_CONTEXT: dict[bytes, re.Pattern[str]] = {
    # log.c:161  pr_info("Version: %s (gitid %s)"), the second line of every -v4 log
    b"Version: ": re.compile(r"^\s*(?:\(\s*\d+\.\d+\)\s*)?Version: (?P<criu_version>\d+\.\d+(?:\.\d+)*)"),
    # sk-unix.c:131 show_one_unix() before sk-unix.c:874,881: the outside peer; peer_ino is the dumped socket
    b"Runaway socket: ": re.compile(r"Runaway socket: ino (?P<unix_peer>\d+) peer_ino (?P<unix_ino>\d+) "
                                    r"family\s+\d+ type\s+(?P<unix_type>\d+)"),
    b"Ext stream not supported: ": re.compile(r"Ext stream not supported: ino (?P<unix_peer>\d+) "
                                              r"peer_ino (?P<unix_ino>\d+) family\s+\d+ type\s+(?P<unix_type>\d+)"),
}
NEW_PAGEMAP_VERSION = (4, 2)  # CRIU 4.2 writes pagemap entries with nr_pages (compat_nr_pages 0): page-xfer.c:326

# What container engines and runtimes print when criu fails under them (docker's, containerd's, podman's and runc's
# own stderr), e.g. Docker 20.10 with containerd and runc 1.1:
#   Error response from daemon: Cannot checkpoint container C: runc did not terminate successfully: exit status 1:
#       criu failed: type NOTIFY errno 0 path= /run/.../moby/<id>/criu-dump.log: unknown
#   Error response from daemon: OCI runtime restore failed: criu failed: type NOTIFY errno 0
#   log file: /run/.../moby/<id>/work/restore.log: unknown
#   Error response from daemon: OCI runtime restore failed: bad file descriptor: unknown
# runc's libcontainer writes "criu failed: type %s errno %d\nlog file: %s"; containerd adds "path= LOG" and ": unknown".
_WRAPPER_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?P<docker>Error response from daemon): (?P<daemon_message>.*?)\s*$"),
    re.compile(r"Cannot (?P<wrapped_op>checkpoint|restore) container:? (?P<container>[^\s:]+)"),
    re.compile(r"OCI runtime (?P<oci_op>restore|checkpoint|create|start|exec) failed: (?P<runtime_message>.*?)"
               r"(?:: unknown)?\s*$"),
    re.compile(r"(?P<runc>runc) did not terminate successfully: exit status (?P<exit_status>\d+)"),
    re.compile(r"criu failed: type (?P<criu_type>\w+) errno (?P<criu_errno>\d+)"),
    re.compile(r"(?:path=|log file:)\s*(?P<criu_log>/\S+?\.log)\b"),
    re.compile(r"^(?P<ctr>ctr): "),
)
_WRAPPER_NEEDLES = (b"Error response from daemon", b"Cannot checkpoint container", b"Cannot restore container",
                    b"OCI runtime", b"did not terminate successfully", b"criu failed: type", b"log file: ", b"path= ",
                    b"ctr: ")

# A line matters only if it holds one of these; bytes.find skips everything else fast.
_NEEDLES = (b"Error", b"Warn", *_MARKERS, *_CONTEXT, *_WRAPPER_NEEDLES)

# Which command a CRIU source file belongs to, when no marker line says so.
_SOURCE_OPERATIONS: dict[str, Operation] = {"criu/cr-dump.c": "dump", "criu/cr-restore.c": "restore",
                                            "criu/cr-check.c": "check"}
_OPERATION_PRIORITY: tuple[Operation, ...] = ("pre-dump", "dump", "restore", "check")

# Errors every run on such a machine prints and that change nothing.
_NOISE_ERRORS = (
    re.compile(r"rlimit: Can't setup RLIMIT_NOFILE for self"),  # util.c:1534, no CAP_SYS_RESOURCE
    re.compile(r"No parent image found, though parent directory is set"),  # page-xfer.c:410, continues
)
_NOISE_WARNINGS = (
    re.compile(r"Will restore \d+ with interrupted system call"),  # compel/arch/x86/src/lib/infect.c:419
    re.compile(r"Set CLONE_PARENT \| CLONE_NEWPID but it might cause restore problem"),  # cr-restore.c:1050
    re.compile(r"^Unable to wait \d+: No child processes"),  # cr-restore.c:2318, after a restore already failed
)
# Errors that only report that an earlier step failed: never the root cause when another error exists.
_CASCADE_ERRORS = (
    re.compile(r"^(?:Dumping|Pre-dumping|Restoring) FAILED\."),  # cr-dump.c:1769,1975; cr-restore.c:2331
    re.compile(r"^\d+ killed by signal \d+"),  # cr-restore.c:1269
    re.compile(r"^Can't dump page with parasite"),  # mem.c:718
    re.compile(r"^(?:Collect|Dump) [\w ]+\(pid: \d+\) failed with"),  # cr-dump.c:1356..1627
    re.compile(r"^Dump \d+ \w+ failed"),  # cr-dump.c:1468,1474
    re.compile(r"^Pre-dumping files failed"),  # cr-dump.c:1381
)


@dataclass(frozen=True)
class Rule:
    """A known error message: what it means and what to do about it."""

    code: str
    patterns: tuple[re.Pattern[str], ...]
    summary: str  # str.format templates over the patterns' named groups
    fix: str
    operation: Operation | None = None  # the command that prints it, if only one does
    requires: str | None = None  # a context flag the log must have set (see _MARKERS, _Scan.note_context)
    # more template values, made from the captured ones and the _CONTEXT values (e.g. an option's argument)
    derive: Callable[[dict[str, str]], dict[str, str]] | None = None


def _rule(code: str, patterns: Iterable[str], summary: str, fix: str, *, operation: Operation | None = None,
          requires: str | None = None, derive: Callable[[dict[str, str]], dict[str, str]] | None = None) -> Rule:
    return Rule(code, tuple(re.compile(p) for p in patterns), summary, fix, operation, requires, derive)


_NULL = "(null)"  # what CRIU prints for a NULL string, e.g. a mountpoint not yet known on restore


def _ghost_limit(values: dict[str, str]) -> dict[str, str]:
    """The smallest --ghost-limit argument (K or M suffix) that lets a ghost file of ``size`` bytes through."""
    size = int(values["size"])  # files-reg.c:1030 fails when st_blocks * 512 > ghost_limit
    mib, kib = 1 << 20, 1 << 10
    limit = f"{-(-size // mib)}M" if size >= mib else f"{max(1, -(-size // kib))}K"
    return {"ghost_limit": limit}


def _mount_values(values: dict[str, str]) -> dict[str, str]:
    """How to name a mount in the texts: CRIU prints mountpoints as "./dev/console", but --external wants
    "mnt[/dev/console]" (mount.c looks up "mnt[" + mountpoint + 1 + "]"), and on restore it prints "(null)"."""
    mnt_id, printed = values.get("mnt_id"), values.get("mountpoint", _NULL)
    known = printed != _NULL
    mountpoint = ("/" + printed.removeprefix(".").lstrip("/")) if known else "MOUNTPOINT"
    if known:
        mount = f"Mount {mnt_id} at {mountpoint}" if mnt_id else f"The mount at {mountpoint}"
    else:
        mount = f"Mount {mnt_id}" if mnt_id else "A mount"
        mount += " (CRIU prints its mountpoint as (null): it is not known yet at this point of a restore)"
    if mountpoint == "/dev/console":
        hint = ("Containers: Docker and runc bind-mount the container's pty from the host onto /dev/console when "
                "the container has a terminal (docker run -t, \"terminal\": true); runc passes its bind mounts to "
                "CRIU as external itself (docker checkpoint create, runc checkpoint), so a manual criu dump of a "
                "process in such a container must mark /dev/console external as above.")
    else:
        hint = ("Containers: the runtime bind-mounts files and volumes from the host (/etc/hosts, "
                "/etc/resolv.conf, ...) and marks them external itself when it checkpoints (docker checkpoint "
                "create, podman container checkpoint, runc checkpoint); a manual criu dump must mark them as above.")
    return {"mount": mount, "ext_mountpoint": mountpoint, "container_hint": hint}


def _unix_values(values: dict[str, str]) -> dict[str, str]:
    """The dumped socket's inode (from the show_one_unix() line before the error) and the advice its type calls
    for: --ext-unix-sk handles datagram peers only."""
    ino = values.get("unix_ino", "INO")
    stream = (f"mark the process's own socket external: dump with --external 'unix[{ino}]' and restore with "
              f"--inherit-fd 'fd[N]:socket:[{ino}]', N an fd of criu open on a connected socket that takes its place "
              f"({ino} is the inode of the process's socket, /proc/PID/fd/N -> socket:[{ino}]), or dump a tree that "
              f"holds both ends (-t of a common ancestor)")
    sock_type = values.get("unix_type")
    if sock_type == "2":  # SOCK_DGRAM
        advice = "Pass --ext-unix-sk on dump and on restore (where the peer must exist again)."
    elif sock_type is not None:
        advice = (f"The peer is a stream (type {sock_type}) socket, which --ext-unix-sk does not cover (it ends in "
                  f"\"Can't dump half of stream unix connection\"): {stream}.")
    else:
        advice = (f"For a datagram peer pass --ext-unix-sk on dump and on restore (where the peer must exist again); "
                  f"for a stream peer {stream}.")
    peer_name = values.get("peer_name", _NULL)
    return {"unix_ino": ino, "unix_advice": advice, "unix_stream_advice": stream,
            "peer": f"its peer ({peer_name})" if peer_name != _NULL else "its peer (a socket without a name)"}


# Most specific first: the first rule whose pattern matches the error explains it.
RULES: tuple[Rule, ...] = (
    # files-reg.c:2175  "File %s has bad size %lu (expect %lu)"
    _rule("file-bad-size", [r"File (?P<path>.+) has bad size (?P<size>\d+) \(expect (?P<expected>\d+)\)"],
          "{path} is {size} bytes now but was {expected} bytes at dump time: the file changed after the "
          "checkpoint.",
          "Restore against the same files as at dump time (put back that version of {path}, e.g. from the same "
          "rootfs snapshot). CRIU has no option to skip the size check.", operation="restore"),
    # files-reg.c:2146  "File %s has bad build-ID length %d (expect %d)"
    # files-reg.c:2153  "File %s has bad build-ID"
    _rule("file-bad-build-id", [r"File (?P<path>.+) has bad build-ID length (?P<length>\d+) \(expect \d+\)",
                                r"File (?P<path>.+) has bad build-ID$"],
          "The ELF build-ID of {path} differs from the one recorded at dump time: the binary or library was "
          "replaced (rebuilt or upgraded) after the checkpoint.",
          "Restore with the same binaries as at dump time (same packages or container image). If the new file is "
          "known to be compatible, --file-validation filesize makes CRIU compare sizes only.", operation="restore"),
    # files-reg.c:2294  "File %s has bad mode 0%o (expect 0%o)\nFile r/w/x checks can be skipped with the ..."
    _rule("file-bad-mode", [r"File (?P<path>.+) has bad mode (?P<mode>0[0-7]+) \(expect (?P<expected>0[0-7]+)\)"],
          "{path} has mode {mode} now but had {expected} at dump time.",
          "Put the dump-time permissions back on {path} (chmod), or restore with --skip-file-rwx-check to skip the "
          "r/w/x comparison.", operation="restore"),
    # files-reg.c:2353  "Can't open file %s on restore: %s"; files-reg.c:2267  "Can't open file %s: %s"
    _rule("file-missing", [r"Can't open file (?P<path>.+?)(?: on restore)?: No such file or directory"],
          "{path} does not exist here, but the checkpointed process had it open or mapped. Files deleted before "
          "the dump travel in the images as ghost files, so this one disappeared after the dump.",
          "Make {path} exist at the same path before restoring (same rootfs or bind mounts; with --root it is "
          "looked up under that root), then restore again.", operation="restore"),
    # cr-restore.c:1237  "Can't fork for %d: %s" (EEXIST from clone3 with set_tid)
    # cr-restore.c:1546  "Pid %d do not match expected %d"
    _rule("pid-in-use", [r"Can't fork for (?P<pid>\d+): File exists",
                         r"Pid (?P<got>\d+) do not match expected (?P<pid>\d+)"],
          "PID {pid} is already used by another process on this host, and CRIU must give the restored task "
          "its old PID.",
          "Free PID {pid} (find its owner with `ps -p {pid}` and stop it), or restore in a new pid namespace: dump "
          "the tree as a whole pid namespace (a container), whose PIDs cannot clash with the host's.",
          operation="restore"),
    # sk-inet.c:912  "Connected TCP socket in image"
    # sk-inet.c:200  "Connected TCP socket, consider using --%s option." (%s = tcp-established)
    _rule("tcp-established", [r"Connected TCP socket in image",
                              r"Connected TCP socket, consider using --tcp-established"],
          "The process has an established TCP connection, which CRIU only checkpoints or restores when told to.",
          "Pass --tcp-established to both criu dump and criu restore, or --tcp-close to give the connections up "
          "and restore them closed. Docker/runc: docker checkpoint create has no such flag; runc reads more CRIU "
          "options from the CRIU configuration file /etc/criu/runc.conf (one option per line, without the dashes: "
          "tcp-established), or from the file named by the container annotation org.criu.config."),
    # sk-unix.c:881  "Can't dump half of stream unix connection. name: %s; peer name: %s" (with --ext-unix-sk)
    _rule("unix-half-stream", [r"Can't dump half of stream unix connection\. name: (?P<name>.*); "
                               r"peer name: (?P<peer_name>.*)$"],
          "A stream unix socket of the process (inode {unix_ino}) is connected to {peer}, which is outside the "
          "dumped process tree; --ext-unix-sk only covers datagram peers.",
          "Either {unix_stream_advice}.", operation="dump", derive=_unix_values),
    # sk-unix.c:1912  "External socket found in image. Consider using the --ext-unix-sk option to allow restoring it."
    # sk-unix.c:874  "External socket is used. Consider using --ext-unix-sk option."
    _rule("ext-unix-sk", [r"External socket (?:found in image|is used)\. Consider using (?:the )?--ext-unix-sk"],
          "A unix socket of the process is connected to a peer outside the dumped process tree.",
          "{unix_advice}", derive=_unix_values),
    # files-reg.c:1031  "Can't dump ghost file %s of %lu size, increase limit"
    _rule("ghost-limit", [r"Can't dump ghost file (?P<path>.+) of (?P<size>\d+) size, increase limit"],
          "The process has a deleted file open ({path}), whose contents CRIU must copy into the images as a "
          "ghost file, and its {size} bytes exceed the ghost file size limit (1M unless --ghost-limit is given).",
          "Dump with --ghost-limit {ghost_limit} or more (SIZE at least the {size} bytes the message names; it "
          "takes a K, M or G suffix). Nothing is needed on restore: the contents travel in ghost-file-N.img. "
          "--link-remap does not help (a file with no links left is always a ghost). Or close the deleted file "
          "before the dump.", operation="dump", derive=_ghost_limit),
    # namespaces.c:460  "Can't dump nested %s namespace for %d"
    _rule("nested-pidns", [r"Can't dump nested pid namespace for (?P<pid>\d+)"],
          "Task {pid} (its host PID) is in a pid namespace nested below the dumped root's: CRIU dumps one pid "
          "namespace only, the root task's.",
          "No option allows it. Dump the nested namespace as a tree of its own, `criu dump -t <host PID of its "
          "init>` (that init must be a session leader inside its namespace), or checkpoint a tree without nested "
          "pid namespaces (no `unshare --pid` or container runtime inside it).", operation="dump"),
    _rule("nested-namespace", [r"Can't dump nested (?P<ns>\w+) namespace for (?P<pid>\d+)"],
          "Task {pid} is in a {ns} namespace of its own below the dumped root's: CRIU dumps one {ns} namespace "
          "only, the root task's (nested mount and net namespaces are the exceptions).",
          "No option allows it. Dump that task's subtree separately (`criu dump -t` its top task), or keep the "
          "whole tree in the root task's {ns} namespace.", operation="dump"),
    # files-ext.c:94  "Can't dump file %d of that type [%o] (%s %s)"
    _rule("unsupported-fd", [r"Can't dump file (?P<fd>\d+) of that type \[(?P<mode>[0-7]+)\] "
                             r"\((?P<kind>\S*) ?(?P<what>.*)\)$"],
          "fd {fd} of the process is a kind of file CRIU cannot checkpoint ({kind} {what}): CRIU has no driver "
          "for it (the same message covers every anon inode it does not know, e.g. perf_event, io_uring, "
          "userfaultfd, and bpf maps in a CRIU built without libbpf).",
          "No option helps: close fd {fd} before the dump (stop the profiler or tracer that opened it). "
          "--external file[...] is for regular files only; the one hook is a CRIU plugin implementing "
          "DUMP_EXT_FILE/RESTORE_EXT_FILE.", operation="dump"),
    # pidfd.c:97  "pidfd pid %d is not a part of process tree.."
    _rule("pidfd-outside", [r"pidfd pid (?P<pid>\d+) is not a part of process tree"],
          "The process holds a pidfd of process {pid}, which is not in the dumped tree, so it could not be "
          "recreated on restore.",
          "No option allows it: dump a tree that contains process {pid} (-t of a common ancestor), or close the "
          "pidfd before the dump (pidfds of processes that have exited are fine).", operation="dump"),
    # file-lock.c:110,362  "Some file locks are hold by dumping tasks! You can try --file-locks to dump them."
    _rule("file-locks", [r"Some file locks are hold by dumping tasks!"],
          "The process holds file locks (flock, POSIX locks or leases); CRIU does not dump them unless asked.",
          "Dump with --file-locks, and restore with --file-locks too.", operation="dump"),
    # mount.c:753  "%d:%s doesn't have a proper root mount" (older CRIU: "%s doesn't have a proper root mount")
    _rule("mount-no-root", [r"(?:(?P<mnt_id>\d+):)?(?P<mountpoint>[^\s:]\S*) doesn't have a proper root mount"],
          "{mount} is a bind mount whose source is not visible in the dumped mount namespace (a file or "
          "directory bind-mounted from outside it), so CRIU cannot recreate it.",
          "Mark it external. Dump: --external 'mnt[{ext_mountpoint}]:KEY' (the mountpoint without the leading "
          "'.' of the message; this works for mounts of the root task's mount namespace). Restore: --root ROOTFS "
          "--external 'mnt[KEY]:HOST_PATH' (same as --ext-mount-map KEY:HOST_PATH), HOST_PATH the file or "
          "directory to bind onto {ext_mountpoint}. Or --ext-mount-map auto on both dump and restore: the dump "
          "records the source path, and restore binds that same host path again (it must still exist). "
          "{container_hint}", derive=_mount_values),
    # mount.c:48  BUG_ON(!mi->plain_mountpoint) in service_mountpoint(), printed by include/common/bug.h:24
    _rule("mount-root-needed", [r"BUG at criu/mount\.c:(?P<bug_line>\d+)"],
          "CRIU crashed while rebuilding the mount namespace (BUG at criu/mount.c:{bug_line}). It does so when "
          "the dumped tree had its own mount namespace rooted in a directory (pivot_root into a rootfs) and the "
          "restore was not told where that root is.",
          "Restore with --root PATH naming the rootfs the tree ran in (the corpus ns scenario fails like this "
          "without --root and succeeds with it); map mounts from outside the tree with --external mnt[KEY]:PATH.",
          operation="restore"),
    # mount.c:3120  "Mount %d:%s is autodetected external mount. Try \"--ext-mount-map auto\" to allow them."
    _rule("ext-mount-auto", [r"Mount (?P<mnt_id>\d+):(?P<mountpoint>\S+) is autodetected external mount"],
          "{mount} came from outside the dumped tree; the dump (made with --ext-mount-map auto) recorded it as an "
          "external mount with the host path it was bound from.",
          "Restore with --ext-mount-map auto (same as --external 'mnt[]') so CRIU bind-mounts it from the same "
          "host path again; that path must exist on this host (a pty under /dev/pts is gone once its terminal "
          "closes).", operation="restore", derive=_mount_values),
    # mount.c:3141  "No mapping for %d:%s mountpoint"
    _rule("ext-mount-map", [r"No mapping for (?P<mnt_id>\d+):(?P<mountpoint>\S+) mountpoint"],
          "{mount} was dumped as external, and this restore does not say where it comes from.",
          "Give restore the key used at dump: --external 'mnt[KEY]:HOST_PATH' (same as --ext-mount-map "
          "KEY:HOST_PATH), where the dump had --external 'mnt[{ext_mountpoint}]:KEY' (mountpoints-*.img holds KEY "
          "as ext_key); HOST_PATH is the file or directory to bind there.", operation="restore",
          derive=_mount_values),
    # net.c:2942  "Unable to find an external netns: %s"
    _rule("external-netns", [r"Unable to find an external netns: (?P<key>\S+)"],
          "The network namespace was dumped as external (key {key}) and this restore was not given one to use.",
          "Hand the namespace to restore: --inherit-fd fd[N]:{key} with fd N open on /proc/PID/ns/net "
          "(e.g. `N</proc/PID/ns/net`); {key} is the key of --external net[INODE]:{key} at dump.",
          operation="restore"),
    # tty.c:1010  "Don't have tty to inherit session from, aborting"
    _rule("shell-job", [r"Don't have tty to inherit session from"],
          "The process was a shell job attached to a terminal, and this restore has no terminal to hand it.",
          "Run criu restore --shell-job (-j) with a terminal on criu's stdin (criu checks isatty(0); the restored "
          "job gets that terminal): from an interactive shell, or under `script -qec 'criu restore ... "
          "--shell-job' /dev/null`. Containers: this advice does not apply inside one; restore into a container "
          "created with a terminal (docker create -t, or the original container), whose runtime provides it.",
          operation="restore"),
    # tty.c:410  "Found slave peer index %d without correspond master peer"
    _rule("shell-job", [r"Found slave peer index (?P<index>\d+) without correspond master peer"],
          "The process has a terminal (pty slave {index}) whose master side is outside the dumped process tree: "
          "it runs on a terminal of its own, a shell job.",
          "Dump with --shell-job (-j), and restore with --shell-job too, with a terminal on criu's stdin.",
          operation="dump"),
    # image.c:94  "Need to set the --tcp-close options."
    _rule("tcp-close", [r"Need to set the --tcp-close options"],
          "The dump was made with --tcp-close, and restore must be told the same.",
          "Add --tcp-close to the criu restore command.", operation="restore"),
    # image.c:99  "Dumped with --allow-uprobes. Need to set it on restore as well."
    # proc_parse.c:614  "PID %d has uprobes vma. Consider using --allow-uprobes."
    _rule("allow-uprobes", [r"Dumped with --allow-uprobes\. Need to set it on restore",
                            r"PID (?P<pid>\d+) has uprobes vma"],
          "The process has a uprobes mapping, which CRIU handles only with --allow-uprobes.",
          "Pass --allow-uprobes (to criu dump, and again to criu restore, since the images were dumped with it)."),
    # image.c:198  "Missing required plugin: %s"
    _rule("missing-plugin", [r"Missing required plugin: (?P<plugin>\S+)"],
          "The images need the CRIU plugin {plugin} (they were dumped with it), and this CRIU did not load it.",
          "Install the {plugin} plugin for this CRIU, or point criu restore at its directory with --libdir "
          "(-L).", operation="restore"),
    # image.c:52  "Too old image, no longer supported"
    _rule("image-too-old", [r"Too old image, no longer supported"],
          "The images were written by a CRIU so old that this one no longer reads them.",
          "Restore with the older CRIU release that wrote them, or dump again with this CRIU.", operation="restore"),
    # image.c:89  "Not supported images version %u" (image.c:80-86 read img_version 1 and 2 only)
    _rule("image-version", [r"Not supported images version (?P<version>\d+)"],
          "inventory.img says image version {version}, which CRIU does not read. Every CRIU since images v1.1 "
          "writes img_version 2 and reads 1 and 2, so this is not a mismatch between CRIU releases: inventory.img "
          "is damaged or was not written by CRIU.",
          "Check inventory.img (`crit show inventory.img`, `imgtool summary DIR`) and copy the dump again from "
          "the original; restore with the CRIU that wrote the images.", operation="restore"),
    # image.c:554  "Head magic doesn't match for %s"; image.c:563  "Magic doesn't match for %s"
    # protobuf.c:101  "Failed unpacking object %p from %s"
    _rule("image-corrupt", [r"(?:Head m|M)agic doesn't match for (?P<path>\S+)",
                            r"Failed unpacking object \S+ from (?P<path>\S+)"],
          "{path} is not the image CRIU expected: a damaged copy, a wrong file, or images of different dumps mixed.",
          "Copy the image directory again, completely and byte for byte, from the original dump; `imgtool info "
          "{path}` shows what the file holds."),
    # A page-read error by a CRIU older than 4.2 (its log's "Version:" line): CRIU 4.2 writes each pagemap entry's
    # size in nr_pages with compat_nr_pages 0 (page-xfer.c:326-330), which older CRIU reads as empty entries.
    # pagemap.c:256,426,429 as below; pie/restorer.c "Unexpected EOF reading pages data"; pie/util-vdso.c:107
    _rule("version-mismatch", [r"Can't read mapping page -?\d+",
                               r"Reached EOF unexpectedly while reading page from image",
                               r"Unexpected EOF reading pages data",
                               r"Invalid ELF magic"],
          "CRIU {criu_version} (the log's Version line) failed to read the memory pages, most likely because the "
          "images were written by CRIU >= 4.2 and are read by CRIU {criu_version}: CRIU 4.2 stores the size of "
          "each pagemap entry in a new field (nr_pages) that older CRIU does not know, so it reads the pagemap "
          "wrong. The pages themselves are probably intact.",
          "Restore with CRIU 4.2 or newer (the version that dumped, or later), or dump again with CRIU "
          "{criu_version}. To confirm: `crit show pagemap-PID.img` of images written by CRIU >= 4.2 shows "
          "entries with nr_pages set and compat_nr_pages 0 (inventory.img records no CRIU version).",
          operation="restore", requires="criu-before-4.2"),
    # pagemap.c:426  "Reached EOF unexpectedly while reading page from image"
    # pagemap.c:256,429  "Can't read mapping page %d"
    _rule("pages-truncated", [r"Reached EOF unexpectedly while reading page from image",
                              r"Can't read mapping page -?\d+"],
          "A pages-*.img file is shorter than its pagemap says: memory contents are missing from the images.",
          "Copy the pages-*.img files again (the large ones are the usual victims of a cut-short copy or a full "
          "disk), or dump again.", operation="restore"),
    # protobuf.c:72 with protobuf.c:31: a missing image is opened as an empty one, "(empty-image)"
    _rule("image-missing", [r"Unexpected EOF on \(empty-image\)"],
          "A required image file is missing from the dump directory (criu reads a missing image as empty).",
          "Copy the whole dump directory again; `imgtool check DIR` names the missing image.",
          operation="restore"),
    # pie/restorer.c (CRIU after 4.2)  "Unexpected EOF reading pages data at offset %ld (%d iovs remaining)";
    # 4.2 itself logs "`- returned 0" and retries forever (see LAST_WORDS)
    _rule("pages-eof", [r"Unexpected EOF reading pages data at offset (?P<offset>\d+)"],
          "A pages file ends before the pages its pagemap lists: it was truncated (or replaced) after the dump.",
          "Copy the dump again; `imgtool check DIR` names the pages file and how much of it is missing.",
          operation="restore"),
    # pie/util-vdso.c:107  "Invalid ELF magic": the restored vDSO page holds other bytes, so pages
    # were read from the wrong offset (a pagemap entry lost, or pages of another dump)
    _rule("pages-misplaced", [r"Invalid ELF magic"],
          "Restored memory is not what was dumped: the vDSO page read back with the wrong bytes, so the "
          "pagemap and the pages file no longer line up (an entry removed, or a pages file from another dump).",
          "Copy the dump again; `imgtool check DIR` compares every pagemap with its pages file.",
          operation="restore"),
    # sk-unix.c:2285  "FATAL: Peer %u unresolved for %u"
    _rule("unix-peer-unresolved", [r"FATAL: Peer (?P<peer>\d+) unresolved for (?P<ino>\d+)"],
          "Unix socket {ino} was connected to socket {peer}, which is neither in the dump nor marked "
          "external: a connection still in flight to an outside listener cannot be restored.",
          "Dump again once the peer has accepted the connection (or close it before dumping).",
          operation="restore"),
    # sk-unix.c:1406  "Can't connect %d socket"
    _rule("unix-connect-failed", [r"Can't connect (?P<ino>\d+) socket"],
          "Unix socket {ino} could not reconnect to its peer: nothing listens at that address on this host.",
          "Start the peer (bind its socket path) before restoring; it is external to the dump (--ext-unix-sk).",
          operation="restore"),
    # protobuf.c:72  "Unexpected EOF on %s"; image.c:887  "Unexpected EOF"
    # protobuf.c:76,93  "Read %d bytes while %d expected on %s" / "... expected from %s"
    _rule("image-truncated", [r"Unexpected EOF(?: on (?P<path>\S+))?$",
                              r"Read \d+ bytes while \d+ expected (?:on|from) (?P<path>[^\s:]+)"],
          "An image file ends in the middle of an entry: it was cut short (full disk, interrupted copy).",
          "Copy the images again or dump again; `imgtool info FILE` names the entry where a file ends early.",
          operation="restore"),
    # page-xfer.c:344  "Hole %p - %p not found in parent"
    # pagemap.c:203, page-xfer.c:299  "Missing %lx in parent pagemap"
    _rule("parent-pages-missing", [r"Hole (?P<start>\S+) - (?P<end>\S+) not found in parent",
                                   r"Missing (?P<vaddr>[0-9a-f]+) in parent pagemap"],
          "The images say some memory is in the parent (pre-dump) images, but the parent does not have it: the "
          "parent directory is not the one this dump was made against, or it was changed or deduplicated.",
          "Keep the chain intact: the `parent` symlink made by --prev-images-dir must point at the original, "
          "unchanged pre-dump directory (keep relative paths valid when moving the chain); otherwise dump again "
          "without --prev-images-dir."),
    # pagemap.c:185  "No parent for snapshot pagemap"
    _rule("parent-missing", [r"No parent for snapshot pagemap"],
          "The pagemap says memory is in the parent images, but there is no parent: the `parent` symlink is "
          "missing or points nowhere.",
          "Restore with the whole chain: copy the pre-dump directories too and keep the `parent` symlink (made by "
          "--prev-images-dir) pointing at them.", operation="restore"),
    # arch/x86/cpu.c:297 "CPU capabilities do not match run time"; :223 "CPU instruction capabilities do not match
    # run time"; :247 "FPU feature required by image is not supported on host (...)"; :262 "CPU xfeatures has
    # unsupported bits (%#x)"; :274,279 "CPU xsave [max ]size mismatch (%u/%u)"
    _rule("cpu-mismatch", [r"CPU (?:instruction )?capabilities do not match run time",
                           r"FPU feature required by image is not supported on host",
                           r"CPU xfeatures has unsupported bits \((?P<bits>0x[0-9a-f]+)\)",
                           r"CPU xsave (?:max )?size mismatch \((?P<image_size>\d+)/(?P<host_size>\d+)\)"],
          "This CPU lacks features of the CPU the dump was taken on, or saves FPU state in a different layout.",
          "Restore on a host with the same CPU model and features, or, accepting the risk, restore with "
          "--cpu-cap=none to skip the check (or a narrower --cpu-cap such as fpu)."),
    # arch/x86/cpu.c:411  "No cpuinfo image"
    _rule("cpuinfo-missing", [r"No cpuinfo image"],
          "A CPU check was asked for, but the dump has no cpuinfo image to compare with.",
          "Restore without --cpu-cap (or with --cpu-cap=none), or dump with --cpu-cap so the CPU is recorded."),
    # cr-restore.c:861  "Core march mismatch %d"
    _rule("arch-mismatch", [r"Core march mismatch (?P<march>-?\d+)"],
          "A task image is for another CPU architecture (core mtype {march}) than this CRIU.",
          "Restore on a host of the architecture the dump was made on (`imgtool show core-PID.img` shows mtype).",
          operation="restore"),
    # lsm.c:360  "mismatched lsm types and lsm profile specified"
    _rule("lsm-mismatch", [r"mismatched lsm types and lsm profile specified"],
          "The dump host ran another Linux security module (AppArmor vs SELinux) and the processes had a profile.",
          "Restore on a host running the same LSM as the dump host (`imgtool summary DIR` shows it); do not pass "
          "an --lsm-profile of another LSM type.", operation="restore"),
    # config.c:1130  "Tracking memory is not available. Consider omitting --track-mem option."
    # mem.c:46  BUG_ON(!kdat.has_dirty_track) in a pre-dump, when kerndat.c:469 logged "Dirty tracking support is OFF"
    _rule("mem-tracking-unavailable", [r"Tracking memory is not available"],
          "This kernel has no soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY), which pre-dump and "
          "--track-mem need.",
          "Omit --track-mem and take a full criu dump without pre-dump, or run on a kernel with "
          "CONFIG_MEM_SOFT_DIRTY=y (`criu check --feature mem_dirty_track` tells)."),
    _rule("mem-tracking-unavailable", [r"BUG at criu/mem\.c:\d+"],
          "This kernel has no soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY), which pre-dump needs; CRIU "
          "aborted on its assertion (the task may keep CRIU's parasite mappings).",
          "Do not use criu pre-dump or --track-mem here: take a full criu dump, or run on a kernel with "
          "CONFIG_MEM_SOFT_DIRTY=y (`criu check --feature mem_dirty_track` tells).", requires="no-dirty-track"),
    # mem.c:386  "Pid-reuse detection failed: no parent inventory, check warnings in get_parent_inventory"
    # (image.c:344 warns "Parent pre-dump inventory has no uptime": the parent was made without memory tracking)
    _rule("parent-not-tracked", [r"Pid-reuse detection failed: no parent inventory"],
          "The dump has a parent (--prev-images-dir) whose inventory has no dump uptime, so CRIU cannot rule out "
          "PID reuse: the parent was a plain dump instead of a criu pre-dump (or --track-mem dump), or it is "
          "unreadable.",
          "Make the parent with criu pre-dump (or criu dump --track-mem --leave-running), which needs soft-dirty "
          "tracking; without it, dump without --prev-images-dir.", operation="dump"),
    # seccomp.c:149  "Can't fetch filter on tid_real %d i %zu: %s"
    # seccomp.c:162  "Can't fetch seccomp metadata on tid_real %d pos %zu: %s"
    _rule("seccomp-dump", [r"Can't fetch filter on tid_real (?P<tid>\d+) i \d+: (?P<reason>.+)",
                           r"Can't fetch seccomp metadata on tid_real (?P<tid>\d+) pos \d+: (?P<reason>.+)"],
          "CRIU could not read the seccomp filters of thread {tid} ({reason}).",
          "Run criu dump as real root (CAP_SYS_ADMIN in the initial user namespace) on a kernel with "
          "CONFIG_CHECKPOINT_RESTORE and CONFIG_SECCOMP_FILTER; `criu check` shows whether seccomp can be dumped.",
          operation="dump"),
    # compel/src/lib/infect.c:262  "Unseizable non-zombie %d found, state %c, err %d/%d"
    # cr-restore.c:1743  "Can't attach to %d: %s"
    _rule("ptrace-denied", [r"Unseizable non-zombie (?P<pid>\d+) found, state (?P<state>\S)",
                            r"Can't attach to (?P<pid>\d+): Operation not permitted"],
          "CRIU could not attach to task {pid} with ptrace, which it needs to checkpoint or restore it.",
          "Run criu as root (CAP_SYS_PTRACE); make sure no debugger or strace is attached to the task and "
          "kernel.yama.ptrace_scope is not 3 (the warning just before the error gives the errno)."),
    # include/common/bug.h:24  "BUG at %s:%d"
    _rule("criu-bug", [r"BUG at (?P<file>\S+):(?P<bug_line>\d+)"],
          "CRIU hit an internal assertion (BUG at {file}:{bug_line}) and aborted.",
          "Read the lines before it for what CRIU was doing; retry with the newest CRIU and report it to CRIU with "
          "the log if it persists."),
)


@dataclass(frozen=True)
class LogEntry:
    """One Error or Warn message of the log."""

    line_number: int
    level: str  # "Error" or "Warn"
    source: str  # CRIU's file:line, as the logging CRIU build had it
    message: str  # the text after "Error (file:line): "
    text: str  # the whole line (shortened)
    pid: int | None  # the pid prefix of restore's child processes
    previous_warning: str | None = None  # the last interesting warning before it
    context: tuple[tuple[str, str], ...] = ()  # the _CONTEXT values seen before it


@dataclass
class Explanation:
    """What a CRIU log says: did it work, and if not, why and what to do."""

    verdict: Verdict
    operation: Operation | None
    first_error: str | None
    first_error_line: int | None
    cause: str  # a rule code, "none" (ok), "unknown" (failed, not recognised) or "no-verdict"
    summary: str
    fix: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Fill(dict):
    """Template values: a group that did not take part in the match shows as "?"."""

    def __missing__(self, key: str) -> str:
        return "?"


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r\n")


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "..."


def parse_entry(line_number: int, line: str) -> LogEntry | None:
    """The Error/Warn message on this line, or None."""
    m = _ENTRY.match(line)
    if m is None:
        return None
    pid = m["pid"]
    return LogEntry(line_number, m["level"], m["source"], _short(m["message"]), _short(line.strip()),
                    int(pid) if pid else None)


def is_noise(entry: LogEntry) -> bool:
    patterns = _NOISE_ERRORS if entry.level == "Error" else _NOISE_WARNINGS
    return any(p.search(entry.message) for p in patterns)


def is_cascade(entry: LogEntry) -> bool:
    return any(p.search(entry.message) for p in _CASCADE_ERRORS)


def match_rule(message: str, flags: frozenset[str] | set[str] = frozenset()) -> tuple[Rule, dict[str, str]] | None:
    """The first rule explaining an error message, with the values its pattern captured."""
    for rule in RULES:
        if rule.requires and rule.requires not in flags:
            continue
        for pattern in rule.patterns:
            m = pattern.search(message)
            if m:
                return rule, {k: v for k, v in m.groupdict().items() if v is not None}
    return None


def _line_starts(data: bytes, end: int) -> list[int]:
    """Offsets of the lines of data[:end] holding a needle in their first MAX_LINE_BYTES (what is kept)."""
    starts = set()
    for needle in _NEEDLES:
        at = data.find(needle, 0, end)
        while at >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            if at + len(needle) - start <= MAX_LINE_BYTES:
                starts.add(start)
            next_line = data.find(b"\n", at, end) + 1
            at = data.find(needle, next_line, end) if next_line else -1
    return sorted(starts)


def _needle_lines(data: bytes, end: int, number: int) -> Iterator[tuple[int, bytes]]:
    """The lines of data[:end] holding a needle; ``number`` is the number of the line at offset 0."""
    counted = 0
    for start in _line_starts(data, end):
        number += data.count(b"\n", counted, start)
        counted = start
        stop = data.find(b"\n", start, min(end, start + MAX_LINE_BYTES))
        yield number, data[start:stop if stop >= 0 else min(end, start + MAX_LINE_BYTES)]


def read_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every line that can matter (holds a needle), read in blocks.

    Lines are cut at MAX_LINE_BYTES, so memory stays around BLOCK_BYTES whatever the input.
    """
    number, pending, skipping = 1, b"", False
    while block := stream.read(BLOCK_BYTES):
        if skipping:  # inside the tail of an over-long line
            newline = block.find(b"\n")
            if newline < 0:
                continue
            block, skipping, number = block[newline + 1:], False, number + 1
        data = pending + block
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) > MAX_LINE_BYTES:  # an over-long line: keep its head, skip the rest
            yield from _needle_lines(data, MAX_LINE_BYTES, number)
            pending, skipping = b"", True
            continue
        yield from _needle_lines(data, end, number)
        number += data.count(b"\n", 0, end)
        pending = data[end:]
    if pending and not skipping:
        yield from _needle_lines(pending, len(pending), number)


@dataclass
class _Scan:
    """What one pass over a log collected; memory stays bounded whatever the log's size."""

    operations: set[Operation] = field(default_factory=set)  # from marker lines
    source_operations: set[Operation] = field(default_factory=set)  # from the files errors come from
    verdict: Verdict | None = None
    verdict_line: int | None = None
    flags: set[str] = field(default_factory=set)
    errors: list[LogEntry] = field(default_factory=list)  # real ones, noise left out
    error_count: int = 0
    warnings: list[LogEntry] = field(default_factory=list)
    last_warning: str | None = None
    context: dict[str, str] = field(default_factory=dict)  # the latest _CONTEXT values
    wrapper: dict[str, str] = field(default_factory=dict)  # what a container engine's error said (_WRAPPER_PATTERNS)

    def feed(self, number: int, raw: bytes) -> None:
        if any(needle in raw for needle in _WRAPPER_NEEDLES):
            self._note_wrapper(number, _decode(raw))
        marker = _MARKER_RE.search(raw)
        if marker is not None:
            self._note_marker(number, marker.group())
        for needle, pattern in _CONTEXT.items():
            if needle in raw:
                self._note_context(pattern, _decode(raw))
        if b"Error" in raw or b"Warn" in raw:
            entry = parse_entry(number, _decode(raw))
            if entry is not None and not is_noise(entry):
                self._add(entry)

    def _note_wrapper(self, number: int, line: str) -> None:
        found = False
        for pattern in _WRAPPER_PATTERNS:
            m = pattern.search(line)
            if m is not None:
                found = True
                for key, value in m.groupdict().items():
                    if value is not None:
                        self.wrapper.setdefault(key, _short(value))
        if found:
            self.wrapper.setdefault("line", str(number))
            self.wrapper.setdefault("text", _short(line.strip()))

    def _note_marker(self, number: int, marker: bytes) -> None:
        operation, verdict, flag = _MARKERS[marker]
        if operation:
            self.operations.add(operation)
        if verdict:
            self.verdict, self.verdict_line = verdict, number
            self.operations = {operation} if operation else self.operations  # the verdict line is surest
        if flag:
            self.flags.add(flag)

    def _note_context(self, pattern: re.Pattern[str], line: str) -> None:
        m = pattern.search(line)
        if m is None:
            return
        self.context.update({k: _short(v) for k, v in m.groupdict().items() if v is not None})
        if "criu_version" in m.groupdict():
            version = tuple(int(n) for n in m["criu_version"].split("."))
            self.flags.discard("criu-before-4.2")
            if version[:2] < NEW_PAGEMAP_VERSION:
                self.flags.add("criu-before-4.2")

    def _add(self, entry: LogEntry) -> None:
        source_file = entry.source.rsplit(":", 1)[0]
        if source_file in _SOURCE_OPERATIONS:
            self.source_operations.add(_SOURCE_OPERATIONS[source_file])
        if entry.level == "Warn":
            self.last_warning = entry.text
            if len(self.warnings) < MAX_KEPT_WARNINGS:
                self.warnings.append(entry)
            return
        self.error_count += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(replace(entry, previous_warning=self.last_warning,
                                       context=tuple(self.context.items())))

    def operation(self) -> Operation | None:
        for seen in (self.operations, self.source_operations):
            for op in _OPERATION_PRIORITY:
                if op in seen:
                    return op
        return None


def root_cause(errors: list[LogEntry]) -> LogEntry | None:
    """The first error that is not merely a consequence of an earlier one."""
    for entry in errors:
        if not is_cascade(entry):
            return entry
    return errors[0] if errors else None


def _verdict(scan: _Scan) -> Verdict:
    if scan.verdict:
        return scan.verdict
    if scan.errors:
        return "failed"  # CRIU died before writing its verdict (abort, BUG, option check)
    if scan.operation() == "check":
        return "ok"  # criu check prints its verdict on stdout, never in the log
    return "unknown"


def _common_details(scan: _Scan) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if scan.verdict_line is not None:
        details["verdict_line"] = scan.verdict_line
    if scan.warnings:
        details["warnings"] = [w.text for w in scan.warnings]
    return details


def _explain_ok(scan: _Scan, operation: Operation | None) -> Explanation:
    details = _common_details(scan)
    if scan.errors:
        details["nonfatal_errors"] = [e.text for e in scan.errors[:5]]
    what = f"criu {operation}" if operation else "CRIU"
    summary = f"{what} finished successfully."
    if operation == "check":
        summary = "criu check logged no errors (its verdict itself goes to stdout, not to the log)."
    return Explanation("ok", operation, None, None, "none", summary, "Nothing to do.", details)


# Logs that end without a verdict or an error, but with a sign of why CRIU never finished.
# flag -> (cause, summary, fix)
LAST_WORDS: dict[str, tuple[str, str, str]] = {
    "pages-eof": (
        "pages-eof",
        "The log ends inside the restorer's page reads, after a read returned 0 bytes: a pages file is shorter "
        "than its pagemap says, and CRIU 4.2's restorer retries such a read forever (the task spins at 100% CPU "
        "until killed).",
        "Kill the stuck restore, then copy the dump again: the pages file was truncated. `imgtool check DIR` "
        "names it and how much of it is missing."),
    "no-pstree": (
        "image-missing",
        "pstree.img is missing (the log says \"No pstree.img image\"): CRIU 4.2 goes on with an empty process "
        "tree and crashes (SIGSEGV) without an error message.",
        "Copy the whole dump directory again; `imgtool check DIR` names every missing image."),
}


def _explain_no_verdict(scan: _Scan, operation: Operation | None) -> Explanation:
    for flag, (cause, summary, fix) in LAST_WORDS.items():
        if flag in scan.flags:
            return Explanation("unknown", operation, None, None, cause, summary, fix, _common_details(scan))
    return Explanation("unknown", operation, None, None, "no-verdict",
                       "The log has no result line and no errors: it is cut short, still being written, or not "
                       "a CRIU log.",
                       "Check that the CRIU run finished (its exit status) and that its log was written with "
                       "-v4 -o FILE.", _common_details(scan))


def _explain_failure(scan: _Scan, operation: Operation | None) -> Explanation:
    details = _common_details(scan)
    cause_entry = root_cause(scan.errors)
    if cause_entry is None:
        return Explanation("failed", operation, None, None, "unknown", "The log says CRIU failed but has no "
                           "error message.", "Read the lines before the verdict line.", details)
    details.update(criu_source=cause_entry.source, errors_after=scan.error_count - 1 - scan.errors.index(cause_entry))
    if cause_entry.pid is not None:
        details["log_pid"] = cause_entry.pid
    if cause_entry.previous_warning:
        details["previous_warning"] = cause_entry.previous_warning
    found = match_rule(cause_entry.message, scan.flags)
    if found is None:
        return Explanation("failed", operation, cause_entry.text, cause_entry.line_number, "unknown",
                           f'CRIU failed with an error imgtool does not know: "{cause_entry.message}"',
                           f"Read the lines before it (line {cause_entry.line_number}) in the log: CRIU logs what "
                           "it was doing just before an error.", details)
    rule, values = found
    details.update(values)
    context = dict(cause_entry.context)
    if "criu_version" in context:
        details["criu_version"] = context["criu_version"]
    values = {**context, **values}
    if rule.derive is not None:
        values.update(rule.derive(values))
    fill = _Fill(values)
    return Explanation("failed", operation or rule.operation, cause_entry.text, cause_entry.line_number, rule.code,
                       rule.summary.format_map(fill), rule.fix.format_map(fill), details)


def explain_lines(lines: Iterable[tuple[int, bytes]]) -> Explanation:
    """Explain a log given as (line number, raw line) pairs."""
    scan = _Scan()
    for number, line in lines:
        scan.feed(number, line)
    operation, verdict = scan.operation(), _verdict(scan)
    if verdict == "ok":
        return _explain_ok(scan, operation)
    if verdict == "unknown":
        if scan.wrapper and ("criu_type" in scan.wrapper or "oci_op" in scan.wrapper
                             or "wrapped_op" in scan.wrapper or "exit_status" in scan.wrapper):
            return _explain_wrapper(scan)
        if scan.wrapper.get("daemon_message"):
            return _explain_daemon(scan)
        return _explain_no_verdict(scan, operation)
    return _explain_failure(scan, operation)


# Where runtimes keep CRIU's log when their error does not name it (runc's work dir; containerd's task dir).
_LOG_PLACES = ("Docker with containerd: <containerd state dir>/io.containerd.runtime.v2.task/moby/<container id>/"
               "{name} (state dir /run/containerd or, for dockerd's own containerd, /var/run/docker/containerd/daemon;"
               " removed with the task, so copy it right after the failure); runc alone: {name} in its --work-path "
               "(default: the image dir); Podman: /var/lib/containers/storage/overlay-containers/<id>/userdata/{name}")


# dockerd's own refusals (no criu run at all): message -> (cause, operation, summary, fix)
_DAEMON_ERRORS: tuple[tuple[re.Pattern[str], str, Operation | None, str, str], ...] = (
    (re.compile(r"custom checkpointdir is not supported"), "docker-checkpoint-dir", "restore",
     "Docker (20.10 and later with containerd) refuses docker start --checkpoint-dir: it restores only from the "
     "target container's own checkpoints dir. criu never ran.",
     "Copy the checkpoint into <data-root>/containers/<target id>/checkpoints/NAME and run docker start "
     "--checkpoint NAME TARGET; `imgtool check CHECKPOINT --for-container TARGET_DIR --offline` first."),
    (re.compile(r"checkpoint .* does not exist|No such file or directory.*checkpoints"), "docker-checkpoint-missing",
     "restore", "Docker found no checkpoint of that name in the container's checkpoints dir. criu never ran.",
     "List them with `docker checkpoint ls CONTAINER` or `imgtool ls CONTAINER_DIR`."),
)


def _explain_daemon(scan: _Scan) -> Explanation:
    """dockerd refused before any criu run (no runtime or criu in its message)."""
    w = scan.wrapper
    message = w["daemon_message"]
    details: dict[str, Any] = {"engine": "Docker", "daemon_message": message}
    for pattern, cause, operation, summary, fix in _DAEMON_ERRORS:
        if pattern.search(message):
            return Explanation("failed", operation, w.get("text"), int(w["line"]), cause, summary, fix, details)
    return Explanation("failed", None, w.get("text"), int(w["line"]), "docker-error",
                       f"dockerd refused the request: \"{message}\" (no runc or criu error in it: criu probably never "
                       "ran).", "Read dockerd's log (journalctl -u docker) for the request's error.", details)


def _explain_wrapper(scan: _Scan) -> Explanation:
    """A container engine's or runtime's error around a failed criu run: which run failed, and where its log is."""
    w = scan.wrapper
    log = w.get("criu_log")
    log_name = os.path.basename(log) if log else ""
    op = w.get("wrapped_op") or w.get("oci_op") or ""
    if op in ("checkpoint", "dump") or "dump" in log_name:
        operation: Operation | None = "dump"
    elif op == "restore" or "restore" in log_name:
        operation = "restore"
    else:
        operation = None
    runtime = "runc" if w.get("runc") or w.get("oci_op") or w.get("criu_type") else "the OCI runtime"
    engine = "Docker" if w.get("docker") else "containerd (ctr)" if w.get("ctr") else ""
    via = f"{engine} ({runtime})" if engine else runtime
    verb = {"dump": "docker checkpoint create" if engine == "Docker" else "the checkpoint",
            "restore": "docker start --checkpoint" if engine == "Docker" else "the restore"}.get(operation or "",
                                                                                                 "the runtime's call")
    details: dict[str, Any] = {"runtime": runtime, **({"engine": engine} if engine else {}),
                               **{k: v for k, v in w.items() if k in ("container", "exit_status", "criu_type",
                                                                      "criu_errno", "runtime_message", "line")}}
    name = "criu-dump.log" if operation == "dump" else "restore.log"
    if "criu_type" in w:
        cause = f"{runtime}-criu-failed"
        summary = (f"{verb} failed because criu {operation or 'itself'} failed under {via} (runc reports it as "
                   f"\"criu failed: type {w['criu_type']} errno {w.get('criu_errno', '?')}\"; the type names the "
                   "criu RPC message runc was handling, not the reason): the reason is in CRIU's own log")
    else:
        message = w.get("runtime_message") or w.get("text", "")
        cause = f"{runtime}-{operation or 'runtime'}-failed"
        summary = (f"{verb} failed in {via}: \"{message}\". runc reports errors of its own around criu this way; "
                   "what criu did is in CRIU's own log")
        if "bad file descriptor" in message and operation == "restore":
            summary += (". One known cause: a checkpoint of a container with a terminal (docker run -t) restored "
                        "into a container without one; CRIU's log then says \"Don't have tty to inherit session "
                        "from\"")
    if log:
        details["criu_log"] = log
        fix = (f"Run `imgtool explain {log}` (CRIU's log of this run; {runtime} removes it with the task, so copy it "
               "right away); `imgtool check CHECKPOINT --for-container CONTAINER_DIR --offline` predicts the "
               "failures of a Docker restore.")
    else:
        details["criu_log_places"] = _LOG_PLACES.format(name=name)
        fix = (f"Find CRIU's log of this run, {name} ({_LOG_PLACES.format(name=name)}), and run `imgtool explain` on "
               "it; `imgtool check CHECKPOINT --for-container CONTAINER_DIR --offline` predicts the failures of a "
               "Docker restore.")
    return Explanation("failed", operation, w.get("text"), int(w["line"]) if "line" in w else None, cause,
                       summary + ".", fix, details)


def with_named_log(explanation: Explanation, limit: int = MAX_LOG_BYTES) -> Explanation:
    """An engine's error naming CRIU's log (``details["criu_log"]``): when that file exists, explain it too and
    put its cause, first error and fix in."""
    log = explanation.details.get("criu_log")
    if not log or not os.path.isfile(log):
        return explanation
    try:
        inner = explain_file(log, limit, follow=False)
    except OSError as exc:
        explanation.details["criu_log_unreadable"] = f"{exc.strerror or exc}"
        return explanation
    explanation.details["criu_log_verdict"] = inner.verdict
    if inner.verdict == "failed":
        explanation.details["criu_log_cause"] = inner.cause
        if inner.first_error:
            explanation.details["criu_log_first_error"] = f"line {inner.first_error_line}: {inner.first_error}"
        explanation.summary += f" CRIU's log ({log}): {inner.summary}"
        explanation.fix = inner.fix + " " + explanation.fix
        explanation.operation = explanation.operation or inner.operation
    return explanation


class _Bounded:
    """A binary stream that ends after ``limit`` bytes; ``truncated`` tells whether there was more."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream, self.left, self.truncated = stream, limit, False

    def read(self, size: int) -> bytes:
        if self.left <= 0:
            self.truncated = self.truncated or bool(self.stream.read(1))
            return b""
        data = self.stream.read(min(size, self.left))
        self.left -= len(data)
        return data


def explain_stream(stream: IO[bytes], limit: int = MAX_LOG_BYTES) -> Explanation:
    """Explain the first ``limit`` bytes of a log; when there is more, ``details["truncated"]`` says so."""
    bounded = _Bounded(stream, limit)
    explanation = explain_lines(read_lines(bounded))  # type: ignore[arg-type]
    if bounded.truncated:
        explanation.details["truncated"] = (f"only the first {limit} bytes of the log were read "
                                            f"(imgtool explain reads at most {MAX_LOG_BYTES >> 20} MiB)")
    return explanation


def explain_text(text: str) -> Explanation:
    """Explain a log held in a string."""
    return explain_stream(io.BytesIO(text.encode("utf-8", "replace")))


def explain_file(path: str | Path, limit: int = MAX_LOG_BYTES, *, follow: bool = True) -> Explanation:
    """Explain a CRIU log file (a regular file, a device, a FIFO...). Raises OSError when it cannot be read.

    A FIFO is opened without waiting for a writer (none: it reads as empty); at most ``limit`` bytes are read.
    A container engine's error text (docker's, runc's) naming CRIU's log: with ``follow``, that log is explained
    too when it exists (:func:`with_named_log`).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.set_blocking(fd, True)   # reads wait for a FIFO's writer once it has one
        stream = os.fdopen(fd, "rb")
    except OSError as exc:   # a directory...: name the file, not the descriptor
        with contextlib.suppress(OSError):
            os.close(fd)
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    with stream:
        try:
            explanation = explain_stream(stream, limit)
        except OSError as exc:   # name the file, not the descriptor
            raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    return with_named_log(explanation, limit) if follow else explanation
