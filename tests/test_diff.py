"""The diff engine on real dumps: known changes are found once, and nothing else."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgtool
from imgtool.analysis.diff import DEFAULT_FACETS, compare
from imgtool.cli.app import main
from imgtool.crit import decode
from imgtool.crit.encode import encode_dict
from imgtool.format.image import Image

from corpus import CORPUS, SAMPLES

STRUCTURAL = [f for f in DEFAULT_FACETS if f != "memory"]
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"team corpus not found at {CORPUS}")


def _diff(a: Path, b: Path, **kwargs):
    with imgtool.open(a) as da, imgtool.open(b) as db:
        return compare(da, db, **kwargs)


def test_dump_against_itself_is_equal(capsys: pytest.CaptureFixture[str]) -> None:
    assert _diff(SAMPLES / "fds", SAMPLES / "fds", only=STRUCTURAL).equal
    assert main(["diff", str(SAMPLES / "tcp"), str(SAMPLES / "tcp"), "--only", ",".join(STRUCTURAL)]) == 0
    assert "No differences" in capsys.readouterr().out


@needs_corpus
def test_twice_scenario_reports_exactly_what_the_program_did() -> None:
    twice = CORPUS / "twice"
    result = _diff(twice / "images-a", twice / "images-b", only=STRUCTURAL)
    assert [str(c) for c in result.changes] == [
        "task 16315 › fd 1 › pos: 380 → 499",   # it printed its "gen 1: evolve done (...)" line
        "task 16315 › fd 2 › pos: 380 → 499",
        "task 16315 › fd 3: added (/tmp/criu-work2/twice/newfile-gen1.txt  O_RDWR | O_LARGEFILE  pos 13)",
        "task 16387: added (memprog-child)",
    ]
    assert [(m.a, m.b, m.how) for m in result.matches] == [(16315, 16315, "pid"), (None, 16387, "unmatched")]


@needs_corpus
def test_different_programs_give_a_matching_report() -> None:
    result = _diff(CORPUS / "tree" / "images", CORPUS / "threads" / "images", only=["tasks"])
    assert {(m.a, m.b) for m in result.matches} == {(12433, None), (12435, None), (12437, None), (12436, None),
                                                    (None, 12884)}
    assert sorted(c.kind for c in result.changes) == ["added"] + ["removed"] * 4


def test_cli_exit_codes_json_and_stat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "fds"
    shutil.copytree(SAMPLES / "fds" / "images", copy)
    _edit(copy, "core-13375.img", lambda e: e["tc"].__setitem__("comm", "renamed"))
    args = ["diff", str(SAMPLES / "fds"), str(copy), "--only", "tasks"]
    assert main([*args, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [(c["path"], c["old"], c["new"]) for c in doc["changes"]] == [(["task 13375", "comm"], "fds", "renamed")]
    assert main([*args, "--stat"]) == 1
    assert "tasks" in capsys.readouterr().out
    assert main([*args, "--ignore", "comm"]) == 0
    assert main(["diff", str(SAMPLES / "fds"), str(tmp_path / "nowhere")]) == 2


# ---------------------------------------------------------------- property: random edits


def _edit(folder: Path, name: str, change) -> None:
    with Image.open(folder / name) as image:
        doc = decode.to_dict(image)
    for entry in doc["entries"]:
        change(entry)
    (folder / name).write_bytes(encode_dict(doc))


def _fd_entry(folder: Path, fd: int):
    def change(entry):
        if entry["fd"] == fd:
            entry["fd"] = 99
    return change


def _files_edit(file_id: int, key: str, field: str, value):
    def change(entry):
        if entry["id"] == file_id:
            entry[key][field] = value
    return change


# Each edit: (image, change, expected change path as text).  Ids are the fds sample's.
EDITS = {
    "comm": ("core-13375.img", lambda e: e["tc"].__setitem__("comm", "other"), "task 13375 › comm"),
    "pos": ("files.img", _files_edit(6, "reg", "pos", 1234), "task 13375 › fd 3 › pos"),
    "fd-moved": ("fdinfo-2.img", _fd_entry(Path(), 12), "task 13375 › fd 12|task 13375 › fd 99"),
    "eventfd": ("files.img", _files_edit(14, "efd", "counter", 77), "task 13375 › fd 10 › counter"),
    "vma-prot": ("mm-13375.img", lambda e: e["vmas"][6].__setitem__("prot", 1),
                 "task 13375 › vma 7f7051d79000 › prot"),
    "uid": ("core-13375.img", lambda e: e["thread_core"]["creds"].__setitem__("uid", 4242),
            "task 13375 › creds › uid"),
    "rlimit": ("core-13375.img", lambda e: e["tc"]["rlimits"]["rlimits"][7].__setitem__("cur", 77),
               "task 13375 › rlimits › NOFILE"),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.sets(st.sampled_from(sorted(EDITS)), min_size=1))
def test_random_edits_are_each_reported_once(tmp_path_factory: pytest.TempPathFactory, chosen: set[str]) -> None:
    folder = tmp_path_factory.mktemp("edited")
    shutil.rmtree(folder)
    shutil.copytree(SAMPLES / "fds" / "images", folder)
    for name in sorted(chosen):
        image, change, _ = EDITS[name]
        _edit(folder, image, change)
    result = _diff(SAMPLES / "fds" / "images", folder, only=STRUCTURAL)
    reported = sorted(" › ".join(c.path) for c in result.changes)
    expected = sorted(p for name in chosen for p in EDITS[name][2].split("|"))
    assert reported == expected


def test_tasks_with_new_pids_are_matched_by_key(tmp_path: Path) -> None:
    from imgtool.testing.synth import SynthTask, SynthVma, build_dump

    def dump(folder: str, pids: tuple[int, int]) -> Path:
        vmas = [SynthVma.anon(0x7F0000000000, 4096)]
        tasks = [SynthTask(pids[0], "server", vmas=vmas), SynthTask(pids[1], "worker", vmas=vmas, ppid=pids[0])]
        return build_dump(tmp_path / folder, tasks)

    result = _diff(dump("a", (100, 101)), dump("b", (200, 201)), only=["tasks"])
    assert [(m.a, m.b, m.how) for m in result.matches] == [(100, 200, "key"), (101, 201, "key")]
    assert result.equal


# ---------------------------------------------------------------- every pair of real dumps


def _corpus_dumps() -> list[Path]:
    """Every image dir of the corpus, the podman archive and its unpacked checkpoint."""
    dirs = sorted(p.parent for p in CORPUS.glob("*/images*/inventory.img"))
    return [*dirs, CORPUS / "podman" / "extracted" / "checkpoint", CORPUS / "podman" / "checkpoint.tar.gz"]


@needs_corpus
def test_every_ordered_pair_of_corpus_dumps_diffs_clean() -> None:
    """Both orders of every pair, every default facet (memory too): a result or an ImgtoolError, nothing else."""
    from imgtool.errors import ImgtoolError

    dumps = _corpus_dumps()
    pairs = list(itertools.permutations(dumps, 2))
    assert len(dumps) >= 12 and len(pairs) >= 130
    failed = []
    for a, b in pairs:
        try:
            result = _diff(a, b)
        except ImgtoolError:
            continue
        except Exception as exc:   # collected, reported together
            failed.append(f"{a.relative_to(CORPUS)} → {b.relative_to(CORPUS)}: {type(exc).__name__}: {exc}")
            continue
        json.dumps(result.to_json(), default=lambda v: v.to_json())   # the JSON of every change can be made
        for change in result.changes:
            str(change)
    assert failed == []


@needs_corpus
@pytest.mark.parametrize(("a", "b", "options"), [
    ("twice/images-b", "twice/images-a", []),
    ("twice/images-b", "twice/images-a", ["--json"]),
    ("twice/images-a", "twice/images-b", ["--page-ranges"]),
    ("container/images", "loop-sh/images", ["--json", "--page-ranges"]),
    ("ns/images", "podman/checkpoint.tar.gz", []),
    ("podman/checkpoint.tar.gz", "container/images", ["--stat"]),
    ("tree/images", "threads/images", ["--only", "tasks,vmas,memory"]),
    ("incremental/images-1", "incremental/images-0", ["--page-ranges"]),
])
def test_cli_on_corpus_pairs(a: str, b: str, options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["diff", str(CORPUS / a), str(CORPUS / b), *options])
    out, err = capsys.readouterr()
    assert status in (0, 1), err
    assert err == ""
    if "--json" in options:
        doc = json.loads(out)
        assert doc["a"] == str(CORPUS / a) and doc["equal"] == (status == 0)


# ---------------------------------------------------------------- mappings: added, removed, resized, changed

PAGE = 4096
BASE = 0x7F0000000000


def _vma_dump(folder: Path, *vmas) -> Path:
    from imgtool.testing.synth import SynthTask, build_dump

    return build_dump(folder, [SynthTask(7, "synth", vmas=list(vmas))])


def _vma_changes(tmp_path: Path, old: list, new: list) -> list:
    a = _vma_dump(tmp_path / "a", *old)
    b = _vma_dump(tmp_path / "b", *new)
    return _diff(a, b, only=["vmas"]).changes


def test_grown_vma_is_one_resized_change(tmp_path: Path) -> None:
    """The kernel merged a new mapping into its neighbour: the mapping grew, it was not removed and re-added."""
    from imgtool.testing.synth import SynthVma

    (change,) = _vma_changes(tmp_path, [SynthVma.anon(BASE, 4 * PAGE)], [SynthVma.anon(BASE, 8 * PAGE)])
    assert (change.kind, change.path) == ("resized", ("task 7", f"vma {BASE:x}"))
    assert (change.old["start"], change.old["end"]) == (BASE, BASE + 4 * PAGE)
    assert (change.new["start"], change.new["end"]) == (BASE, BASE + 8 * PAGE)
    assert str(change) == (f"task 7 › vma {BASE:x}: grew at the end by 16 KiB: "
                           f"{BASE:x}-{BASE + 4 * PAGE:x} → {BASE:x}-{BASE + 8 * PAGE:x}")


def test_vma_classification(tmp_path: Path) -> None:
    from imgtool.testing.synth import SynthVma

    anon = SynthVma.anon
    old = [anon(BASE, 4 * PAGE),                       # shrinks at the start
           anon(BASE + 16 * PAGE, 4 * PAGE),           # grows at the start (into a new mapping's place)
           anon(BASE + 32 * PAGE, PAGE),               # removed
           SynthVma(BASE + 40 * PAGE, BASE + 42 * PAGE, prot=1)]   # same range, now rw-
    new = [anon(BASE + PAGE, 3 * PAGE),
           anon(BASE + 14 * PAGE, 6 * PAGE),
           anon(BASE + 40 * PAGE, 2 * PAGE),
           anon(BASE + 50 * PAGE, PAGE)]               # added
    found = [(c.kind, c.path[-1], str(c).split(": ", 1)[1]) for c in _vma_changes(tmp_path, old, new)]
    assert found == [
        ("resized", f"vma {BASE:x}", f"shrank at the start by 4 KiB: {BASE:x}-{BASE + 4 * PAGE:x} → "
                                     f"{BASE + PAGE:x}-{BASE + 4 * PAGE:x}"),
        ("resized", f"vma {BASE + 16 * PAGE:x}", f"grew at the start by 8 KiB: {BASE + 16 * PAGE:x}-"
                                                 f"{BASE + 20 * PAGE:x} → {BASE + 14 * PAGE:x}-{BASE + 20 * PAGE:x}"),
        ("removed", f"vma {BASE + 32 * PAGE:x}", f"removed ({BASE + 32 * PAGE:x}-{BASE + 33 * PAGE:x} rw-)"),
        ("changed", "prot", "r-- → rw-"),
        ("added", f"vma {BASE + 50 * PAGE:x}", f"added ({BASE + 50 * PAGE:x}-{BASE + 51 * PAGE:x} rw-)"),
    ]


def test_split_vma_keeps_the_larger_part_as_resized(tmp_path: Path) -> None:
    """mprotect of the end of a mapping splits it: the first part shrank, the second is new."""
    from imgtool.testing.synth import SynthVma

    changes = _vma_changes(tmp_path, [SynthVma.anon(BASE, 8 * PAGE)],
                           [SynthVma.anon(BASE, 6 * PAGE), SynthVma(BASE + 6 * PAGE, BASE + 8 * PAGE, prot=1)])
    assert [(c.kind, c.path[-1]) for c in changes] == [("resized", f"vma {BASE:x}"),
                                                       ("added", f"vma {BASE + 6 * PAGE:x}")]


def test_vma_changes_of_a_real_process(remapped_dumps: tuple) -> None:
    """tests/programs/remap.py dumped by the real criu before and after it grew, unmapped, re-protected and added
    a mapping: one change each, in address order; newest-first the same mappings, the other way round."""
    before, after, addr = remapped_dumps
    page = 4096
    with imgtool.open(before) as a, imgtool.open(after) as b:
        forward = [(c.kind, c.path[1:]) for c in compare(a, b, only=["vmas"]).changes]
        backward = [(c.kind, c.path[1:]) for c in compare(b, a, only=["vmas"]).changes]
    assert forward == [("resized", (f"vma {addr['grow']:x}",)), ("removed", (f"vma {addr['gone']:x}",)),
                       ("changed", (f"vma {addr['prot']:x}", "prot")), ("added", (f"vma {addr['new']:x}",))]
    assert backward == [("resized", (f"vma {addr['grow']:x}",)), ("added", (f"vma {addr['gone']:x}",)),
                        ("changed", (f"vma {addr['prot']:x}", "prot")), ("removed", (f"vma {addr['new']:x}",))]
    with imgtool.open(before) as a, imgtool.open(after) as b:
        (grown,) = [c for c in compare(a, b, only=["vmas"]).changes if c.kind == "resized"]
    assert (grown.old["end"] - grown.old["start"], grown.new["end"] - grown.new["start"]) == (8 * page, 12 * page)


def test_json_shows_vmas_as_objects_with_integer_addresses(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from imgtool.testing.synth import SynthVma

    a = _vma_dump(tmp_path / "a", SynthVma.anon(BASE, 4 * PAGE), SynthVma.anon(BASE + 32 * PAGE, PAGE))
    b = _vma_dump(tmp_path / "b", SynthVma.anon(BASE, 8 * PAGE), SynthVma(BASE + 64 * PAGE, BASE + 65 * PAGE, prot=5))
    assert main(["diff", str(a), str(b), "--only", "vmas", "--json"]) == 1
    changes = {c["kind"]: c for c in json.loads(capsys.readouterr().out)["changes"]}
    assert set(changes) == {"resized", "removed", "added"}
    assert changes["added"]["new"] == {"start": BASE + 64 * PAGE, "end": BASE + 65 * PAGE, "prot": 5,
                                       "flags": 0x22, "status": changes["added"]["new"]["status"], "backing": ""}
    assert changes["removed"]["old"]["start"] == BASE + 32 * PAGE and changes["removed"]["new"] is None
    assert (changes["resized"]["old"]["end"], changes["resized"]["new"]["end"]) == (BASE + 4 * PAGE, BASE + 8 * PAGE)
    for change in changes.values():
        for side in ("old", "new"):
            if change[side] is not None:
                assert {type(change[side][k]) for k in ("start", "end", "prot", "flags", "status")} == {int}


# ---------------------------------------------------------------- --pid, the facet registry


def test_pid_in_neither_dump_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    fds = str(SAMPLES / "fds")
    assert main(["diff", fds, fds, "--pid", "4"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("imgtool: error: ") and "pid 4" in err
    assert main(["diff", fds, fds, "--pid", "13375", "--only", "tasks"]) == 0


def test_a_facet_is_one_registered_function(capsys: pytest.CaptureFixture[str]) -> None:
    from imgtool.analysis.diff import Change, facet, registry

    @facet("comm-length", order=15, default=False, help="length of the command name")
    def comm_length(pair):   # a made-up facet, to see one function is all a facet takes
        yield Change("comm-length", (*pair.base, "comm length"), "changed", len(pair.a.comm), 0)

    try:
        result = _diff(SAMPLES / "fds", SAMPLES / "fds", only=["comm-length"])
        assert [str(c) for c in result.changes] == ["task 13375 › comm length: 3 → 0"]
        assert _diff(SAMPLES / "fds", SAMPLES / "fds", only=["tasks"]).equal   # not a default facet
        with pytest.raises(SystemExit):
            main(["diff", "--help"])
        help_text = capsys.readouterr().out
        for f in registry.registered():
            assert f.name in help_text and f.help.split(",")[0] in " ".join(help_text.split())
    finally:
        del registry._REGISTRY["comm-length"]


def test_image_files_compare_without_reading_them_whole(tmp_path: Path) -> None:
    """Ghost files, tmpfs tarballs and GPU pages can be GiBs: compared a chunk at a time, in place in a tar too."""
    from imgtool.analysis.diff.values import same_bytes
    from imgtool.format.located import read_chunks

    data = bytes(range(256)) * 4096
    one, same, other, short, tar = (tmp_path / n for n in ("one", "same", "other", "short", "tar"))
    one.write_bytes(data)
    same.write_bytes(data)
    other.write_bytes(data[:-1] + b"\x00")
    short.write_bytes(data[:-1])
    tar.write_bytes(b"h" * 512 + data + b"t" * 512)     # a member's bytes inside a bigger file

    def chunks(path: Path, backing: tuple[str, int, int] | None = None) -> Iterator[bytes]:
        return read_chunks(path, backing, chunk=4096)

    assert same_bytes(chunks(one), chunks(same))
    assert same_bytes(chunks(one), chunks(tar, (str(tar), 512, len(data))))
    assert not same_bytes(chunks(one), chunks(other)) and not same_bytes(chunks(one), chunks(short))
    assert not same_bytes(chunks(one), chunks(tar, (str(tar), 511, len(data))))


def test_hex_named_ghost_files_are_the_fds_facets() -> None:
    from imgtool.analysis.diff.registry import claimed

    assert claimed("ghost-file-a.img").name == claimed("ghost-file-10.img").name == "fds"
