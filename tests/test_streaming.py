"""The streaming paths never hold a whole pages file: peak traced Python memory stays bounded (not timed).

A generated 256 MiB dump (two dumps in a chain, two tasks, a shared object) is searched, extracted and
diffed under tracemalloc; mmapped pages files are not Python allocations, so the peak counts only what
the code copies or accumulates.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import imgtool
from imgtool.analysis.memdiff import MemoryComparer, side_of
from imgtool.memory import stream
from imgtool.memory.extract import extract
from imgtool.memory.search import Literal, search_dump, search_space, spaces
from imgtool.testing.synth import generate

NEEDLE = b"STREAMING-NEEDLE-5b1f"
BOUND = 32 << 20          # a few 8 MiB windows, far below the 256 MiB of pages


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate(tmp_path_factory.mktemp("streaming"), seed=11, tasks=2, gib=0.25, shmem_mib=16, chain=2,
                    fds=50, needle=NEEDLE)


def _peak(work: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_pages_are_big_enough_to_matter(chain: list[Path]) -> None:
    assert sum(p.stat().st_size for p in chain[0].glob("pages-*.img")) >= 256 << 20


def test_search_streams(chain: list[Path]) -> None:
    with imgtool.open(chain[-1]) as dump:
        hits, peak = _peak(lambda: list(search_dump(dump, Literal(NEEDLE))))
    assert [h.pid for h in hits] == [1001]
    assert peak < BOUND, f"search held {peak >> 20} MiB"


class _Sink:
    """A binary file that only counts what is written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def test_extract_streams(chain: list[Path]) -> None:
    with imgtool.open(chain[-1]) as dump:
        space, sink = dump.task(1000).memory, _Sink()
        _, peak = _peak(lambda: [extract(space, vma.start, vma.end, sink) for vma in space.vmas])
    assert sink.size >= 128 << 20
    assert peak < BOUND, f"extract held {peak >> 20} MiB"


def _memory_changes(a: Path, b: Path) -> Iterator[object]:
    with imgtool.open(a) as old, imgtool.open(b) as new:
        compare = MemoryComparer()
        for task in new.tasks:
            yield from compare(old.task(task.pid), task)


def test_diff_streams(chain: list[Path]) -> None:
    changes, peak = _peak(lambda: list(_memory_changes(*chain)))
    changed = sum(c.new["changed"] for c in changes)
    assert 0.05 < changed / (2 * 128 * 256 + 4096) < 0.2       # about 10% of the pages were rewritten
    assert peak < BOUND, f"diff held {peak >> 20} MiB"


def test_diff_of_identical_copies_streams(chain: list[Path], tmp_path: Path) -> None:
    """The parent against a copy of itself (hard links: other files to the comparer): every byte compared."""
    for item in chain[0].iterdir():
        os.link(item, tmp_path / item.name)
    changes, peak = _peak(lambda: list(_memory_changes(chain[0], tmp_path)))
    assert changes == []
    assert peak < BOUND, f"diff held {peak >> 20} MiB"


def test_summary_does_not_index_all_memory(tmp_path: Path) -> None:
    """summary reads argv through a windowed index: a 262,145-entry pagemap is never held (its index is ~14 MiB)."""
    from imgtool.cli.commands.inspect import summarize

    (dump,) = generate(tmp_path, seed=12, gib=1, fragmented=True, sparse=True)
    with imgtool.open(dump) as opened:
        info, peak = _peak(lambda: summarize(opened))
    assert info["processes"][0]["cmdline"][0] == "/usr/bin/synth"
    assert info["memory"]["present_pages"] == (1 << 18) + 1
    assert peak < 10 << 20, f"summary held {peak >> 20} MiB"


def test_walks_index_nothing(chain: list[Path]) -> None:
    """search and diff stream every pagemap (the parents' and the shared object's too): no address space they
    walk is ever indexed, so memory grows with neither the tasks nor their size."""
    with imgtool.open(chain[-1]) as dump:
        seen = []
        for space in spaces(dump):
            seen.append(space.pid)
            assert len(list(search_space(space, Literal(NEEDLE)))) == (space.pid == 1001)
            assert not space.indexed
        assert seen == [1000, 1001]
    with imgtool.open(chain[0]) as old, imgtool.open(chain[-1]) as new:
        for task in new.tasks:
            a, b = side_of(old, old.task(task.pid), task.pid), side_of(new, task, task.pid)
            assert MemoryComparer().compare(a, b)
            assert not a.space.indexed and not b.space.indexed


@pytest.fixture(scope="module")
def fragmented(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One-page runs between one-page holes (an extent per page), 16 and 128 MiB: 4,096 and 32,768 extents."""
    root = tmp_path_factory.mktemp("fragmented")
    return {mib: generate(root / str(mib), seed=13, gib=mib / 1024, fragmented=True)[0] for mib in (16, 128)}


def _walk_everything(path: Path) -> None:
    """Search, extract and diff (against a hard-linked copy: every page compared) the whole task."""
    copy = path.with_name(path.name + "-copy")
    if not copy.exists():
        copy.mkdir()
        for item in path.iterdir():
            os.link(item, copy / item.name)
    with imgtool.open(path) as dump:
        assert list(search_dump(dump, Literal(b"NOT-THERE-3c9e"))) == []
        space = dump.task(1000).memory
        sink = _Sink()
        for vma in space.vmas:
            extract(space, vma.start, vma.end, sink, chunk=1 << 16)
        assert sink.size >= space.dumped_bytes()
    assert list(_memory_changes(copy, path)) == []


def test_walk_memory_does_not_grow_with_the_extents(fragmented: dict[int, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """8x the extents, the same peak: the walks hold a batch of extents and those of one step of addresses,
    not an index of them (which would take at least 28 bytes an extent: 0.9 MiB more for the bigger dump).
    Steps of 1 MiB, so that the smaller dump fills many of them too."""
    monkeypatch.setattr(stream, "WINDOW", 1 << 20)
    _, small = _peak(lambda: _walk_everything(fragmented[16]))
    _, big = _peak(lambda: _walk_everything(fragmented[128]))
    assert big < small + (256 << 10), f"{small >> 10} KiB for 4,096 extents, {big >> 10} KiB for 32,768"
