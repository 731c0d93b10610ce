"""``imgtool extract``, ``mem yara`` and ``scan`` (imgtool.analysis.forensics): against a dump made here with the
real criu (tests/programs/hidden_content.c), the team corpus (fds, memory) and fleets of corpus copies."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import imgtool
from imgtool.analysis.forensics import extract as ex
from imgtool.analysis.forensics.scan import Query, exit_status, expand, scan
from imgtool.cli.app import main
from imgtool.errors import UsageError

import realcriu
from corpus import CORPUS

PROGRAM = Path(__file__).resolve().parent / "programs" / "hidden_content.c"
FDS = CORPUS / "fds" / "images"
MEMORY = CORPUS / "memory" / "images"
SECRET = b"CORPUS-SECRET-1234"
SECRET_AT = 0x56365a7f72a0            # the malloc'ed copy (memory/SCENARIO.md)
ANON_A = 0x7fdc69600000               # region A: page i starts "PAGE%08d"

needs_fds = pytest.mark.skipif(not FDS.is_dir(), reason=f"team corpus not at {CORPUS}")
needs_memory = pytest.mark.skipif(not MEMORY.is_dir(), reason=f"team corpus not at {CORPUS}")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _items(path: Path) -> dict[str, tuple[ex.Item, bytes]]:
    with imgtool.open(path) as dump:
        return {item.file: (item, b"".join(stream)) for item, stream in ex.contents(dump)}


# -- extract: a dump made here with the real criu ------------------------------------------------------------------


@pytest.fixture
def hidden_dump(criu: Path, tmp_path: Path) -> tuple[Path, Path]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    binary = tmp_path / "hidden_content"
    built = subprocess.run([cc, "-O1", "-Wall", "-o", binary, PROGRAM], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    work = tmp_path / "work"
    work.mkdir()
    dumped = realcriu.dump_process(criu, [binary, work], tmp_path / "images")
    assert dumped.ok, f"criu dump exited {dumped.returncode}:\n{dumped.log_text()[-3000:]}"
    return dumped.images, work / "expect"


def test_extract_real_dump_byte_for_byte(hidden_dump: tuple[Path, Path], tmp_path: Path) -> None:
    images, expect = hidden_dump
    wanted = {p.name: p.read_bytes() for p in expect.iterdir()}
    out = tmp_path / "out"
    with imgtool.open(images) as dump:
        written = ex.write_contents(dump, out)
    manifest = json.loads((out / "manifest.json").read_text())
    entries = manifest["items"]
    assert len({e["file"] for e in entries}) == len(entries) == len(written)
    for entry in entries:       # the manifest tells the truth about every file
        data = (out / entry["file"]).read_bytes()
        assert (len(data), _sha(data)) == (entry["size"], entry["sha256"])
    by_kind: dict[str, list[dict]] = {}
    for entry in entries:
        by_kind.setdefault(entry["kind"], []).append(entry)
    found: dict[str, list[dict]] = {}
    for name, data in wanted.items():          # each thing the program wrote comes back exactly once
        found[name] = [e for e in entries if e["sha256"] == _sha(data)]
        assert len(found[name]) == 1, (name, [(e["kind"], e["name"]) for e in entries])
    assert found["ghost-text"][0]["kind"] == "ghost-file"
    assert found["ghost-text"][0]["name"].endswith("/ghost-text.txt")
    assert found["ghost-binary"][0]["kind"] == "ghost-file"
    assert found["memfd"][0]["kind"] == "memfd" and found["memfd"][0]["name"] == "memfd:hidden-memfd"
    assert found["pipe"][0]["kind"] == "pipe"
    assert {found[n][0]["kind"] for n in ("sock-a-to-b", "sock-b-to-a")} == {"unix-queue"}
    assert found["shm"][0]["kind"] == "sysv-shm" and found["shm"][0]["details"]["key"] == 0x1234
    assert [(e["details"]["mtype"], e["sha256"]) for e in by_kind["sysv-msg"]] == \
        [(1, _sha(wanted["msg-1"])), (7, _sha(wanted["msg-7"]))]
    assert [e["details"]["values"] for e in by_kind["sysv-sem"]] == [[3, 1, 4]]
    pids = {e["pid"] for e in entries if e["kind"] in ("ghost-file", "memfd", "pipe", "unix-queue")}
    assert len(pids) == 1 and None not in pids
    assert all(e["fd"] is not None for e in entries if e["kind"] in ("ghost-file", "memfd", "pipe"))


# -- extract: the corpus ----------------------------------------------------------------------------------------------


@needs_fds
def test_extract_corpus_fds_queues() -> None:
    items = _items(FDS)
    by_kind = {}
    for item, data in items.values():
        by_kind.setdefault(item.kind, []).append((item, data))
    assert [d for _, d in by_kind["pipe"]] == [b"PIPE-DATA-UNREAD-12345"]
    assert [(i.name, d) for i, d in by_kind["fifo"]] == [("/tmp/criu-work2/fds/myfifo", b"FIFO-DATA-UNREAD!")]
    assert sorted(d for _, d in by_kind["unix-queue"]) == [b"SOCKPAIR-A-TO-B", b"SOCKPAIR-B-TO-A-XYZ"]
    queues = {d: i for i, d in by_kind["unix-queue"]}
    assert queues[b"SOCKPAIR-A-TO-B"].fd == 9 and queues[b"SOCKPAIR-B-TO-A-XYZ"].fd == 8   # the receiving end
    [(ghost, content)] = by_kind["ghost-file"]
    assert ghost.name == "/tmp/criu-work2/fds/ghost.txt" and (ghost.pid, ghost.fd) == (13375, 4)
    assert content == b"GHOST-CONTENT-this-file-was-unlinked-while-open-0123456789abcdef"
    [(memfd, data)] = by_kind["memfd"]
    assert (memfd.name, memfd.size, len(data), memfd.fd) == ("memfd:corpus-memfd", 4109, 4109, 15)
    assert data.startswith(b"MEMFD-CONTENT")


@needs_memory
def test_extract_corpus_anonymous_shared_memory() -> None:
    [(item, data)] = [v for v in _items(MEMORY).values() if v[0].kind == "anon-shared"]
    assert item.size == len(data) == 4 << 20 and item.holders == [(15755, None)]
    assert all(data[i * 4096:i * 4096 + 15] == b"SHMPAGE%08d" % i for i in range(0, 1024, 97))


@pytest.mark.skipif(not (CORPUS / "ns" / "images").is_dir(), reason=f"team corpus not at {CORPUS}")
def test_extract_corpus_ipc_namespace_and_tmpfs() -> None:
    images = CORPUS / "ns" / "images"
    found = {item.kind: (item, data) for item, data in _items(images).values() if item.kind != "tmpfs"}
    shm, data = found["sysv-shm"]
    assert (shm.details["key"], shm.size, len(data)) == (0xc0ffee, 65536, 65536)
    assert data.startswith(b"SYSV-SHM-CONTENT-NS") and shm.pid is not None     # a task of the namespace
    msg, text = found["sysv-msg"]
    assert (msg.details["mtype"], text.rstrip(b"\0")) == (42, b"SYSV-MSG-IN-QUEUE")
    sem, values = found["sysv-sem"]
    assert sem.details["values"] == [7, 8, 9]
    assert json.loads(values)["values"] == [7, 8, 9]
    tmpfs = {item.name: data for item, data in _items(images).values() if item.kind == "tmpfs"}
    assert set(tmpfs) == {"/dev", "/tmp"}
    assert tmpfs["/tmp"] == (images / "tmpfs-dev-42.tar.gz.img").read_bytes()      # as it is


@needs_fds
def test_extract_cli_refuses_non_empty_out_and_writes_manifest(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["extract", str(FDS), "-o", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert printed == manifest["items"] and len(printed) == 6
    assert {"kind", "pid", "fd", "name", "size", "sha256", "file"} <= set(printed[0])
    assert main(["extract", str(FDS), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["extract", str(FDS), "-o", str(out), "--force"]) == 0


@needs_fds
def test_extract_follows_no_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "pipes").symlink_to(outside)              # a planted symlink where a folder of ours goes
    with imgtool.open(FDS) as dump, pytest.raises(OSError):
        ex.write_contents(dump, out, force=True)
    assert not list(outside.iterdir())
    (out / "pipes").unlink()
    (out / "pipes").mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"keep me")
    os.link(victim, out / "pipes" / "pipe-75489")       # a hard link where a file of ours goes: replaced, not written
    with imgtool.open(FDS) as dump:
        ex.write_contents(dump, out, force=True)
    assert victim.read_bytes() == b"keep me"
    assert (out / "pipes" / "pipe-75489").read_bytes() == b"PIPE-DATA-UNREAD-12345"
    link = tmp_path / "link"
    link.symlink_to(outside)
    with imgtool.open(FDS) as dump, pytest.raises(UsageError, match="symlink"):
        ex.write_contents(dump, link)


@pytest.mark.parametrize("text", ["../../etc/passwd", ".hidden", "", "a/b\0c", "x" * 500, "..", "/"])
def test_safe_component(text: str) -> None:
    name = ex.safe_component(text)
    assert name and "/" not in name and not name.startswith(".") and len(name) <= ex.NAME_MAX + 1
    assert all(c.isalnum() or c in "._+=@-_" for c in name)


# -- mem yara ------------------------------------------------------------------------------------------------------


RULES = f"""
rule secret {{ strings: $s = "{SECRET.decode()}" condition: $s }}
rule across_pages {{ strings: $x = {{ 00 00 00 00 50 41 47 45 30 30 30 30 30 30 30 38 }} condition: $x }}
"""


@needs_memory
@pytest.mark.parametrize("chunk", [4 << 20, 8 * 4096, 8 * 4096 - 2, 3 * 4096 + 5])
def test_yara_finds_secrets_once_across_boundaries(chunk: int) -> None:
    pytest.importorskip("yara")
    from imgtool.analysis.forensics.yara import compile_rules, scan_dump

    rules = compile_rules(source=RULES)
    with imgtool.open(MEMORY) as dump:
        hits = list(scan_dump(dump, rules, chunk=chunk))
    secrets = [h for h in hits if h.rule == "secret"]
    assert len(secrets) == 2 and SECRET_AT in {h.vaddr for h in secrets}
    assert all(h.match == SECRET and h.pid == 15755 and h.vma is not None for h in secrets)
    heap = next(h for h in secrets if h.vaddr == SECRET_AT)
    assert heap.before.endswith(b"\x11\x01\x00\x00\x00\x00\x00\x00")       # the malloc chunk header
    [across] = [h for h in hits if h.rule == "across_pages"]          # crosses a page (and chunk) boundary
    assert across.vaddr == ANON_A + 8 * 4096 - 4 and across.string == "$x"
    assert across.vma.start == ANON_A and across.after.startswith(b"\0")


@needs_memory
def test_mem_yara_cli_json(tmp_path: Path, capsys) -> None:
    pytest.importorskip("yara")
    rules = tmp_path / "r.yar"
    rules.write_text(RULES)
    assert main(["mem", "yara", str(MEMORY), str(rules), "--json", "--pid", "15755"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {(h["rule"], h["vaddr"]) for h in hits} >= {("secret", SECRET_AT), ("across_pages", ANON_A + 8 * 4096 - 4)}
    assert all({"rule", "string", "pid", "vaddr", "vma", "match", "before", "after"} <= set(h) for h in hits)
    rules.write_text('rule absent { strings: $n = "NOT-IN-THE-DUMP-AT-ALL" condition: $n }')
    assert main(["mem", "yara", str(MEMORY), str(rules)]) == 1
    rules.write_text("rule broken {")
    assert main(["mem", "yara", str(MEMORY), str(rules)]) == 2
    assert "syntax error" in capsys.readouterr().err


@needs_fds
def test_mem_yara_extracted(tmp_path: Path, capsys) -> None:
    pytest.importorskip("yara")
    rules = tmp_path / "r.yar"
    rules.write_text('rule queued { strings: $p = "PIPE-DATA-UNREAD" $g = "GHOST-CONTENT" condition: any of them }')
    assert main(["mem", "yara", str(FDS), str(rules), "--json"]) == 0          # the literals in fds.c's memory
    assert all(h["item"] is None for h in json.loads(capsys.readouterr().out))
    assert main(["mem", "yara", str(FDS), str(rules), "--json", "--extracted"]) == 0
    hits = [h for h in json.loads(capsys.readouterr().out) if h["item"] is not None]
    assert sorted((h["item"], h["string"], h["offset"]) for h in hits) == [
        ("ghost-files/1-ghost.txt", "$g", 0), ("pipes/pipe-75489", "$p", 0)]


def test_scan_stream_boundaries() -> None:
    pytest.importorskip("yara")
    from imgtool.analysis.forensics.yara import compile_rules, scan_stream

    rules = compile_rules(source='rule r { strings: $s = "NEEDLE" condition: $s }')
    data = b"x" * 10 + b"NEEDLE" + b"y" * 5 + b"NEEDLE"
    for chunk in (1, 3, 7, 11, 12, 100):
        for parts in ([data], [data[:13], data[13:]], [bytes([b]) for b in data]):
            hits = list(scan_stream("n", iter(parts), rules, chunk=chunk, overlap=16, context=3))
            assert [(h.offset, h.before, h.after) for h in hits] == [(10, b"xxx", b"yyy"), (21, b"yyy", b"")]


def test_yara_missing_names_the_extra(monkeypatch) -> None:
    from imgtool.analysis.forensics.yara import load_yara

    monkeypatch.setitem(sys.modules, "yara", None)
    with pytest.raises(UsageError, match=r"imgtool\[yara\]"):
        load_yara()


# -- scan --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Corpus copies and archives, and one broken member."""
    if not (MEMORY.is_dir() and FDS.is_dir()):
        pytest.skip(f"team corpus not at {CORPUS}")
    root = tmp_path_factory.mktemp("fleet")
    shutil.copytree(MEMORY, root / "memory-copy")
    shutil.copytree(FDS, root / "fds-copy")
    with tarfile.open(root / "memory.tar", "w") as tar:
        tar.add(MEMORY, arcname="images")
    with tarfile.open(root / "fds.tar.gz", "w:gz") as tar:
        tar.add(FDS, arcname="images")
    (root / "broken.tar").write_bytes(b"this is not a checkpoint archive")
    return [str(root / "memory-copy"), str(root / "fds-copy"), str(root / "memory.tar"), str(root / "fds.tar.gz"),
            str(root / "broken.tar")]


