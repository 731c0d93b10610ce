"""Fault injection against the real CRIU: does `imgtool check` predict what `criu restore` does?

Each case dumps tests/programs/holder.c with the real criu (tests/realcriu.py), injects one fault, records what
`imgtool check --json -- OPTIONS` predicts (an error finding or not, and which findings), then runs the real
`criu restore` with the same options and records how it ended. They must agree: an error finding ⇔ the restore
fails (exits non-zero, crashes, or hangs until the timeout). Where a fix is cheap (the option the finding's hint
names, the file put back, an untouched copy of the images) the case restores again with it and expects no error
and a working restore. The expected finding code and, when imgtool.explain exists, the cause `imgtool explain`
reads from the restore log are checked too. The table of every attempt is printed at the end of the module, and
test_agreement (last) asserts the agreement overall.

Faults are injected into images and files this module created under tmp_path, never anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgtool import cli
from imgtool.crit import decode
from imgtool.crit.encode import encode_dict
from imgtool.format.elf import build_id
from imgtool.format.flags import PE_PRESENT
from imgtool.format.image import Image

import realcriu

try:
    from imgtool.analysis import explain
except ImportError:   # imgtool/explain.py is written separately; without it the explain sub-assertions are skipped
    explain = None

DATA = "0123456789abcdef\n"
MEMORY_KIB = "64"
PAGE = 4096
HANG_TIMEOUT = 10.0    # a clean restore of the holder takes ~20 ms; criu's restorer spins forever on short pages
NO_EXPLAIN = "(imgtool.explain is not there yet)"
ROWS: list[Row] = []


@dataclass(frozen=True)
class Row:
    """One restore attempt: what imgtool check predicted and what criu restore did."""

    case: str
    options: tuple[str, ...]
    predicted: str              # "error" or "ok"
    findings: tuple[str, ...]   # "severity:code" of every finding
    actual: str                 # "ok", "failed", "crashed (signal N)" or "hung"
    explained: str              # imgtool explain's cause for the restore log

    @property
    def agree(self) -> bool:
        return (self.predicted == "error") == (self.actual != "ok")


@dataclass
class Attempt:
    row: Row
    report: dict[str, Any]          # imgtool check --json
    result: realcriu.RestoreResult  # (killed by now)
    pid: int | None                 # the restored root's pid, from criu's --pidfile

    def why(self) -> str:
        """What to show when an assertion about this attempt fails."""
        findings = "\n".join(f"  {f['severity']} {f['code']}: {f['message']}" for f in self.report["findings"])
        log = self.result.log_text().splitlines()
        return (f"{self.row}\nfindings:\n{findings or '  (none)'}\nrestore log tail:\n  " + "\n  ".join(log[-12:]))


@dataclass
class Holder:
    """A holder process dumped by the real criu."""

    dumped: realcriu.DumpedProcess
    data: Path                      # the file it holds open (fd 3)

    @property
    def images(self) -> Path:
        return self.dumped.images

    @property
    def pid(self) -> int:
        return self.dumped.pid

    def report(self, kind: str) -> list[str]:
        """The fields of its report line `kind ...` (see holder.c)."""
        return next(line.split()[1:] for line in self.dumped.report if line.split()[0] == kind)


# -- fixtures ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def agreement_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print every attempt of this module as a table once its tests have run."""
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.getplugin("terminalreporter"), plugins.getplugin("capturemanager")
    if not ROWS or reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write("\n")
        reporter.section("imgtool check vs real criu restore", sep="-")
        for line in table_lines(ROWS):
            reporter.write_line(line)


@pytest.fixture
def dump_holder(criu: Path, holder_binary: Path, tmp_path: Path) -> Callable[..., Holder]:
    """Start holder with these arguments (the data file added), dump it with the real criu; fail if that fails."""
    def dump(*args: str, dump_opts: Sequence[str] = (), shell: realcriu.Shell | None = None,
             exe: Path | None = None, name: str = "images") -> Holder:
        data = tmp_path / f"{name}.data"
        data.write_text(DATA)
        argv = [exe or holder_binary, *args, "-m", MEMORY_KIB, data]
        dumped = realcriu.dump_process(criu, argv, tmp_path / name, extra_opts=dump_opts, shell=shell)
        assert dumped.ok, f"criu dump {shlex.join(dump_opts)} exited {dumped.returncode}:\n{dumped.log_text()[-3000:]}"
        return Holder(dumped, data)
    return dump


