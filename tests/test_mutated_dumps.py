"""Whole real dumps, damaged: every reading path raises only imgtool errors (the CLI: exit 2), never anything else,
never hangs, never writes outside its temp dir.

Each example takes one REAL dump (samples/, the shared corpus, tests/data) and builds a damaged copy in a temp dir
(unchanged images are symlinked to the originals, so big dumps cost nothing): bit flips, truncation, one entry's
payload replaced or given a huge integer field, magics swapped between images, an image replaced by another
image of the dump, images deleted, parent links that loop, pstree entries repeated as their own parents (a
cycle). Then it runs the library (open, tasks, fds, cwd, memory reads, cmdline) and every reading command (ps,
files, maps, summary, x ps/fds/mems/rss/sk, check --offline, mem search/read/dump).

Default: a fixed set of examples (CI budget); a bigger, random run: IMGTOOL_FUZZ_EXAMPLES=2000.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import HUGE, PB_PAYLOADS, _hostile_field

import imgtool
from imgtool import cli
from imgtool.errors import ImgtoolError
from imgtool.format.image import Image

from corpus import CORPUS, SAMPLES

EXAMPLES = int(os.environ.get("IMGTOOL_FUZZ_EXAMPLES", "80"))
TIMEOUT = 60          # seconds for one example (everything it runs): more is a hang
DATA = Path(__file__).resolve().parent / "data"


def _dumps() -> list[Path]:
    found = [*sorted(SAMPLES.glob("*/images")), DATA / "zombie", DATA / "raw-sockets"]
    if CORPUS.is_dir():   # the corpus repeats some samples: only its own scenarios
        own = {p.parent.name for p in found}
        found += [p for p in sorted(CORPUS.glob("*/images*")) if p.parent.name not in own and p.is_dir()]
        found += sorted(CORPUS.glob("*/extracted/checkpoint"))
    return [p for p in found if (p / "inventory.img").is_file()]


DUMPS = _dumps()


def _images(dump: Path) -> list[str]:
    return sorted(p.name for p in dump.iterdir() if p.is_file() and p.name != "parent" and not p.name.endswith(".log"))


FILES = {d: _images(d) for d in DUMPS}
# Entries (offset, size, message) of the small protobuf images, for payload mutations.


def _frames(path: Path) -> list[tuple[int, int, Any]]:
    if path.stat().st_size > 1 << 20:
        return []
    try:
        with Image.open(path) as img:
            return [(e.offset, e.size, e.message) for e in img.entries()]
    except ImgtoolError:   # raw images (pages, ...)
        return []


# -- building a damaged copy ------------------------------------------------------------------------------------------

def _mutate_bytes(draw: Callable, data: bytearray, frames: list[tuple[int, int, Any]]) -> None:
    how = draw(st.sampled_from(["flip", "flip", "truncate", "huge", "insert", "payload", "field"]))
    if how in ("payload", "field") and frames:
        offset, size, msg = draw(st.sampled_from(frames))
        payload = draw(PB_PAYLOADS) if how == "payload" else _hostile_field(draw, msg)
        data[offset:offset + 4 + size] = struct.pack("<I", len(payload)) + payload
        return
    targets = [off for off, _, _ in frames if off <= len(data)]
    limit = min(len(data), 1 << 16)
    pos = draw(st.one_of(st.integers(0, limit), *[st.sampled_from(targets)] * bool(targets)))
    if how == "truncate":
        del data[pos:]
    elif how == "huge":
        data[pos:pos + 4] = struct.pack("<I", draw(st.sampled_from(HUGE)))
    elif how == "insert":
        data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    elif pos < len(data):
        data[pos] ^= 1 << draw(st.integers(0, 7))


@st.composite
def damaged_dumps(draw: Callable) -> tuple[Path, dict[str, Any]]:
    """(source dump, plan): per file what to write instead ("link", bytes, or None: deleted), and the parent link."""
    source = draw(st.sampled_from(DUMPS), label="dump")
    names = FILES[source]
    plan: dict[str, Any] = dict.fromkeys(names, "link")
    contents: dict[str, bytearray] = {}

    def content(name: str) -> bytearray:
        if name not in contents:
            contents[name] = bytearray((source / name).read_bytes())
        return contents[name]

    parent: str | None = None
    small = [n for n in names if (source / n).stat().st_size <= 1 << 20] or names
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["bytes", "bytes", "bytes", "swap-magic", "replace", "delete", "parent", "twins"]))
        name = draw(st.sampled_from(small))
        if op == "twins" and "pstree.img" in names:   # entries of the same pid, their own parents: a cycle
            frames = _frames(source / "pstree.img")
            if frames:
                twin = type(frames[0][2]).FromString(draw(st.sampled_from(frames))[2].SerializeToString())
                twin.ppid = twin.pid
                payload = twin.SerializeToString()
                content("pstree.img").extend((struct.pack("<I", len(payload)) + payload) * draw(st.integers(1, 3)))
        elif op == "bytes":
            _mutate_bytes(draw, content(name), _frames(source / name))
        elif op == "swap-magic":
            other = draw(st.sampled_from(small))
            a, b = content(name), content(other)
            a[:8], b[:8] = bytes(b[:8]), bytes(a[:8])
        elif op == "replace":
            contents[name] = bytearray(content(draw(st.sampled_from(small))))
        elif op == "delete":
            plan[name] = None
            contents.pop(name, None)
        else:
            parent = draw(st.sampled_from([".", "parent", "../images", "../loop", "/nonexistent", "\x01"]))
    for name, data in contents.items():
        if plan[name] is not None:
            plan[name] = bytes(data)
    return source, {"files": plan, "parent": parent}


def _build(tmp: Path, source: Path, plan: dict[str, Any]) -> Path:
    images = tmp / "images"
    images.mkdir()
    for name, what in plan["files"].items():
        if what == "link":
            (images / name).symlink_to(source / name)
        elif what is not None:
            (images / name).write_bytes(what)
    original_parent = source / "parent"
    if plan["parent"] is not None:
        if plan["parent"] == "../loop":   # images -> loop -> images
            loop = tmp / "loop"
            loop.mkdir()
            (loop / "inventory.img").symlink_to(source / "inventory.img")
            (loop / "parent").symlink_to("../images")
        (images / "parent").symlink_to(plan["parent"])
    elif original_parent.exists() or original_parent.is_symlink():
        with contextlib.suppress(OSError, ImgtoolError):
            from imgtool.model.dump import parent_path

            target = parent_path(source)
            if target is not None:
                (images / "parent").symlink_to(target)
    return images


# -- running everything ----------------------------------------------------------------------------------------------

class _Out(io.StringIO):
    """stdout for the commands: text, and a binary buffer (mem read writes raw bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()

    def isatty(self) -> bool:
        return False


_STEPS: list[Callable[[Any], object]] = [
    lambda task: (task.pid, task.comm, task.state, task.threads, task.children),
    lambda task: [fd.to_json() for fd in task.fds], lambda task: (task.cwd, task.root),
    lambda task: task.cmdline, lambda task: _read_memory(task)]


def _library(images: Path) -> None:
    try:
        with imgtool.open(images) as dump:
            for task in dump.tasks:
                for step in _STEPS:
                    with contextlib.suppress(ImgtoolError):
                        step(task)
    except ImgtoolError:
        pass


def _read_memory(task: Any) -> None:
    space = task.memory
    for vma in list(space.vmas)[:6]:
        with contextlib.suppress(ImgtoolError):
            space.read(vma.start, max(0, min(vma.end - vma.start, 8192)), True)   # end < start: damaged mm


COMMANDS = [["ps", "{}"], ["ps", "--json", "{}"], ["files", "{}"], ["files", "--json", "{}"], ["maps", "{}"],
            ["summary", "{}"], ["summary", "--json", "{}"], ["x", "{}", "ps"], ["x", "{}", "fds"],
            ["x", "{}", "mems"], ["x", "{}", "rss"], ["x", "{}", "sk"], ["check", "--offline", "{}"],
            ["mem", "search", "{}", "--string", "ELF", "-m", "3"]]


@functools.cache
def _target(source: Path) -> tuple[str, str]:
    """A pid and an address in its first VMA, from the undamaged dump (for mem read and mem dump)."""
    try:
        with imgtool.open(source) as dump:
            task = next(t for t in dump.tasks if t.mm is not None and t.mm.vmas)
            return str(task.pid), hex(task.mm.vmas[0].start)
    except (ImgtoolError, StopIteration):
        return "1", "0x1000"


def _commands(images: Path, out_dir: Path, source: Path | None = None) -> Iterator[tuple[list[str], int, str]]:
    pid, addr = _target(source or images)
    out_file = str(out_dir / "mem.out")
    for command in [*COMMANDS, ["mem", "read", "{}", pid, addr, "4096", "--zero-fill"],
                    ["mem", "dump", "{}", pid, "--vma", addr, "-o", out_file]]:
        argv = [str(images) if a == "{}" else a for a in command]
        out, err = _Out(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(argv)
        yield argv, status, err.getvalue()


class Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_damaged(source: Path, plan: dict[str, Any], tmp: Path) -> None:
    images = _build(tmp, source, plan)
    before = set(os.listdir("."))
    with _time_limit(TIMEOUT):
        _library(images)
        for argv, status, err in _commands(images, tmp, source):
            assert status in (0, 1, 2), (argv, status)
            assert "Traceback" not in err, (argv, err)
            if status == 2:
                assert err.startswith("imgtool: error: ") and err.count("\n") == 1, (argv, err)
    assert set(os.listdir(".")) == before


def test_the_dumps_are_here(tmp_path: Path) -> None:
    assert len(DUMPS) >= 7
    for dump in DUMPS:   # undamaged: every command works (a pre-dump or a folder of several: one error line)
        with _time_limit(TIMEOUT):
            for argv, status, err in _commands(dump, tmp_path):
                assert "Traceback" not in err and status in (0, 1, 2), (argv, err)


@settings(max_examples=EXAMPLES, deadline=None, derandomize="IMGTOOL_FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                                 HealthCheck.function_scoped_fixture])
@given(case=damaged_dumps())
def test_damaged_dumps_raise_only_imgtool_errors(case: tuple[Path, dict[str, Any]],
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    source, plan = case
    check_damaged(source, plan, tmp_path_factory.mktemp("damaged"))