def _found(results) -> set[tuple]:
    return {(Path(h["checkpoint"]).name, h["pid"], h["vaddr"], h["match"]) for r in results for h in r.hits}


def test_scan_jobs_and_dask_agree(fleet: list[str]) -> None:
    query = Query.make("string", SECRET.decode())
    one = list(scan(fleet, query, jobs=1))
    two = list(scan(fleet, query, jobs=2))
    assert _found(one) == _found(two) == {(name, 15755, at, SECRET.hex()) for name in ("memory-copy", "memory.tar")
                                          for at in (SECRET_AT, SECRET_AT + 0x27b)}
    assert {r.path for r in one} == {r.path for r in two} == set(fleet)
    broken = [r for r in two if r.error is not None]
    assert [r.path for r in broken] == [fleet[-1]] and exit_status(two) == 0
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        on_dask = list(scan(fleet, query, dask=cl.scheduler_address))
    assert _found(on_dask) == _found(one)
    assert [r.path for r in on_dask if r.error is not None] == [fleet[-1]]


def test_scan_pool_beside_another_thread(fleet: list[str]) -> None:
    """With another thread running (a progress bar's) the pool's workers come from a fork server, not a fork of
    this process; the hits are the same."""
    import threading

    from imgtool.analysis.forensics import scan as scan_module

    query = Query.make("string", SECRET.decode())
    assert threading.active_count() > 1 or scan_module._pool_context().get_start_method() == "fork"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert scan_module._pool_context().get_start_method() == "forkserver"
        beside = list(scan(fleet, query, jobs=2))
    finally:
        stop.set()
        other.join()
    assert _found(beside) == _found(scan(fleet, query, jobs=1))