@pytest.fixture(scope="session")
def holder_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two builds of holder.c, identical but for their build-IDs (so of the same size, which criu checks first)."""
    where = tmp_path_factory.mktemp("holder-builds")
    builds = tuple(realcriu.build_holder(where, f"holder-{c}", [f"-Wl,--build-id=0x{c * 40}"]) for c in "ab")
    first, second = builds
    assert first.stat().st_size == second.stat().st_size
    assert build_id(first) != build_id(second)
    return first, second


# -- running check, restore and explain --------------------------------------------------------------------------------

def predict(criu: Path, images: Path, options: Sequence[str], capsys: pytest.CaptureFixture[str],
            new_session: bool = False, shell: realcriu.Shell | None = None) -> dict[str, Any]:
    """`imgtool check --json` on the images: in-process, or in the session the restore that follows runs in."""
    argv = ["check", str(images), "--criu", str(criu), "--json", "--", *options]
    if new_session or shell:
        status, out, err, _ = realcriu.run([sys.executable, "-m", "imgtool", *argv], 60, new_session, shell,
                                           cwd=realcriu.REPO)
    else:
        capsys.readouterr()
        status = cli.main(argv)
        out, err = capsys.readouterr()
    assert status in (0, 1), f"imgtool check exited {status}: {err}"
    return json.loads(out)


def outcome(result: realcriu.RestoreResult) -> str:
    if result.timed_out:
        return "hung"
    if result.returncode < 0:
        return f"crashed (signal {-result.returncode})"
    return "ok" if result.ok else "failed"


def explained(result: realcriu.RestoreResult) -> str:
    """The cause `imgtool explain` gives for the restore log ("none" when it reads a success)."""
    if explain is None:
        return NO_EXPLAIN
    return explain.explain_file(result.log).cause if result.log.exists() else "(no log)"


def attempt(case: str, criu: Path, images: Path, options: Sequence[str], capsys: pytest.CaptureFixture[str], *,
            new_session: bool = False, shell: realcriu.Shell | None = None,
            inspect: Callable[[int], None] | None = None) -> Attempt:
    """Predict, restore for real, record the row; `inspect` sees the restored pid before it is killed.
    check and criu restore run in our session, in one of their own (new_session) or in shell's."""
    report = predict(criu, images, options, capsys, new_session, shell)
    result = realcriu.restore(criu, images, options, timeout=HANG_TIMEOUT, new_session=new_session, shell=shell)
    predicted = "error" if report["errors"] else "ok"
    findings = tuple(f"{f['severity']}:{f['code']}" for f in report["findings"])
    row = Row(case, tuple(options), predicted, findings, outcome(result), explained(result))
    ROWS.append(row)
    pid = result.pid
    try:
        if inspect is not None and result.ok:
            inspect(pid)
    finally:
        result.kill()
    return Attempt(row, report, result, pid)


def expect(done: Attempt, *findings: str, cause: str | None = None) -> None:
    """The prediction agrees with criu; `findings` ("severity:code") are among the findings; explain's cause.

    cause=None: a success must read as one ("none"); for a failure imgtool explain has no rule naming it (yet),
    so only that it does not read as a success is checked.
    """
    row = done.row
    assert row.agree, f"imgtool check predicted {row.predicted}, criu restore {row.actual}:\n{done.why()}"
    missing = [f for f in findings if f not in row.findings]
    assert not missing, f"expected finding(s) {missing}:\n{done.why()}"
    if row.explained == NO_EXPLAIN:
        return
    if cause is not None:
        assert row.explained == cause, f"imgtool explain says {row.explained!r}, expected {cause!r}"
    else:
        assert (row.explained == "none") == (row.actual == "ok"), f"imgtool explain says {row.explained!r}"


def expect_fixed(done: Attempt) -> None:
    """The fix the hint names works: no error predicted, and criu restore succeeds."""
    assert (done.row.predicted, done.row.actual) == ("ok", "ok"), done.why()


def copy_images(holder: Holder, name: str) -> Path:
    """A copy of the dump to damage (the original stays as it was)."""
    copy = holder.images.with_name(name)
    shutil.copytree(holder.images, copy)
    return copy


