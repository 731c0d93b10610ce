"""Archives opened without unpacking what is not read (model.archive.open_archive, the path Dump.open takes)."""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import zstandard
from test_archive import (
    HOSTILE,
    PODMAN,
    VALID,
    Hostile,
    Sandbox,
    dir_,
    file,
    gnu_sparse,
    info,
    needs_podman,
    tar_bytes,
    write,
)

import imgtool
from imgtool.errors import MissingImageError, ParentLinkError, UsageError
from imgtool.format import located
from imgtool.memory.search import any_of, search_dump
from imgtool.memory.space import cmdline_of
from imgtool.model import archive
from imgtool.model.archive import Archive, ArchiveError, ArchiveLimitError, Limits, open_archive, remove_tree
from imgtool.model.dump import Dump
from imgtool.testing.synth import generate

MiB, GiB = 1 << 20, 1 << 30
NEEDLE = b"INPLACE-NEEDLE-51d2"


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """test_archive's sandbox: tempfile's directory inside tmp_path, with an "outside" sentinel around it."""
    box = Sandbox(tmp_path, tmp_path / "archives", tmp_path / "outside", tmp_path / "outside" / "tmp")
    for d in (box.archives, box.tmp):
        d.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(box.tmp))
    return box


def _wchar() -> int:
    """Bytes this process has passed to write() so far (any file): counts what unpacking writes."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


@pytest.fixture(scope="module")
def real_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real dump: 2 tasks, 4 MiB of pages, a needle."""
    return generate(tmp_path_factory.mktemp("dump") / "d", seed=3, tasks=2, gib=1 / 256, needle=NEEDLE)[0]


def _add_dir(tar: tarfile.TarFile, dump: Path, prefix: str = "checkpoint") -> None:
    tar.add(dump, arcname=prefix)


def _tar(path: Path, dump: Path, extra: list[tuple[tarfile.TarInfo, object]] = (), kind: str = "tar") -> Path:
    """``dump`` as checkpoint/ in a tar (``kind`` "tar" or "zstd"), then the ``extra`` members (streamed)."""
    with open(path, "wb") as raw:
        out = zstandard.ZstdCompressor(level=1).stream_writer(raw, closefd=False) if kind == "zstd" else raw
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT, copybufsize=MiB) as tar:
            _add_dir(tar, dump)
            for ti, data in extra:
                tar.addfile(ti, data)
        if kind == "zstd":
            out.close()
    return path


def _hits(d: Dump) -> int:
    return sum(1 for _ in search_dump(d, any_of([NEEDLE])))


def _facts(d: Dump) -> tuple[list[tuple[int, str, list[str]]], int]:
    return [(t.pid, t.comm, cmdline_of(t)) for t in d.tasks], _hits(d)


# -- what is read, what is written --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tar", "zstd"])
def test_same_answers_as_the_directory(real_dump: Path, sandbox: Sandbox, kind: str) -> None:
    path = _tar(sandbox.archives / f"a.{kind}", real_dump, kind=kind)
    with Dump.open(real_dump) as d:
        expected = _facts(d)
    with Dump.open(path) as d:
        assert _facts(d) == expected and expected[1] == 1
        assert isinstance(d._archive, Archive)
    assert list(sandbox.tmp.iterdir()) == []


def test_plain_tar_is_read_in_place(real_dump: Path, sandbox: Sandbox) -> None:
    """Every member of a plain tar, images and engine files as well as pages files: nothing is written."""
    config = json.dumps({"id": "c0ffee", "rootfsImageName": "busybox"}).encode()
    path = _tar(sandbox.archives / "a.tar", real_dump, [(info("config.dump", size=len(config)), io.BytesIO(config))])
    with Dump.open(real_dump) as d:
        expected = _facts(d), [f.to_json() for t in d.tasks for f in t.fds]
    before = _wchar()
    with Dump.open(path) as d:
        files = [p for p in d.root.rglob("*") if p.is_file()]
        assert len(files) > 10 and all(p.stat().st_blocks == 0 for p in files)     # placeholders: holes
        assert [p.stat().st_size for p in d.path.iterdir()] == [(real_dump / p.name).stat().st_size
                                                                for p in d.path.iterdir()]
        assert (_facts(d), [f.to_json() for t in d.tasks for f in t.fds]) == expected and expected[0][1] == 1
        assert d.metadata["config.dump"]["rootfsImageName"] == "busybox"
        assert d._archive.written == 0 and all(p.stat().st_blocks == 0 for p in files)
    assert _wchar() - before < 64 * 1024        # nothing written (a few KB of pytest noise)


