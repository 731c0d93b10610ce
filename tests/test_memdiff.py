"""Memory contents in the diff: per page changed / added / removed / moved to parent, totals per VMA."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest

import imgtool
from imgtool import cli
from imgtool.analysis.diff import compare
from imgtool.analysis.memdiff import MemoryComparer, PageRuns
from imgtool.render.console import emit_json
from imgtool.testing.synth import SynthTask, SynthVma, build_dump

from corpus import CORPUS

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"team corpus not found at {CORPUS}")
PAGE = 4096
BASE = 0x7F0000000000


def _memory(a: Path, b: Path, **kwargs) -> dict[str, dict]:
    with imgtool.open(a) as da, imgtool.open(b) as db:
        result = compare(da, db, only=["memory"], memory=MemoryComparer(**kwargs))
    return {c.path[1]: c.new for c in result.changes}


@needs_corpus
def test_twice_scenario_changed_pages() -> None:
    found = _memory(CORPUS / "twice" / "images-a", CORPUS / "twice" / "images-b")
    region_a = found["vma 7f00bea00000-7f00bf200000"]   # "A anon", its pages 0..15 rewritten
    assert list(region_a["changed_ranges"]) == [(0x7F00BEA00000, 0x7F00BEA00000 + 16 * PAGE)]
    assert region_a["equal"] == 2048 - 16 and region_a.get("added", 0) == region_a.get("removed", 0) == 0
    heap = found["vma 556a13dbb000-556a13ddc000"]        # the second malloc'ed secret
    assert heap.get("added", 0) + heap.get("changed", 0) >= 1
    assert "vma 7f00be600000-7f00bea00000" not in found   # B (shared) unchanged


@needs_corpus
def test_diff_json_lists_changed_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["diff", str(CORPUS / "twice" / "images-a"), str(CORPUS / "twice" / "images-b"),
                       "--only", "memory", "--json"])
    assert status == 1
    memory = {c["path"][1]: c["new"] for c in json.loads(capsys.readouterr().out)["changes"]}
    assert memory["vma 7f00bea00000-7f00bf200000"]["changed_ranges"] == [[0x7F00BEA00000, 0x7F00BEA00000 + 16 * PAGE]]


@needs_corpus
def test_incremental_pair_shows_the_pages_that_changed() -> None:
    found = _memory(CORPUS / "incremental" / "images-0", CORPUS / "incremental" / "images-1")
    region_a = found["vma 7f751d63e000-7f751e641000"]
    base = 0x7F751D63E000
    assert list(region_a["changed_ranges"]) == [(base + 100 * PAGE, base + 200 * PAGE)]  # pages 100-199: SCENARIO.md
    assert region_a["moved to parent"] >= 3900   # the rest is kept in images-0 by reference


def test_page_runs_merge_contiguous_pages_and_encode_as_pairs() -> None:
    runs = PageRuns()
    for page in (0, 1, 2, 5, 7, 8):
        runs.add(BASE + page * PAGE, PAGE)
    assert list(runs) == [(BASE, BASE + 3 * PAGE), (BASE + 5 * PAGE, BASE + 6 * PAGE),
                          (BASE + 7 * PAGE, BASE + 9 * PAGE)]
    assert len(runs) == 3
    assert json.loads(json.dumps({"r": runs}, default=lambda v: v.to_json())) == {"r": [list(r) for r in runs]}
    out = io.StringIO()
    emit_json({"r": runs}, out)          # streamed from iter_json: the same text
    assert out.getvalue() == json.dumps({"r": runs}, default=lambda v: v.to_json(), indent=2) + "\n"


def test_same_dump_is_equal() -> None:
    from corpus import SAMPLES

    assert _memory(SAMPLES / "fds", SAMPLES / "fds") == {}


def _synth(folder: Path, pages: dict[int, bytes], vma_pages: int = 64) -> Path:
    task = SynthTask(7, "synth", vmas=[SynthVma.anon(BASE, vma_pages * PAGE)], pages=pages)
    return build_dump(folder, [task])


def test_added_removed_changed_and_byte_ranges(tmp_path: Path) -> None:
    old = {BASE + i * PAGE: b"X%05d" % i for i in range(10)}
    new = dict(old)
    new[BASE + 2 * PAGE] = b"X00002-changed"          # bytes 6..13 differ
    del new[BASE + 5 * PAGE]                           # no longer dumped
    new[BASE + 20 * PAGE] = b"new page"
    a, b = _synth(tmp_path / "a", old), _synth(tmp_path / "b", new)
    (detail,) = _memory(a, b, page_ranges=True).values()
    assert (detail["changed"], detail["removed"], detail["added"], detail["equal"]) == (1, 1, 1, 8)
    assert list(detail["changed_ranges"]) == [(BASE + 2 * PAGE, BASE + 3 * PAGE)]
    assert detail["byte_ranges"] == {hex(BASE + 2 * PAGE): [(6, 14)]}


def test_memory_comparison_streams(tmp_path: Path) -> None:
    """64 MiB on each side, every 100th page changed: traced memory stays far below the data size."""
    count = 16384
    pattern = bytes(range(256)) * (PAGE // 256)

    def pages(changed: bool):
        for i in range(count):
            yield pattern if not (changed and i % 100 == 0) else pattern[::-1]

    def dump(folder: Path, changed: bool) -> Path:
        task = SynthTask(7, "big", vmas=[SynthVma.anon(BASE, count * PAGE)], pages={BASE: pages(changed)})
        return build_dump(folder, [task])

    a, b = dump(tmp_path / "a", False), dump(tmp_path / "b", True)
    tracemalloc.start()
    (detail,) = _memory(a, b).values()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert detail["changed"] == len(range(0, count, 100)) and detail["equal"] == count - detail["changed"]
    assert peak < 8 << 20


def test_older_dump_maps_memory_the_newer_does_not(tmp_path: Path) -> None:
    """Pages of a mapping only the older dump has are "removed" in that mapping (was a TypeError, exit 1)."""
    kept, gone = SynthVma.anon(BASE, 4 * PAGE), SynthVma.anon(BASE + 64 * PAGE, 2 * PAGE)
    old = build_dump(tmp_path / "a", [SynthTask(7, "synth", vmas=[kept, gone],
                                                pages={BASE: b"same", BASE + PAGE: b"old",
                                                       BASE + 64 * PAGE: b"gone", BASE + 65 * PAGE: b"gone"})])
    new = build_dump(tmp_path / "b", [SynthTask(7, "synth", vmas=[kept], pages={BASE: b"same", BASE + PAGE: b"new"})])
    found = _memory(old, new)
    assert list(found) == [f"vma {BASE:x}-{BASE + 4 * PAGE:x}", f"vma {BASE + 64 * PAGE:x}-{BASE + 66 * PAGE:x}"]
    assert found[f"vma {BASE:x}-{BASE + 4 * PAGE:x}"]["changed"] == 1
    assert found[f"vma {BASE + 64 * PAGE:x}-{BASE + 66 * PAGE:x}"]["removed"] == 2
    back = _memory(new, old)          # and the other way: added, in the newer dump's mapping
    assert back[f"vma {BASE + 64 * PAGE:x}-{BASE + 66 * PAGE:x}"]["added"] == 2


def test_pages_beyond_a_shrunk_mapping_count_in_the_older_mapping(tmp_path: Path) -> None:
    old = build_dump(tmp_path / "a", [SynthTask(7, "synth", vmas=[SynthVma.anon(BASE, 8 * PAGE)],
                                                pages={BASE + i * PAGE: b"p%d" % i for i in range(8)})])
    new = build_dump(tmp_path / "b", [SynthTask(7, "synth", vmas=[SynthVma.anon(BASE, 4 * PAGE)],
                                                pages={BASE + i * PAGE: b"p%d" % i for i in range(4)})])
    found = _memory(old, new)
    assert found == {f"vma {BASE:x}-{BASE + 8 * PAGE:x}": found[f"vma {BASE:x}-{BASE + 8 * PAGE:x}"]}
    assert found[f"vma {BASE:x}-{BASE + 8 * PAGE:x}"]["removed"] == 4


@needs_corpus
@pytest.mark.parametrize(("a", "b"), [("twice/images-b", "twice/images-a"), ("container/images", "loop-sh/images"),
                                      ("ns/images", "container/images")])
def test_newest_first_and_other_programs(a: str, b: str) -> None:
    found = _memory(CORPUS / a, CORPUS / b)
    assert found
    if a.startswith("twice"):   # b's extra heap string is not in a
        heap = found["vma 556a13dbb000-556a13ddc000"]
        assert heap["removed"] == 1 and heap["changed"] == 2


def test_people_output_lists_changed_page_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = {BASE + i * PAGE: b"X%05d" % i for i in range(10)}
    new = {**old, BASE + 2 * PAGE: b"X00002-changed", BASE + 3 * PAGE: b"X00003-changed"}
    a, b = _synth(tmp_path / "a", old), _synth(tmp_path / "b", new)
    assert cli.main(["diff", str(a), str(b), "--only", "memory", "--page-ranges"]) == 1
    out = capsys.readouterr().out
    assert f"{BASE + 2 * PAGE:#x}-{BASE + 4 * PAGE:#x} (8.0 KiB)" in out
    assert f"{BASE + 2 * PAGE:#x}: bytes 6-13" in out
    assert cli.main(["diff", str(a), str(b), "--only", "memory"]) == 1
    assert f"{BASE + 2 * PAGE:#x}-" not in capsys.readouterr().out


def test_progress_is_a_callback(tmp_path: Path) -> None:
    """The caller is told the bytes to compare and how far it got (analysis draws no progress bar itself)."""
    seen: dict[str, list[int]] = {"total": [], "advance": [], "closed": []}

    class Sink:
        def advance(self, n: int) -> None:
            seen["advance"].append(n)

        def close(self) -> None:
            seen["closed"].append(1)

    def factory(total: int) -> Sink:
        seen["total"].append(total)
        return Sink()

    old = {BASE + i * PAGE: b"X%05d" % i for i in range(10)}
    a, b = _synth(tmp_path / "a", old), _synth(tmp_path / "b", {**old, BASE + 20 * PAGE: b"new"})
    _memory(a, b, progress=factory)
    assert seen["total"] == [21 * PAGE] and sum(seen["advance"]) == 21 * PAGE and seen["closed"] == [1]