def read_memory(pid: int, address: int, size: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(address)
        return mem.read(size)


def assert_memory_intact(holder: Holder) -> Callable[[int], None]:
    """An inspect callback: the restored holder has its memory pages back (HOLDER-PAGE-000000 ...)."""
    address, size = (int(x, 0) for x in holder.report("memory"))

    def check(pid: int) -> None:
        for index in (0, size // PAGE - 1):
            page = read_memory(pid, address + index * PAGE, 18)
            assert page == f"HOLDER-PAGE-{index:06d}".encode(), f"page {index} of the restored memory: {page!r}"
    return check


# -- 1: clean ----------------------------------------------------------------------------------------------------------

def test_clean(criu: Path, dump_holder: Callable[..., Holder], capsys: pytest.CaptureFixture[str],
               tmp_path: Path) -> None:
    holder = dump_holder()
    done = attempt("1 clean", criu, holder.images, [], capsys, inspect=assert_memory_intact(holder))
    expect(done)
    assert done.report["findings"] == [], done.why()
    assert done.pid == holder.pid

    # end to end: imgtool restore checks, then runs criu restore with the options passed through
    restore_with_imgtool(criu, holder, holder.images, tmp_path)


def restore_with_imgtool(criu: Path, holder: Holder, source: Path, tmp_path: Path) -> None:
    """``imgtool restore SOURCE`` (the images, or an archive of them) brings the holder back with its memory."""
    pidfile = tmp_path / "imgtool-restore.pid"
    realcriu.become_subreaper()
    status = cli.main(["restore", str(source), "--criu", str(criu), "--", "--restore-detached",
                       "--pidfile", str(pidfile), "--work-dir", str(tmp_path)])
    restored = realcriu.adopt(holder.images, int(pidfile.read_text())) if pidfile.exists() else None
    try:
        assert status == 0, f"imgtool restore exited {status}"
        assert restored is not None and restored.pid == holder.pid and restored.alive()
        assert_memory_intact(holder)(holder.pid)
    finally:
        if restored is not None:
            restored.kill()
    assert not restored.alive()


@pytest.mark.parametrize("kind", ["tar", "tar.zst"])
def test_restore_from_an_archive(criu: Path, dump_holder: Callable[..., Holder], tmp_path: Path, kind: str) -> None:
    """``imgtool restore ARCHIVE``: criu reads every pages file, so the archive is unpacked whole for it (other
    commands read the pages in place or not at all); the restored memory is the dumped memory."""
    import tarfile

    import zstandard

    holder = dump_holder()
    archive = tmp_path / f"checkpoint.{kind}"
    with open(archive, "wb") as raw:
        out = zstandard.ZstdCompressor().stream_writer(raw, closefd=False) if kind == "tar.zst" else raw
        with tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(holder.images, arcname="checkpoint")
        if out is not raw:
            out.close()
    restore_with_imgtool(criu, holder, archive, tmp_path)


# -- 2-5: the files it uses --------------------------------------------------------------------------------------------

def test_open_file_deleted(criu: Path, dump_holder: Callable[..., Holder],
                           capsys: pytest.CaptureFixture[str]) -> None:
    holder = dump_holder()
    holder.data.unlink()
    expect(attempt("2 open file deleted", criu, holder.images, [], capsys), "error:host-file-missing",
           cause="file-missing")
    # imgtool restore refuses, and criu never runs: the pid stays free
    assert cli.main(["restore", str(holder.images), "--criu", str(criu), "--", "--restore-detached"]) == 1
    assert "refusing to restore" in capsys.readouterr().err
    assert not Path(f"/proc/{holder.pid}").exists()
    holder.data.write_text(DATA)
    expect_fixed(attempt("2 open file deleted, put back", criu, holder.images, [], capsys))


def test_open_file_resized(criu: Path, dump_holder: Callable[..., Holder],
                           capsys: pytest.CaptureFixture[str]) -> None:
    holder = dump_holder()
    holder.data.write_text(DATA + "more\n")
    expect(attempt("3 open file resized", criu, holder.images, [], capsys), "error:host-file-size",
           cause="file-bad-size")
    holder.data.write_text(DATA)
    expect_fixed(attempt("3 open file resized, put back", criu, holder.images, [], capsys))


def test_open_file_chmod(criu: Path, dump_holder: Callable[..., Holder], capsys: pytest.CaptureFixture[str]) -> None:
    holder = dump_holder()
    holder.data.chmod(0o600)
    done = attempt("4 open file chmod 600", criu, holder.images, [], capsys)
    expect(done, "error:host-file-mode", cause="file-bad-mode")
    assert "--skip-file-rwx-check" in _finding(done, "host-file-mode")["hint"]
    expect_fixed(attempt("4 open file chmod 600", criu, holder.images, ["--skip-file-rwx-check"], capsys))


def test_executable_rebuilt(criu: Path, dump_holder: Callable[..., Holder], holder_builds: tuple[Path, Path],
                            capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The executable replaced by a build of the same size with another build-ID: criu compares build-IDs."""
    exe = tmp_path / "holder"
    shutil.copy2(holder_builds[0], exe)
    holder = dump_holder(exe=exe)
    shutil.copy2(holder_builds[1], exe)
    done = attempt("5 executable: other build-ID", criu, holder.images, [], capsys)
    expect(done, "error:host-file-build-id", cause="file-bad-build-id")
    assert "--file-validation filesize" in _finding(done, "host-file-build-id")["hint"]
    expect_fixed(attempt("5 executable: other build-ID", criu, holder.images, ["--file-validation", "filesize"],
                         capsys))


def _finding(done: Attempt, code: str) -> dict[str, Any]:
    return next(f for f in done.report["findings"] if f["code"] == code)


# -- 6: its pid --------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def pid_occupied(pid: int) -> Iterator[subprocess.Popen[bytes]]:
    """A `sleep` running with exactly this pid (via /proc/sys/kernel/ns_last_pid, its old value put back)."""
    last = Path("/proc/sys/kernel/ns_last_pid")
    old, proc = last.read_text(), None
    try:
        for _ in range(20):
            last.write_text(str(pid - 1))
            proc = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
            if proc.pid == pid:
                break
            proc.kill()
            proc.wait()
            proc = None
    finally:
        last.write_text(old)
    if proc is None:
        pytest.fail(f"could not start a process with pid {pid}")
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_pid_taken(criu: Path, dump_holder: Callable[..., Holder], capsys: pytest.CaptureFixture[str]) -> None:
    holder = dump_holder()
    with pid_occupied(holder.pid):
        done = attempt("6 pid taken by another process", criu, holder.images, [], capsys)
    expect(done, "error:host-pid-taken", cause="pid-in-use")
    expect_fixed(attempt("6 pid taken, then freed", criu, holder.images, [], capsys))


# -- 7: a TCP connection -----------------------------------------------------------------------------------------------

def test_tcp_established(criu: Path, dump_holder: Callable[..., Holder], capsys: pytest.CaptureFixture[str],
                         tmp_path: Path) -> None:
    """Dumped with --tcp-established (--network-lock skip: no iptables needed; restore takes it from the images)."""
    holder = dump_holder("-t", dump_opts=["--tcp-established", "--network-lock", "skip"])
    expect(attempt("7 TCP connection, no --tcp-established", criu, holder.images, [], capsys),
           "error:option-tcp-established", cause="tcp-established")
    expect_fixed(attempt("7 TCP connection", criu, holder.images, ["--tcp-established"], capsys))
    restore_with_auto_options(criu, holder, tmp_path, capsys)


def restore_with_auto_options(criu: Path, holder: Holder, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """imgtool restore --auto-options adds what the checks name (--tcp-established) and the restore succeeds."""
    pidfile = work / "auto.pid"
    realcriu.become_subreaper()
    status = cli.main(["restore", str(holder.images), "--criu", str(criu), "--auto-options", "--",
                       "--restore-detached", "--pidfile", str(pidfile), "--work-dir", str(work)])
    restored = realcriu.adopt(holder.images, int(pidfile.read_text())) if pidfile.exists() else None
    try:
        assert "adding criu options: --tcp-established" in capsys.readouterr().err
        assert status == 0 and restored is not None and restored.alive()
    finally:
        if restored is not None:
            restored.kill()


# -- 8-10: damaged images ----------------------------------------------------------------------------------------------

def test_pages_truncated(criu: Path, dump_holder: Callable[..., Holder], capsys: pytest.CaptureFixture[str]) -> None:
    """Two pages short: criu's restorer loops on preadv() returning 0 (pie/restorer.c), so restore never ends."""
    holder = dump_holder()
    damaged = copy_images(holder, "truncated")
    pages = damaged / "pages-1.img"
    os.truncate(pages, pages.stat().st_size - 2 * PAGE)
    done = attempt("8 pages file 2 pages short", criu, damaged, [], capsys)
    expect(done, "error:image-pages-short", cause="pages-eof")
    assert done.row.actual == "hung"
    spun = done.result.leftovers.get(holder.pid, 0.0)
    # a sleeping task uses ~0 s; a spinning one a full core when the machine is idle, less when it is busy
    assert spun > HANG_TIMEOUT / 10, f"the restored task used {spun:.1f} s of CPU in {HANG_TIMEOUT} s, not spinning"
    assert not Path(f"/proc/{holder.pid}").exists(), "the spinning restorer was not killed"
    expect_fixed(attempt("8 pages file: original images", criu, holder.images, [], capsys))


def test_pagemap_entry_removed(criu: Path, dump_holder: Callable[..., Holder],
                               capsys: pytest.CaptureFixture[str]) -> None:
    """The entry of the holder's memory dropped: the pages after it are read from the wrong offsets."""
    holder = dump_holder()
    damaged = copy_images(holder, "pagemap-edited")
    address = int(holder.report("memory")[0], 0)
    removed = drop_pagemap_entry(damaged / f"pagemap-{holder.pid}.img", address)
    assert removed["flags"] & PE_PRESENT
    expect(attempt("9 pagemap entry removed", criu, damaged, [], capsys), "error:image-pages-long",
           cause="pages-misplaced")
    expect_fixed(attempt("9 pagemap entry: original images", criu, holder.images, [], capsys))


def drop_pagemap_entry(path: Path, address: int) -> dict[str, Any]:
    """Re-encode a pagemap image without the entry covering address; return that entry."""
    with Image.open(path) as image:
        document = decode.to_dict(image)
    head, *entries = document["entries"]
    hit = next(e for e in entries if e["vaddr"] <= address < e["vaddr"] + e["nr_pages"] * PAGE)
    document["entries"] = [head, *(e for e in entries if e is not hit)]
    path.write_bytes(encode_dict(document))
    return hit


MISSING = {  # image -> (imgtool check's finding, what criu restore does, imgtool explain's cause)
    "core": ("error:image-missing", "failed", "image-missing"),   # "Unexpected EOF on (empty-image)"
    "fdinfo": ("warning:image-fdinfo-missing", "ok", None),   # criu opens it as empty: no fds at all
    "pstree": ("error:image-missing", "crashed (signal 11)", "image-missing"),
}


@pytest.mark.parametrize("image", sorted(MISSING))
def test_missing_image(criu: Path, dump_holder: Callable[..., Holder], capsys: pytest.CaptureFixture[str],
                       image: str) -> None:
    holder = dump_holder()
    damaged = copy_images(holder, f"without-{image}")
    name = {"core": f"core-{holder.pid}.img", "fdinfo": "fdinfo-2.img", "pstree": "pstree.img"}[image]
    (damaged / name).unlink()
    finding, actual, cause = MISSING[image]

    def no_fds(pid: int) -> None:
        assert os.listdir(f"/proc/{pid}/fd") == [], "criu restored fds without fdinfo"

    done = attempt(f"10 {name} missing", criu, damaged, [], capsys, inspect=no_fds if image == "fdinfo" else None)
    expect(done, finding, cause=cause)
    assert done.row.actual == actual
    expect_fixed(attempt(f"10 {name} missing: original images", criu, holder.images, [], capsys))


# -- 11-13: options the dump needs on restore --------------------------------------------------------------------------

def test_shell_job_same_session(criu: Path, dump_holder: Callable[..., Holder],
                                capsys: pytest.CaptureFixture[str]) -> None:
    """A shell job restored without --shell-job from its own session and process group: criu lets it through."""
    with realcriu.Shell() as shell:
        holder = dump_holder(dump_opts=["--shell-job"], shell=shell)
        expect(attempt("11 shell job, no --shell-job, same session", criu, holder.images, [], capsys, shell=shell),
               "info:option-shell-job")
        expect_fixed(attempt("11 shell job, same session", criu, holder.images, ["--shell-job"], capsys,
                             shell=shell))


def test_shell_job_other_session(criu: Path, dump_holder: Callable[..., Holder],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """From another session criu must recreate the job's process group, whose leader is not in the dump."""
    with realcriu.Shell() as shell:   # alive throughout: its pid is the job's process group
        holder = dump_holder(dump_opts=["--shell-job"], shell=shell)
        expect(attempt("11 shell job, no --shell-job, other session", criu, holder.images, [], capsys,
                       new_session=True), "error:option-shell-job", cause="pid-in-use")
        expect_fixed(attempt("11 shell job, other session", criu, holder.images, ["--shell-job"], capsys,
                             new_session=True))


def _lock_holders() -> set[int]:
    return {int(line.split()[4]) for line in Path("/proc/locks").read_text().splitlines() if "FLOCK" in line}


def test_file_locks(criu: Path, dump_holder: Callable[..., Holder], capsys: pytest.CaptureFixture[str]) -> None:
    """Without --file-locks criu restore succeeds and silently drops the locks: a warning, not an error."""
    holder = dump_holder("-l", dump_opts=["--file-locks"])

    def unlocked(pid: int) -> None:
        assert pid not in _lock_holders(), "criu restored the flock without --file-locks"

    def locked(pid: int) -> None:
        assert pid in _lock_holders(), "criu did not restore the flock with --file-locks"

    done = attempt("12 file lock, no --file-locks", criu, holder.images, [], capsys, inspect=unlocked)
    expect(done, "warning:option-file-locks")
    expect_fixed(attempt("12 file lock", criu, holder.images, ["--file-locks"], capsys, inspect=locked))


@contextlib.contextmanager
def bound_dgram(path: Path) -> Iterator[socket.socket]:
    """A datagram unix socket bound at path (outside the dumped tree), unbound and removed afterwards."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(os.fspath(path))
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def test_external_unix_socket(criu: Path, dump_holder: Callable[..., Holder], capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    """Connected to a datagram socket outside the tree: dump needs --ext-unix-sk, criu 4.2.1 restore does not."""
    peer = tmp_path / "peer.sock"
    with bound_dgram(peer):
        holder = dump_holder("-d", str(peer), dump_opts=["--ext-unix-sk"])
        done = attempt("13 external unix socket, no --ext-unix-sk", criu, holder.images, [], capsys)
        expect(done)
        assert "error:option-ext-unix-sk" not in done.row.findings
        expect_fixed(attempt("13 external unix socket", criu, holder.images, ["--ext-unix-sk"], capsys))
    expect(attempt("13 external unix socket, peer gone", criu, holder.images, ["--ext-unix-sk"], capsys),
           "error:host-unix-peer-missing", cause="unix-connect-failed")
    with bound_dgram(peer):
        expect_fixed(attempt("13 external unix socket, peer bound again", criu, holder.images, ["--ext-unix-sk"],
                             capsys))


def test_unix_connection_in_flight(criu: Path, dump_holder: Callable[..., Holder],
                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A stream connect() to an outside listener that has not accept()ed it: dumps, but never restores."""
    path = tmp_path / "listener.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(os.fspath(path))
        listener.listen(4)
        holder = dump_holder("-u", str(path))
        expect(attempt("13 unix stream in flight to outside", criu, holder.images, ["--ext-unix-sk"], capsys),
               "error:image-unix-peer-missing", cause="unix-peer-unresolved")


# -- the table ---------------------------------------------------------------------------------------------------------

def table_lines(rows: Sequence[Row]) -> list[str]:
    header = ("case", "restore options", "predicted", "actual", "agree", "explain", "findings")
    cells = [(r.case, shlex.join(r.options) or "-", r.predicted, r.actual, "yes" if r.agree else "NO",
              r.explained, " ".join(r.findings) or "-") for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in [header, *cells]]
    agreed = sum(r.agree for r in rows)
    return [*lines, f"agreement: {agreed}/{len(rows)} ({100 * agreed / len(rows):.0f}%)"]


_CHILDREN_BEFORE: set[int] = set()


@pytest.fixture(scope="module", autouse=True)
def _children_before() -> None:
    """Our children before the fault cases ran (e.g. a multiprocessing forkserver of an earlier test)."""
    _CHILDREN_BEFORE.update(realcriu.children_of({os.getpid()}))


def _described(pids: set[int]) -> list[str]:
    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return "?"
    return [f"{pid} {cmdline(pid)}" for pid in sorted(pids)]


def test_agreement() -> None:
    """Last: over every attempt above, check agrees with criu >= 95% and never says OK for a failing restore."""
    if not ROWS:
        pytest.skip("no restore attempts ran (no usable criu?)")
    print("\n".join(table_lines(ROWS)))
    realcriu.kill_all()
    left = realcriu.children_of({os.getpid()}) - _CHILDREN_BEFORE
    assert not left, f"processes the fault cases started are still there: {_described(left)}"
    missed = [r for r in ROWS if r.predicted == "ok" and r.actual != "ok"]
    assert not missed, f"imgtool check said OK, criu restore failed: {missed}"
    assert sum(r.agree for r in ROWS) >= 0.95 * len(ROWS), "\n".join(table_lines(ROWS))
