"""Bulk code paths give exactly what the one-at-a-time paths give (windowed argv reads, bulk extent
appends, pagemap batches of any size)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import imgtool
from imgtool.format import pagemap
from imgtool.memory.chain import DumpMemory
from imgtool.memory.extents import ExtentIndex
from imgtool.memory.space import cmdline_of
from imgtool.testing.synth import generate

from corpus import CORPUS, SAMPLES


def _dump_dirs() -> list[Path]:
    roots = [SAMPLES] + ([CORPUS] if CORPUS.is_dir() else [])
    return sorted(p.parent for root in roots for p in root.glob("*/**/pstree.img"))


@pytest.mark.parametrize("path", _dump_dirs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_windowed_cmdline_equals_full_address_space(path: Path) -> None:
    with imgtool.open(path) as windowed, imgtool.open(path) as full:
        assert [cmdline_of(t) for t in windowed.tasks] == [t.cmdline for t in full.tasks]


def test_windowed_cmdline_through_a_parent_chain(tmp_path: Path) -> None:
    dumps = generate(tmp_path, seed=5, tasks=3, gib=1 / 64, shmem_mib=1, chain=3, fragmented=True)
    with imgtool.open(dumps[-1]) as windowed, imgtool.open(dumps[-1]) as full:
        assert [cmdline_of(t) for t in windowed.tasks] == [t.cmdline for t in full.tasks]
        assert cmdline_of(windowed.tasks[2])[:3] == ["/usr/bin/synth", "--worker", "2"]


@pytest.mark.parametrize("fragmented", [False, True])
@pytest.mark.parametrize("chunk", [40, 333, 1 << 14])
def test_windowed_cmdline_with_batches_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fragmented: bool,
                                               chunk: int) -> None:
    """Batches wholly below argv are skipped (only the offset moves), whatever the batch size and wherever a run
    crosses from a skipped batch into the window."""
    monkeypatch.setattr(pagemap, "_CHUNK", chunk)
    dumps = generate(tmp_path, seed=7, tasks=2, gib=1 / 64, shmem_mib=1, chain=2, fragmented=fragmented)
    with imgtool.open(dumps[-1]) as windowed, imgtool.open(dumps[-1]) as full:
        assert [cmdline_of(t) for t in windowed.tasks] == [t.cmdline for t in full.tasks]
        assert cmdline_of(windowed.tasks[1])[:3] == ["/usr/bin/synth", "--worker", "1"]


@pytest.mark.parametrize("seed", range(50))
def test_bulk_extend_equals_appends(seed: int) -> None:
    rng = random.Random(seed)
    rows, pos = [], rng.randrange(1 << 20)
    for _ in range(rng.randint(1, 60)):
        pos += rng.choice([0, 0, 4096, 8192])
        length = rng.choice([4096, 8192, 40960])
        file_id = rng.choice([0, 0, 1])
        offset = rows[-1][3] + rows[-1][1] - rows[-1][0] if rows and rng.random() < 0.5 else rng.randrange(64) << 12
        rows.append((pos, pos + length, file_id, offset))
        pos += length
    one, bulk = ExtentIndex(), ExtentIndex()
    for start, end, file_id, offset in rows:
        one.append(start, end - start, file_id, offset)
    cut = rng.randint(0, len(rows))
    for part in (rows[:cut], rows[cut:]):
        bulk.extend(*([row[k] for row in part] for k in range(4)))
    assert [list(a) for a in (bulk.starts, bulk.ends, bulk.file_ids, bulk.offsets)] == \
           [list(a) for a in (one.starts, one.ends, one.file_ids, one.offsets)]


def test_reads_end_where_an_extent_begins() -> None:
    # extract's chunks end before an extent that would straddle them, unless it begins the chunk.
    index = ExtentIndex()
    for start, end, file_id in ((0, 10, 0), (10, 30, 1), (40, 50, 0)):
        index.append(start, end - start, file_id, 0)
    assert [index.cut(0, 15), index.cut(10, 15), index.cut(0, 10), index.cut(0, 35), index.cut(30, 45)] == \
           [10, 15, 10, 35, 40]


def test_index_does_not_depend_on_batch_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dumps = generate(tmp_path, seed=6, tasks=2, gib=1 / 128, shmem_mib=1, chain=2, fragmented=True)

    def arrays(path: Path) -> list[list[list[int]]]:
        with imgtool.open(path) as dump:
            return [[list(a) for a in (i.starts, i.ends, i.offsets)] for i in (t.memory.index for t in dump.tasks)]

    whole = arrays(dumps[-1])
    monkeypatch.setattr(pagemap, "_CHUNK", 333)         # batches of a few entries, cut anywhere
    assert arrays(dumps[-1]) == whole


def _indexes(path: Path) -> list[list[list[int]]]:
    """Every task's extents (start, end, file, offset), the file given by path."""
    with imgtool.open(path) as dump:
        out = []
        for task in dump.tasks:
            index = task.memory.index
            names = [str(index.files[i].path) for i in index.file_ids]
            out.append([list(index.starts), list(index.ends), names, list(index.offsets)])
        return out


def _chains(tmp_path: Path) -> list[Path]:
    dense = generate(tmp_path / "dense", seed=8, tasks=2, gib=1 / 64, shmem_mib=1, chain=3, dirty=0.3)
    fragmented = generate(tmp_path / "frag", seed=9, tasks=2, gib=1 / 128, shmem_mib=1, chain=3, fragmented=True)
    real = [p.parent for p in (CORPUS.glob("*/images*/pstree.img") if CORPUS.is_dir() else [])]
    return [*dense, *fragmented, *real, *(p.parent for p in SAMPLES.glob("*/images/pstree.img"))]


def test_bulk_index_equals_stretch_by_stretch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chains = _chains(tmp_path)
    bulk = [_indexes(path) for path in chains]
    monkeypatch.setattr(DumpMemory, "_bulk", lambda self, *args: False)
    assert [_indexes(path) for path in chains] == bulk