def test_scan_cli_json_lines_and_exit_codes(fleet: list[str], capsys) -> None:
    assert main(["scan", *fleet, "--string", SECRET.decode(), "--jobs", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    errors = [line for line in lines if "error" in line]
    assert [e["checkpoint"] for e in errors] == [fleet[-1]]
    assert len([line for line in lines if "vaddr" in line]) == 4
    assert main(["scan", *fleet, "--hex", "00ff00ff00ff00ff11aa", "--jobs", "1", "--json"]) == 1
    capsys.readouterr()
    assert main(["scan", fleet[-1], "--string", "x", "--json"]) == 2
    capsys.readouterr()
    glob = os.path.join(os.path.dirname(fleet[0]), "*-copy")
    assert expand([glob]) == sorted(fleet[:2])
    assert main(["scan", glob, "--regex", "CORPUS-SECRET-[0-9]+", "--jobs", "1"]) == 0
    assert "3 matches in 2 checkpoints" in capsys.readouterr().out      # the quoted glob: the copies; -5678 too


@needs_memory
def test_scan_yara(fleet: list[str], tmp_path: Path, capsys) -> None:
    pytest.importorskip("yara")
    rules = tmp_path / "r.yar"
    rules.write_text(RULES)
    assert main(["scan", fleet[0], fleet[-1], "--yara", str(rules), "--jobs", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((h["rule"], h["vaddr"]) for h in lines if "rule" in h) == sorted(
        [("across_pages", ANON_A + 8 * 4096 - 4), ("secret", SECRET_AT), ("secret", SECRET_AT + 0x27b)])
