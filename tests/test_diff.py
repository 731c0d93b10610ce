"""The diff engine on real dumps: known changes are found once, and nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgtool
from imgtool.analysis.diff import DEFAULT_FACETS, compare
from imgtool.cli.main import main
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
