"""What real checkpoints hold and imgtool must read: zombies, raw sockets, pre-dumps, several dumps in one folder;
and what damaged ones hold: images of the wrong kind, parent links that loop. Never a traceback: an imgtool error.

tests/data/zombie and tests/data/raw-sockets were written by the real criu 4.2.1 (tests/realcriu.py) dumping
tests/programs/zombie_sockets.c: ``zombie_sockets 1`` forks a child that exits unreaped (a zombie at dump time),
``zombie_sockets 2`` opens raw sockets (IPv4 ICMP, IPv6 ICMPv6, IPv4 IPPROTO_RAW).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import imgtool
from imgtool import cli
from imgtool.crit import decode
from imgtool.crit.encode import encode_dict
from imgtool.crit.explore import EXPLORERS
from imgtool.errors import EncodeError, ImgtoolError, ParentLinkError, WrongKindError
from imgtool.format.image import Image

from corpus import CORPUS, SAMPLES

DATA = Path(__file__).resolve().parent / "data"
ZOMBIE, RAW = DATA / "zombie", DATA / "raw-sockets"
ZOMBIE_PID, ZOMBIE_PARENT = 4086, 4085
LOOP_SH = SAMPLES / "loop-sh" / "images"


def _run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _copy(src: Path, tmp_path: Path, name: str = "images") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _rewrite(path: Path, change) -> None:
    with Image.open(path) as img:
        document = decode.to_dict(img)
    change(document)
    path.write_bytes(encode_dict(document))


# -- 1. zombies -------------------------------------------------------------------------------------------------------

def test_zombie_is_a_task_without_fds_or_memory() -> None:
    with imgtool.open(ZOMBIE) as dump:
        zombie = dump.task(ZOMBIE_PID)
        assert zombie.state == "zombie" and zombie.dead
        assert zombie.exit_code == 7 << 8
        assert zombie.threads == [ZOMBIE_PID]      # criu writes an uninitialised thread id for a zombie
        assert zombie.fds == [] and zombie.mm is None and zombie.cwd is None and zombie.cmdline == []
        assert zombie.parent is dump.task(ZOMBIE_PARENT)
        assert not dump.task(ZOMBIE_PARENT).dead


@pytest.mark.parametrize("argv", [["files"], ["files", "--json"], ["summary"], ["summary", "--json"], ["ps"],
                                  ["maps"], ["x", "{}", "sk"], ["x", "{}", "fds"], ["x", "{}", "mems"],
                                  ["x", "{}", "rss"], ["x", "{}", "ps"], ["check", "--offline"],
                                  ["mem", "search", "{}", "--string", "zomb"]])
def test_zombie_dump_reads_everywhere(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    tail = [] if "{}" in argv else [ZOMBIE]
    argv = [a.replace("{}", str(ZOMBIE)) for a in argv]
    status, out, err = _run(capsys, *argv, *tail)
    assert (status, err) == (0, "")
    assert "missing" not in out
    if argv[0] in ("summary", "ps", "files") and "--json" not in argv:
        assert "zombie" in out
    if argv == ["summary", "--json"]:
        states = {p["pid"]: p["state"] for p in json.loads(out)["processes"]}
        assert states == {ZOMBIE_PARENT: "alive", ZOMBIE_PID: "zombie"}


# -- 2. raw and ICMP sockets -----------------------------------------------------------------------------------------

def test_raw_sockets_are_shown_by_protocol_number(capsys: pytest.CaptureFixture[str]) -> None:
    with imgtool.open(RAW) as dump:
        sockets = {fd.fd: fd.file for fd in dump.tasks[0].fds if fd.file.kind == "INETSK"}
    assert {fd: (f.details["family"], f.details["proto"]) for fd, f in sockets.items()} == \
        {3: ("INET", "1"), 4: ("INET6", "58"), 5: ("INET", "255")}
    for argv in (["files", RAW], ["summary", RAW], ["x", RAW, "sk"], ["x", RAW, "fds"], ["files", "--json", RAW],
                 ["check", "--offline", RAW]):
        status, out, err = _run(capsys, *argv)
        assert (status, err) == (0, ""), argv
    status, out, _ = _run(capsys, "x", RAW, "sk")
    assert "inet 1 CLOSE" in out and "inet6 58 CLOSE" in out and "inet 255 CLOSE" in out


# -- 3. an image of the wrong kind ------------------------------------------------------------------------------------

def test_image_of_another_kind_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = _copy(SAMPLES / "fds" / "images", tmp_path)
    shutil.copy(images / "ghost-file-1.img", images / "pstree.img")
    with imgtool.open(images) as dump, pytest.raises(WrongKindError, match=r"GHOST_FILE.*PSTREE"):
        _ = dump.tasks
    status, _, err = _run(capsys, "ps", images)
    assert status == 2
    assert err == f"imgtool: error: {images / 'pstree.img'}: wrong kind of image: the magic says GHOST_FILE, the " \
                  "file name says PSTREE\n"


def test_core_image_of_another_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = _copy(LOOP_SH, tmp_path)
    shutil.copy(images / "mm-12013.img", images / "core-12013.img")
    status, _, err = _run(capsys, "summary", images)
    assert status == 2 and "core-12013.img: wrong kind of image: the magic says MM, the file name says CORE" in err


# -- 4. parent links that loop ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [".", "parent", "../images", "../other/parent"])
def test_parent_link_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    images = _copy(LOOP_SH, tmp_path)
    if target == "../other/parent":   # a loop of two dumps: images -> other -> images
        other = _copy(LOOP_SH, tmp_path, "other")
        (other / "parent").symlink_to("../images")
        target = "../other"
    (images / "parent").symlink_to(target)
    with imgtool.open(images) as dump, pytest.raises(ParentLinkError, match="parent link"):
        [d.path for d in dump.chain()]
    status, _, err = _run(capsys, "summary", images)
    assert status == 2 and err.startswith("imgtool: error: ") and err.count("\n") == 1


# -- 5. an mm without VMAs --------------------------------------------------------------------------------------------

def test_rss_of_an_mm_without_vmas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = _copy(LOOP_SH, tmp_path)
    _rewrite(images / "mm-12013.img", lambda doc: doc["entries"][0].update(vmas=[]))
    with imgtool.open(images) as dump:
        lines = list(EXPLORERS["rss"](dump))
    task = lines.index("12013")
    assert lines[task + 1].startswith("\t") and "/" in lines[task + 1]
    for what in ("rss", "mems"):
        assert _run(capsys, "x", images, what)[0] == 0
    assert _run(capsys, "maps", images)[0] == 0


# -- 6. encode of hostile JSON; names with rich markup --------------------------------------------------------------

@pytest.mark.parametrize("text", ["{}", "[" * 100_000 + "]" * 100_000,
                                  '{"magic": "PSTREE", "entries": [{"pid": ' + "9" * 5000 + "}]}",
                                  '{"magic": "PSTREE", "entries": [{"threads": ' + "[" * 5000 + "]" * 5000 + "}]}",
                                  '{"magic": {}, "entries": []}', '{"magic": "PSTREE", "entries": {}}'])
def test_encode_hostile_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    source = tmp_path / "in.json"
    source.write_text(text)
    status, _, err = _run(capsys, "encode", "-i", source, "-o", tmp_path / "out.img")
    assert status == 2 and err.startswith("imgtool: error: ") and err.count("\n") == 1
    assert not (tmp_path / "out.img").exists()


def test_encode_dict_of_nothing() -> None:
    with pytest.raises(EncodeError):
        encode_dict({})


def _rename_file(images: Path, old: str, new: str) -> None:
    def change(doc: dict) -> None:
        for entry in doc["entries"]:
            reg = entry.get("reg")
            if reg and reg["name"] == old:
                reg["name"] = new
    _rewrite(images / "files.img", change)


@pytest.mark.parametrize("name", ["/tmp/da[b]ta.txt", "/tmp/[/]x", "/tmp/[bold]x[/bold]"])
def test_names_from_the_dump_are_not_markup(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    images = _copy(SAMPLES / "fds" / "images", tmp_path)
    with imgtool.open(images) as dump:
        old = next(fd.file.details["path"] for fd in dump.tasks[0].fds if fd.file.kind == "REG"
                   and fd.file.details["path"].startswith("/"))
        cwd = dump.tasks[0].cwd
    _rename_file(images, old, name)
    _rename_file(images, cwd, name + "-cwd")
    _rewrite(images / "core-13375.img", lambda doc: doc["entries"][0]["tc"].update(comm="c[o]mm[/]"))
    for argv in (["files"], ["summary"], ["maps"], ["ps"]):
        status, out, err = _run(capsys, *argv, images)
        assert (status, err) == (0, ""), argv
        assert "c[o]mm[/]" in out.replace("\n", ""), argv
        if argv[0] == "files":
            assert name in out and name + "-cwd" in out


# -- 7. explain reads a bounded amount ---------------------------------------------------------------------------------

def test_explain_dev_zero_ends(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "explain", "--json", "/dev/zero")
    assert status == 1 and err == ""
    assert "64 MiB" in json.loads(out)["details"]["truncated"]


def test_explain_fifo_without_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    fifo = tmp_path / "log"
    os.mkfifo(fifo)
    status, out, _ = _run(capsys, "explain", "--json", fifo)
    assert status == 1 and json.loads(out)["cause"] == "no-verdict"


def test_explain_file_limit(tmp_path: Path) -> None:
    from imgtool.analysis.explain import explain_file

    log = tmp_path / "dump.log"
    log.write_bytes(b"(00.000001) Dumping finished successfully\n" + b"x" * 100)
    assert "truncated" not in explain_file(log).details
    assert "truncated" in explain_file(log, limit=50).details


# -- 8. several dumps, pre-dumps, unknown pids ------------------------------------------------------------------------

TWICE = CORPUS / "twice"


@pytest.mark.skipif(not TWICE.is_dir(), reason="the shared corpus is not here")
def test_directory_with_several_dumps(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, "ps", TWICE)
    assert status == 2 and "images-a, images-b" in err and "--dump" in err
    with pytest.raises(ImgtoolError, match="several dumps"):
        imgtool.open(TWICE)
    status, out, err = _run(capsys, "ps", "--dump", "images-b", TWICE)
    assert (status, err) == (0, "") and "memprog-child" in out
    with imgtool.open(TWICE, dump="images-a") as dump:
        assert dump.path == TWICE / "images-a"
    status, _, err = _run(capsys, "summary", "--dump", "nope", TWICE)
    assert status == 2 and "images-a, images-b" in err


def test_predump_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = _copy(LOOP_SH, tmp_path, "dump-0")
    images = _copy(LOOP_SH, tmp_path, "pre-1")
    for path in images.iterdir():
        if not path.name.startswith(("pagemap-", "pages-", "inventory")):
            path.unlink()
    _rewrite(images / "inventory.img", lambda doc: doc["entries"][0].update(pre_dump_mode=1))
    (images / "parent").symlink_to("../dump-0")
    for argv in (["ps"], ["summary"], ["files"], ["maps"], ["x", "sk"], ["mem", "search", "--string", "x"]):
        status, _, err = _run(capsys, *argv[:-1] if argv[0] == "x" else argv, images,
                                *argv[-1:] if argv[0] == "x" else [])
        assert status == 2 and "a pre-dump" in err and str(parent) in err, argv
    (images / "inventory.img").unlink()
    shutil.copy(parent / "inventory.img", images / "inventory.img")
    status, _, err = _run(capsys, "ps", images)
    assert status == 2 and "pstree.img is missing" in err


@pytest.mark.parametrize("argv", [["ps", "--pid", "999"], ["files", "--pid", "999"], ["maps", "--pid", "999"],
                                  ["mem", "search", "--string", "x", "--pid", "999"]])
def test_unknown_pid_is_an_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, _, err = _run(capsys, *argv, LOOP_SH)
    assert status == 2 and "no process with pid 999" in err and "11932, 12013" in err


def test_ps_pid(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "ps", "--pid", "12013", LOOP_SH)
    assert status == 0 and "12013 sleep" in out and "11932 " not in out.split("└── ")[1][:6]


# -- found while fuzzing (tests/test_mutated_dumps.py) -----------------------------------------------------------------

@pytest.mark.parametrize("depth", [8, 1100])
def test_pstree_chain_and_duplicate_pids(tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int) -> None:
    """A chain deeper than Python's recursion limit, and duplicate pids that make a cycle: each entry shown once."""
    images = _copy(LOOP_SH, tmp_path)
    chain = [{"pid": p, "ppid": p - 1, "pgid": 1, "sid": 1, "threads": [p]} for p in range(1, depth + 1)]
    twins = [{"pid": 5, "ppid": 5, "pgid": 1, "sid": 1, "threads": [5]}] * 2
    _rewrite(images / "pstree.img", lambda doc: doc.update(entries=chain + twins))
    for pid in range(1, depth + 1):
        (images / f"core-{pid}.img").symlink_to(images / "core-12013.img")
    status, out, err = _run(capsys, "x", images, "ps")
    assert (status, err) == (0, "") and len(out.splitlines()) == 1 + depth + 2
    if depth < 100:
        status, out, err = _run(capsys, "ps", "--pid", "5", images)
        assert (status, err) == (0, "") and out.count(" 5 sleep") == 3
