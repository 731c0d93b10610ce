"""Test harness for the real CRIU: find a usable criu, dump a live process, restore it.

Getting CRIU: ``scripts/get-criu.sh`` (as root) builds CRIU >= 4.1 into ``$IMGTOOL_CRIU_CACHE`` (default
``~/.cache/imgtool/criu/<version>/criu``); :func:`criu_binary` finds it there (or takes ``IMGTOOL_CRIU``).
:func:`require_criu` skips the calling test with the specific reason when no usable criu exists (not root, none
built, too old, ``criu check`` fails). With ``IMGTOOL_REQUIRE_CRIU=1`` (CI, after get-criu.sh) those reasons fail
the test instead, so real-CRIU coverage cannot vanish silently.

Readiness protocol (:func:`dump_process`): the program runs detached from the test's terminal (its own session,
or a job of a :class:`Shell`; stdin ``/dev/null``, stdout and stderr appended to ``<images_dir>.out`` beside the images
dir), sets itself up, then writes a line ``READY`` to stdout, flushed, and waits to be dumped. Lines before READY
are the program's report (``DumpedProcess.report``). tests/programs/holder.c follows this protocol.

PIDs: ``criu restore`` recreates the tasks with their original PIDs, so a PID must be free again before its dump
is restored. ``criu dump`` kills the dumped tree when it succeeds (unless ``--leave-running``); dump_process then
reaps the dumped process (it is our child: until reaped its zombie keeps the PID). After a failed dump, or with
``--leave-running``, the process is still alive: ``DumpedProcess.kill()`` it before restoring. Restoring the same
images twice likewise needs ``RestoreResult.kill()`` in between. restore() makes this process a child subreaper
(PR_SET_CHILD_SUBREAPER), so restored trees, detached by ``--restore-detached``, are re-parented to us rather
than to PID 1 (which need not reap anything) and kill() reaps them. A restore that outlives its timeout (criu's
restorer spins forever on a truncated pages file) is not an exception: criu is killed, the tasks it had already
forked (now our children) are killed too, and the result says ``timed_out``.

Clean-up: every process started or restored here is registered; :func:`kill_all` (call it at fixture teardown;
it also runs at interpreter exit) SIGKILLs and reaps whatever is still alive.

Shell jobs: a program started by a :class:`Shell` is a job in the shell's session and process group, which criu dump
refuses unless given ``--shell-job``; restore needs it too unless criu runs in that same session and process group
(``restore(shell=...)``), and whenever a tty is involved. The shell is a helper process of ours, not pytest: pytest's
own session may be led by a process outside our pid namespace (as in CI), and criu cannot dump a job of that.

Other caveats: a failed restore can leave a task it had forked as our zombie: restore() reaps those, or the next
restore of the dump finds its pid taken. A restore log line ``Error (criu/util.c:...): rlimit: Can't setup
RLIMIT_NOFILE for self`` is harmless. Regular files the process has open must still exist at restore time with the
size they had at dump (CRIU checks it): the output file is written only before READY, so it does not change after
the dump.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

MIN_VERSION = (4, 1)
READY = "READY"
REPO = Path(__file__).resolve().parents[1]
GET_CRIU = REPO / "scripts" / "get-criu.sh"
HOLDER_SRC = Path(__file__).resolve().parent / "programs" / "holder.c"
JOBSHELL = Path(__file__).resolve().parent / "programs" / "jobshell.py"
PR_SET_CHILD_SUBREAPER = 36

_live: list[DumpedProcess | RestoreResult] = []


# -- finding criu ----------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where scripts/get-criu.sh builds CRIU (the same default)."""
    env = os.environ.get("IMGTOOL_CRIU_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "imgtool" / "criu"


def criu_version(criu: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The version `criu --version` reports, or None when it does not run."""
    try:
        out = subprocess.run([os.fspath(criu), "--version"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"^Version:\s*(\d+(?:\.\d+)*)", out.stdout, re.M)
    return tuple(int(x) for x in found.group(1).split(".")) if out.returncode == 0 and found else None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.parent.name))


def criu_binary() -> Path | None:
    """IMGTOOL_CRIU if set, else the newest working build in the get-criu.sh cache, else `criu` on PATH if >= 4.1."""
    if env := os.environ.get("IMGTOOL_CRIU"):
        return Path(env)
    for built in sorted(cache_dir().glob("*/criu"), key=_version_key, reverse=True):
        if criu_version(built):
            return built
    on_path = shutil.which("criu")
    if on_path and (criu_version(on_path) or ()) >= MIN_VERSION:
        return Path(on_path)
    return None


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


@cache
def _unusable_reason() -> tuple[Path | None, str | None, bool]:
    """(criu, why it cannot be used, whether that is a configuration error that must fail rather than skip)."""
    if os.geteuid() != 0:
        return None, f"real-CRIU tests need root (criu dump/restore need CAP_SYS_ADMIN); euid is {os.geteuid()}", False
    criu = criu_binary()
    if criu is None:
        on_path = shutil.which("criu")
        seen = f"; {on_path} is {_dotted(criu_version(on_path) or (0,))}" if on_path else ""
        return None, (f"no CRIU >= {_dotted(MIN_VERSION)}: run {GET_CRIU.relative_to(REPO)} (builds one into "
                      f"{cache_dir()}) or set IMGTOOL_CRIU{seen}"), False
    version = criu_version(criu)
    if version is None:
        return criu, f"IMGTOOL_CRIU={criu}: `--version` does not run", True
    if version < MIN_VERSION:
        return criu, f"IMGTOOL_CRIU={criu} is CRIU {_dotted(version)}, need >= {_dotted(MIN_VERSION)}", True
    check = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if "Looks good" not in check.stdout + check.stderr:
        tail = " | ".join((check.stdout + check.stderr).strip().splitlines()[-3:])
        return criu, f"`{criu} check` fails on this kernel (exit {check.returncode}): {tail}", False
    return criu, None, False


def require_criu() -> Path:
    """The usable criu binary, or skip the test saying exactly why there is none (fail under IMGTOOL_REQUIRE_CRIU)."""
    criu, reason, config_error = _unusable_reason()
    if reason is None and criu is not None:
        return criu
    if config_error or os.environ.get("IMGTOOL_REQUIRE_CRIU"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def build_holder(dest_dir: Path, name: str = "holder", flags: Sequence[str] = ()) -> Path:
    """Compile tests/programs/holder.c into dest_dir/name with `cc` and extra flags (skip without a C compiler)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc) to build tests/programs/holder.c")
    out = dest_dir / name
    built = subprocess.run([cc, "-O1", "-Wall", *flags, "-o", out, HOLDER_SRC], capture_output=True, text=True)
    if built.returncode:
        pytest.fail(f"cc {HOLDER_SRC} failed:\n{built.stderr}", pytrace=False)
    return out


# -- processes ------------------------------------------------------------------------------------------------

def _state(pid: int) -> str | None:
    """The /proc state letter of pid (Z for a zombie), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _kill_and_reap(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL pid and wait until its PID is free (reaped by us if it is our child)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    deadline = time.monotonic() + timeout
    while _state(pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.01)


def become_subreaper() -> None:
    """Make this process adopt orphaned descendants (restored trees), so that kill() can reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def kill_all() -> None:
    """Kill and reap every process dump_process started or restore restored that is still around."""
    while _live:
        _live.pop().kill()


atexit.register(kill_all)


@dataclass
class DumpedProcess:
    argv: list[str]
    pid: int
    images: Path
    log: Path                  # criu's dump.log (in the images dir)
    output: Path               # the program's stdout+stderr
    report: list[str]          # the program's lines before READY
    returncode: int | None = None   # criu dump's exit status (None: not run yet)
    stdout: str = ""
    stderr: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    shell: Shell | None = field(default=None, repr=False)   # the shell whose job it is (proc is then None)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def alive(self) -> bool:
        if self.shell is not None:
            return _state(self.pid) not in (None, "Z")
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def reap(self, timeout: float | None = None) -> None:
        """Wait for the program to end (criu kills it after a dump) and reap it, freeing its PID."""
        if self.shell is not None:
            self.shell.reap(self.pid)
        elif self.proc is not None:
            self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the program (if criu left it running) and reap it, freeing its PID."""
        if self.shell is not None:
            self.shell.reap(self.pid, kill=True)
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()


def _wait_ready(dumped: DumpedProcess, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = dumped.output.read_text(errors="replace").splitlines()
        if READY in lines:
            return lines[: lines.index(READY)]
        said = "\n".join(lines)
        if not dumped.alive():
            raise RuntimeError(f"{dumped.argv!r} exited before printing {READY}:\n{said}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dumped.argv!r} printed no {READY} line within {timeout}s:\n{said}")
        time.sleep(0.01)


def _start(argv: list[str], images_dir: Path, cwd: Path | None, shell: Shell | None) -> DumpedProcess:
    """Start argv, stdout and stderr to <images_dir>.out: in a session of its own, or as a job of shell."""
    output = images_dir.with_name(images_dir.name + ".out")
    output.write_bytes(b"")
    if shell is not None:
        pid = shell.spawn(argv, output, cwd)
        return DumpedProcess(argv, pid, images_dir, images_dir / "dump.log", output, [], shell=shell)
    with output.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd,
                                start_new_session=True)
    return DumpedProcess(argv, proc.pid, images_dir, images_dir / "dump.log", output, [], proc=proc)


def dump_process(criu: Path, argv: Sequence[str | os.PathLike[str]], images_dir: Path,
                 extra_opts: Sequence[str] = (), cwd: Path | None = None, shell: Shell | None = None,
                 ready_timeout: float = 10.0, timeout: float = 60.0) -> DumpedProcess:
    """Start argv detached (or as a job of shell), wait for its READY line, `criu dump` it into images_dir; reap it
    if criu killed it.

    Never raises for a failing dump: look at `.returncode` / `.log_text()`. Raises if the program does not get
    ready. The program is registered for kill_all() either way.
    """
    images_dir = Path(images_dir).absolute()
    images_dir.mkdir(parents=True, exist_ok=True)
    dumped = _start([os.fspath(a) for a in argv], images_dir, cwd, shell)
    _live.append(dumped)
    dumped.report = _wait_ready(dumped, ready_timeout)
    cmd = [os.fspath(criu), "dump", "-t", str(dumped.pid), "-D", os.fspath(images_dir), "-o", "dump.log", "-v4",
           *extra_opts]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    dumped.returncode, dumped.stdout, dumped.stderr = done.returncode, done.stdout, done.stderr
    if done.returncode == 0 and "--leave-running" not in extra_opts and "-R" not in extra_opts:
        try:
            dumped.reap(timeout=10)   # criu killed it; reap the zombie so its PID is free for restore
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pid {dumped.pid} still running after a successful criu dump") from None
    return dumped


def dump_twice(criu: Path, argv: Sequence[str | os.PathLike[str]], first: Path, second: Path,
               change: int = signal.SIGUSR1, marker: str = "CHANGED", timeout: float = 60.0) -> DumpedProcess:
    """Dump a program with ``--leave-running`` into ``first``, send it ``change``, wait for its ``marker`` line,
    dump it again (killing it) into ``second``. Raises when either dump fails."""
    dumped = dump_process(criu, argv, first, ["--leave-running"], timeout=timeout)
    if not dumped.ok:
        raise RuntimeError(f"first dump failed: {dumped.stderr}\n{dumped.log_text()[-2000:]}")
    os.kill(dumped.pid, change)
    deadline = time.monotonic() + 10
    while marker not in dumped.output.read_text(errors="replace").splitlines():
        if not dumped.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{dumped.argv!r} printed no {marker} line:\n{dumped.output.read_text()}")
        time.sleep(0.01)
    second = Path(second).absolute()
    second.mkdir(parents=True, exist_ok=True)
    cmd = [os.fspath(criu), "dump", "-t", str(dumped.pid), "-D", os.fspath(second), "-o", "dump.log", "-v4"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        log = (second / "dump.log").read_text(errors="replace")[-2000:] if (second / "dump.log").exists() else ""
        raise RuntimeError(f"second dump failed: {done.stderr}\n{log}")
    dumped.reap(timeout=10)
    return dumped


class Shell:
    """A session leader standing in for the user's shell (tests/programs/jobshell.py): what it starts or runs is a
    job in its session and process group. Use as a context manager; leaving it kills its jobs and ends it.
    """

    def __init__(self) -> None:
        become_subreaper()   # trees criu restores from the shell's session are adopted by us, not by PID 1
        self.proc = subprocess.Popen([sys.executable, os.fspath(JOBSHELL)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)

    @property
    def sid(self) -> int:
        return self.proc.pid

    def _call(self, **request: object) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request, default=os.fspath) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"{JOBSHELL.name} died (exit {self.proc.wait()}) on {request}")
        return json.loads(reply)

    def spawn(self, argv: Sequence[str], output: Path, cwd: Path | None = None) -> int:
        """Start argv in the background, stdout and stderr appended to output; its pid."""
        return int(self._call(op="spawn", argv=list(argv), output=output, cwd=cwd)["pid"])

    def run(self, argv: Sequence[str], cwd: Path | None = None, timeout: float = 60.0) -> dict[str, object]:
        """Run argv to the end (killed after timeout): returncode, stdout, stderr, timed_out."""
        return self._call(op="run", argv=list(argv), cwd=cwd, timeout=timeout)

    def reap(self, pid: int, kill: bool = False) -> None:
        """Wait for the job pid to end (SIGKILL it first if kill); raises TimeoutExpired if it does not."""
        if self.proc.poll() is not None:
            return
        if self._call(op="reap", pid=pid, kill=kill).get("still_running"):
            raise subprocess.TimeoutExpired([str(pid)], 10)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def __enter__(self) -> Shell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- restore --------------------------------------------------------------------------------------------------

@dataclass
class RestoreResult:
    images: Path
    log: Path                  # criu's restore.log (in the images dir)
    returncode: int
    pid: int | None            # root of the restored tree (from --pidfile), None if criu did not write it
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False    # criu did not finish within the timeout and was killed
    leftovers: dict[int, float] = field(default_factory=dict)   # after a timeout: tasks killed, CPU seconds used

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def alive(self) -> bool:
        return self.pid is not None and _state(self.pid) not in (None, "Z")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the restored root task and reap it (idempotent)."""
        if self.pid is not None:
            _kill_and_reap(self.pid)
            self.pid = None


def restore(criu: Path, images_dir: Path, extra_opts: Sequence[str] = (), pidfile: Path | None = None,
            timeout: float = 60.0, new_session: bool = False, shell: Shell | None = None) -> RestoreResult:
    """`criu restore --restore-detached` from images_dir; never raises for a failing restore (see `.returncode`).

    The restored process is registered for kill_all(); the PIDs of the dump must be free (see the module doc).
    A restore still running after ``timeout`` seconds is killed with what it restored (``.timed_out``).
    criu runs in our session and process group, or in one of its own (``new_session``), or in shell's.
    """
    images_dir = Path(images_dir).absolute()
    pidfile = Path(pidfile or images_dir.with_name(images_dir.name + ".restored.pid")).absolute()
    pidfile.unlink(missing_ok=True)
    become_subreaper()
    cmd = [os.fspath(criu), "restore", "-D", os.fspath(images_dir), "-o", "restore.log", "-v4",
           "--restore-detached", "--pidfile", os.fspath(pidfile), *extra_opts]
    before = children_of({os.getpid()})
    returncode, stdout, stderr, timed_out = run(cmd, timeout, new_session, shell)
    if timed_out:   # criu was SIGKILLed; the tasks it forked are ours now
        left = _remove_leftovers(_dumped_pids(images_dir), before)
        return RestoreResult(images_dir, images_dir / "restore.log", -signal.SIGKILL, None, stdout, stderr,
                             timed_out=True, leftovers=left)
    if returncode != 0:   # a task that died after the fork can stay behind as our zombie
        _remove_leftovers(_dumped_pids(images_dir), before)
    text = pidfile.read_text().strip() if pidfile.exists() else ""
    result = RestoreResult(images_dir, images_dir / "restore.log", returncode, int(text) if text else None,
                           stdout, stderr)
    _live.append(result)
    return result


def run(cmd: Sequence[str], timeout: float, new_session: bool = False, shell: Shell | None = None,
        cwd: Path | None = None) -> tuple[int, str, str, bool]:
    """Run cmd (in our session, one of its own, or shell's) to the end or its timeout, when it is SIGKILLed:
    (returncode, stdout, stderr, timed_out)."""
    if shell is not None:
        done = shell.run(cmd, cwd, timeout)
        return int(done["returncode"]), str(done["stdout"]), str(done["stderr"]), bool(done["timed_out"])
    try:
        ran = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             start_new_session=new_session, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        return -signal.SIGKILL, _text(exc.stdout), _text(exc.stderr), True
    return ran.returncode, ran.stdout, ran.stderr, False


def adopt(images_dir: Path, pid: int, returncode: int = 0) -> RestoreResult:
    """Register a tree restored some other way (e.g. through `imgtool restore`) so kill_all() kills it too."""
    result = RestoreResult(Path(images_dir).absolute(), Path(images_dir).absolute() / "restore.log", returncode, pid)
    _live.append(result)
    return result


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _dumped_pids(images_dir: Path) -> set[int]:
    """The pids of pstree.img (criu restore gives the tasks these pids); empty if it cannot be read."""
    import imgtool

    try:
        with imgtool.open(images_dir) as dump:
            return {t.pid for t in dump.tasks}
    except (imgtool.ImgtoolError, OSError):
        return set()


def _ppid(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    found = re.search(r"^PPid:\s*(\d+)", status, re.M)
    return int(found.group(1)) if found else None


def children_of(parents: set[int]) -> set[int]:
    """The pids of the processes (zombies included) whose parent is one of parents."""
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) in parents}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time pid has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime


def _remove_leftovers(pids: set[int], before: set[int]) -> dict[int, float]:
    """Kill and reap what a failed or killed criu restore left of the dumped tree: those of pids that became our
    children (as zombies, or orphans still running) or are children of such, never a process that was ours before.
    Returns the CPU seconds each had used when it was killed.
    """
    used: dict[int, float] = {}
    for _ in range(len(pids) + 1):
        left = [pid for pid in pids - before if _ppid(pid) in pids | {os.getpid()}]
        if not left:
            break
        for pid in left:
            used[pid] = _cpu_seconds(pid)
            _kill_and_reap(pid)
    return used