def test_compressed_pages_unpacked_once_on_first_memory_read(real_dump: Path, sandbox: Sandbox,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _tar(sandbox.archives / "a.tar.zst", real_dump, kind="zstd")
    passes = []
    real = archive._tar_stream

    def counting(*args: object) -> object:
        passes.append(args[0])
        return real(*args)

    monkeypatch.setattr(archive, "_tar_stream", counting)
    with Dump.open(real_dump) as d:
        argv = [cmdline_of(t) for t in d.tasks]
    with Dump.open(path) as d:
        assert len(passes) == 1 and [t.comm for t in d.tasks]                # pass 1: small members only
        held = [p.stat().st_blocks * 512 for p in d.path.glob("pages-*.img")]
        assert held and all(n <= 64 * 1024 for n in held)                   # holes but for argv
        assert [cmdline_of(t) for t in d.tasks] == argv and argv[0]
        assert len(passes) == 1                                            # argv: pass 1 kept it
        assert _hits(d) == 1
        assert len(passes) == 2
        assert _hits(d) == 1 and _facts(d)[1] == 1
        assert len(passes) == 2                                            # never a second time


@pytest.mark.parametrize("dirty", [0.01, 0.5])
def test_compressed_chain_argv_through_the_parents(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch,
                                                    dirty: float) -> None:
    """An incremental dump leaves unchanged argv pages to its parent dump (PE_PARENT): pass 1 still serves argv,
    from the tails of the parents' pages files in the same archive; memory reads still unpack once."""
    dumps = generate(sandbox.base / "chain", seed=5, tasks=2, gib=1 / 256, chain=3, dirty=dirty, needle=NEEDLE)
    path = sandbox.archives / "chain.tar.zst"
    with open(path, "wb") as raw:
        out = zstandard.ZstdCompressor(level=1).stream_writer(raw, closefd=False)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            for d in dumps:
                _add_dir(tar, d, d.name)
        out.close()
    passes = []
    real = archive._tar_stream
    monkeypatch.setattr(archive, "_tar_stream", lambda *args: (passes.append(args[0]), real(*args))[1])
    for name in ("d1", "d2"):
        with Dump.open(sandbox.base / "chain" / name) as d:
            expected = _facts(d)
        passes.clear()
        with Dump.open(path, name) as d:
            assert [cmdline_of(t) for t in d.tasks] == [argv for _, _, argv in expected[0]]
            assert len(passes) == 1                                      # argv: pass 1 kept it
            assert _facts(d) == expected and len(passes) == 2
    assert list(sandbox.tmp.iterdir()) == []


ZERO_MEMBERS = [("rootfs-diff.tar", "an artifact nobody reads"), ("checkpoint/pages-99.img", "a pages file no "
                                                                                              "pagemap names")]


@pytest.mark.parametrize("name", [n for n, _ in ZERO_MEMBERS])
def test_unreferenced_10gib_member_sparse_tar(real_dump: Path, sandbox: Sandbox, name: str) -> None:
    path = sandbox.archives / "big.tar"
    body = _tar(sandbox.archives / "base.tar", real_dump).read_bytes()[:-1024]   # without the end blocks
    body = body[:len(body) - len(body) % 512]
    while body.endswith(bytes(512)):
        body = body[:-512]
    write(path, body + gnu_sparse(name, 10 * GiB) + bytes(1024))
    assert path.stat().st_size < 16 * MiB
    start, before = time.monotonic(), _wchar()
    with Dump.open(path) as d:
        assert len(d.tasks) == 2
        assert _hits(d) == 1
    assert _wchar() - before < 10 * MiB
    assert time.monotonic() - start < 10
    assert list(sandbox.tmp.iterdir()) == []


def _zeros_zstd(path: Path, dump: Path, name: str, size: int, first: bool = False) -> Path:
    """A tar.zst of ``dump`` (as checkpoint/) and a member ``name`` of ``size`` zeros (a multiple of 64 MiB),
    built at once from one compressed 64 MiB frame of zeros repeated: the archive stays a few MB."""
    zstd = zstandard.ZstdCompressor(level=3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info(name, size=size))          # the header alone
        header = buf.getvalue()[:tar.offset]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _add_dir(tar, dump)
        body = buf.getvalue()[:tar.offset]
    zeros = zstd.compress(bytes(64 * MiB)) * (size // (64 * MiB))
    parts = [header, zeros, body] if first else [body, header, zeros]
    path.write_bytes(b"".join(p if p is zeros else zstd.compress(p) for p in parts) + zstd.compress(bytes(1024)))
    return path


@pytest.mark.parametrize("name", [n for n, _ in ZERO_MEMBERS])
def test_unreferenced_10gib_member_zstd(real_dump: Path, sandbox: Sandbox, name: str) -> None:
    path = _zeros_zstd(sandbox.archives / "big.tar.zst", real_dump, name, 10 * GiB)
    assert path.stat().st_size < 8 * MiB
    before = _wchar()
    with Dump.open(path) as d:
        assert [t.comm for t in d.tasks]
        assert _wchar() - before < 10 * MiB
        assert _hits(d) == 1           # memory: only the pages files pagemaps name are unpacked
        assert (d.metadata["other"] == ["checkpoint/", "rootfs-diff.tar"]) == (name == "rootfs-diff.tar")
        assert (d.root / name).stat().st_size == 10 * GiB         # a hole of its size, for the size views
        assert (d.root / name).stat().st_blocks * 512 < MiB
    assert _wchar() - before < 20 * MiB
    assert list(sandbox.tmp.iterdir()) == []


def test_pages_file_bounded_by_its_pagemaps(real_dump: Path, sandbox: Sandbox) -> None:
    """A pages file claiming far more than its pagemaps name is unpacked only as far as they name."""
    pages = sorted(real_dump.glob("pages-*.img"))[0]
    copy = sandbox.base / "liar"
    copy.mkdir()
    for f in real_dump.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    with open(copy / pages.name, "ab") as f:
        f.truncate(pages.stat().st_size + 512 * MiB)        # 512 MiB more of zeros than the pagemap names
    path = _tar(sandbox.archives / "liar.tar.zst", copy, kind="zstd")
    with Dump.open(path) as d:
        assert _hits(d) == 1
        assert (d.path / pages.name).stat().st_blocks * 512 <= pages.stat().st_size * 16   # 64 KiB a named page


# -- hostile archives, as the old path refused them --------------------------------------------------------


@pytest.mark.parametrize(("build", "error", "member"), [pytest.param(*h[1:], id=h[0]) for h in HOSTILE])
def test_hostile_member_refused(sandbox: Sandbox, build: Hostile, error: type[ArchiveError], member: str) -> None:
    path = write(sandbox.archives / "evil.tar", tar_bytes(build(sandbox)))
    before = sandbox.listing()
    with pytest.raises(error) as err:
        open_archive(path)
    assert err.value.member == member
    sandbox.assert_untouched(before)


def test_limits_still_bound_what_is_written(sandbox: Sandbox) -> None:
    data = tar_bytes([*VALID, file("checkpoint/big.img", b"z" * 4096)])
    path = write(sandbox.archives / "big.tar.zst", zstandard.ZstdCompressor().compress(data))
    with pytest.raises(ArchiveLimitError):
        open_archive(path, limits=Limits(max_member_bytes=1024))
    assert list(sandbox.tmp.iterdir()) == []
    # a plain tar writes nothing, so the same member is no limit's business: it is read where it is
    plain = write(sandbox.archives / "big.tar", data)
    with open_archive(plain, limits=Limits(max_member_bytes=1024)) as ar:
        big = ar.images / "big.img"
        assert ar.written == 0 and big.stat().st_blocks == 0
        assert b"".join(located.read_chunks(big, ar.backing(big))) == b"z" * 4096


def test_self_referencing_parent_link(real_dump: Path, sandbox: Sandbox) -> None:
    for target in (".", "parent", "../checkpoint"):
        extra = [(info("checkpoint/parent", tarfile.SYMTYPE, linkname=target), None)]
        path = _tar(sandbox.archives / "loop.tar", real_dump, extra)
        with Dump.open(path) as d:
            assert len(d.tasks) == 2
            with pytest.raises(ParentLinkError):
                d.parent  # noqa: B018
            assert _hits(d) == 1      # the memory walk does not follow the loop
        assert list(sandbox.tmp.iterdir()) == []


def test_2000_levels_of_nesting(sandbox: Sandbox) -> None:
    deep = "/".join(["d"] * 2000)
    members = [*VALID, *(dir_("/".join(["d"] * n)) for n in range(1, 2001)), file(deep + "/leaf", b"x")]
    path = write(sandbox.archives / "deep.tar", tar_bytes(members))
    with open_archive(path) as ex:
        assert ex.metadata["other"] == ["checkpoint/", "d/"]
    assert list(sandbox.tmp.iterdir()) == []
    with archive.extract(path):
        pass
    assert list(sandbox.tmp.iterdir()) == []


def test_remove_tree_deep_and_long(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(2000):      # deeper than the recursion limit, longer than PATH_MAX
            os.mkdir("x" * 20, dir_fd=fd)
            sub = os.open("x" * 20, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = sub
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as f:
            f.write("x")
    finally:
        os.close(fd)
    remove_tree(tmp_path / ("x" * 20))
    assert list(tmp_path.iterdir()) == []


# -- signals in the middle of a pass -----------------------------------------------------------------------

_OPEN = """
import sys
from imgtool.model.archive import open_archive
a = open_archive(sys.argv[1])
print("opened", flush=True)
a.unpack_later()
"""


@pytest.fixture(scope="module")
def slow_archive(real_dump: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 GiB of zeros before the dump: each pass takes seconds."""
    return _zeros_zstd(tmp_path_factory.mktemp("slow") / "slow.tar.zst", real_dump, "rootfs-diff.tar", 10 * GiB,
                       first=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
@pytest.mark.parametrize("phase", ["first pass", "pages pass"])
def test_signal_in_a_pass_leaves_nothing(slow_archive: Path, tmp_path: Path, sig: int, phase: str) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop(archive.CACHE_ENV, None)
    # the signal's default disposition in the child, as in a terminal (under nohup SIGHUP is ignored, rightly)
    proc = subprocess.Popen([sys.executable, "-c", _OPEN, str(slow_archive)], env=env, stdout=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    assert proc.stdout is not None
    if phase == "first pass":
        deadline = time.monotonic() + 30
        while not list(tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        assert proc.stdout.readline() == b"opened\n"
        assert list(tmp.iterdir())
    time.sleep(0.3)
    assert proc.poll() is None, "the pass ended before the signal"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert list(tmp.iterdir()) == []


# -- the cache -----------------------------------------------------------------------------------------------


def test_cache_unpacks_once(real_dump: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _tar(sandbox.archives / "a.tar.zst", real_dump, kind="zstd")
    cache = sandbox.base / "cache"
    monkeypatch.setenv(archive.CACHE_ENV, str(cache))
    passes = []
    real = archive._tar_stream

    def counting(*args: object) -> object:
        passes.append(args[0])
        return real(*args)

    monkeypatch.setattr(archive, "_tar_stream", counting)
    for _ in range(3):
        with Dump.open(path) as d:
            assert _hits(d) == 1
    assert len(passes) == 2                      # small members once, pages files once, for three commands
    assert list(sandbox.tmp.iterdir()) == []
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1
    os.utime(path, ns=(0, 0))                     # another archive now: unpacked anew
    with Dump.open(path) as d:
        assert [t.comm for t in d.tasks]
    assert len(passes) == 3
    monkeypatch.delenv(archive.CACHE_ENV)
    with Dump.open(path) as d:                    # off by default
        assert [t.comm for t in d.tasks]
    assert len(passes) == 4 and len([p for p in cache.iterdir() if p.is_dir()]) == 2


@pytest.mark.parametrize("kind", ["tar", "zstd"])
def test_archive_of_several_dumps_is_one_named_dump(real_dump: Path, sandbox: Sandbox, kind: str) -> None:
    """As with a directory: without --dump an error naming the dumps, with it that dump (no silent first pick)."""
    path = sandbox.archives / ("two.tar" if kind == "tar" else "two.tar.zst")
    with open(path, "wb") as raw:
        out = zstandard.ZstdCompressor(level=1).stream_writer(raw, closefd=False) if kind == "zstd" else raw
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            _add_dir(tar, real_dump, "first")
            _add_dir(tar, real_dump, "second")
        if out is not raw:
            out.close()
    with pytest.raises(UsageError, match=r"two\.tar(\.zst)? holds several dumps \(first, second\): name one, "
                                         r"with --dump first"):
        Dump.open(path)
    with pytest.raises(MissingImageError, match=r"no CRIU image directory named third .*holds: first, second"):
        Dump.open(path, "third")
    with Dump.open(path, "second") as d:
        assert d.path.name == "second" and _hits(d) == 1
    assert list(sandbox.tmp.iterdir()) == []           # the refused opens left nothing behind


def test_outputs_name_the_archive_not_the_temp_dir(real_dump: Path, sandbox: Sandbox) -> None:
    """summary, check and errors say where the images are as the user finds them: ARCHIVE:FOLDER."""
    path = _tar(sandbox.archives / "a.tar.zst", real_dump, kind="zstd")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "imgtool", *args], capture_output=True, text=True)

    assert json.loads(run("summary", str(path), "--json").stdout)["images"] == f"{path}:checkpoint"
    assert json.loads(run("check", "--offline", str(path), "--json").stdout)["dump"] == f"{path}:checkpoint"
    missing = run("ps", str(path), "--pid", "4242")
    assert missing.returncode == 2 and missing.stderr.startswith(f"imgtool: error: {path}:checkpoint: no process")
    with Dump.open(real_dump) as d:
        assert d.location == str(real_dump)


def test_diff_and_report_name_the_dumps_of_an_archive(real_dump: Path, sandbox: Sandbox) -> None:
    """check --dump, diff --dump-a/--dump-b and report --against-dump pick dumps of an archive holding several;
    without them the error says which option names one."""
    path = sandbox.archives / "two.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        _add_dir(tar, real_dump, "first")
        _add_dir(tar, real_dump, "second")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "imgtool", *args], capture_output=True, text=True)

    refused = run("check", "--offline", str(path), "--json")
    assert refused.returncode == 2 and "name one, with --dump first" in refused.stderr, refused.stderr
    checked = run("check", "--offline", str(path), "--dump", "second", "--json")
    assert json.loads(checked.stdout)["dump"] == f"{path}:second", checked.stderr
    refused = run("diff", str(path), str(path), "--dump-a", "first")
    assert refused.returncode == 2 and "name one, with --dump-b first" in refused.stderr, refused.stderr
    same = run("diff", str(path), str(path), "--dump-a", "first", "--dump-b", "second", "--stat")
    assert same.returncode == 0, same.stderr
    out = sandbox.base / "r.html"
    refused = run("report", str(path), "--dump", "second", "--against", str(path), "-o", str(out))
    assert refused.returncode == 2 and "with --against-dump first" in refused.stderr, refused.stderr
    done = run("report", str(path), "--dump", "second", "--against", str(path), "--against-dump", "first",
               "-o", str(out))
    assert done.returncode == 0 and "<html" in out.read_text(), done.stderr


def test_cache_option_of_the_command_line(real_dump: Path, sandbox: Sandbox) -> None:
    """``imgtool --cache DIR``: the second memory command on a compressed archive unpacks nothing."""
    path = _tar(sandbox.archives / "a.tar.zst", real_dump, kind="zstd")
    cache, tmp = sandbox.base / "cache", sandbox.base / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != archive.CACHE_ENV} | {"TMPDIR": str(tmp)}
    runs = [subprocess.run([sys.executable, "-m", "imgtool", "--cache", str(cache), "mem", "search", str(path),
                            "--string", NEEDLE.decode(), "--json"], capture_output=True, text=True, env=env)
            for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and NEEDLE.hex() in runs[0].stdout
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1 and entries[0].name.startswith("zstd-")
    stamp = {p: p.stat().st_mtime_ns for p in entries[0].rglob("*")}
    again = subprocess.run([sys.executable, "-m", "imgtool", "--cache", str(cache), "ps", str(path)],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in entries[0].rglob("*")} == stamp   # reused, not rewritten
    assert list(tmp.iterdir()) == []


def test_forgotten_archive_is_removed(real_dump: Path, sandbox: Sandbox) -> None:
    path = _tar(sandbox.archives / "a.tar.zst", real_dump, kind="zstd")
    root = open_archive(path).root      # never closed: the finalizer removes it once the object is gone
    gc.collect()
    assert not root.exists() and list(sandbox.tmp.iterdir()) == []


def test_cache_never_used_for_a_plain_tar(real_dump: Path, sandbox: Sandbox) -> None:
    path = _tar(sandbox.archives / "a.tar", real_dump)
    with open_archive(path, cache=sandbox.base / "cache") as ex:
        assert ex.root.parent == sandbox.tmp
    assert not (sandbox.base / "cache").exists()


# -- the podman corpus ---------------------------------------------------------------------------------------


@needs_podman
def test_podman_summary_metadata(sandbox: Sandbox) -> None:
    out = subprocess.run([sys.executable, "-m", "imgtool", "summary", "--json", str(PODMAN)], capture_output=True,
                         text=True, check=True, env={**os.environ, "TMPDIR": str(sandbox.tmp)}).stdout
    summary = json.loads(out)
    assert summary["container"]["name"] == "corpus-pod"
    assert summary["processes"][0]["cmdline"][:2] == ["/bin/sh", "-c"]
    assert summary["processes"][0]["cmdline"] and list(sandbox.tmp.iterdir()) == []
    with imgtool.open(PODMAN) as d, archive.extract(PODMAN) as old:
        assert d.metadata == old.metadata and "config.dump" in d.metadata
