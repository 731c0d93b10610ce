"""The streaming read contract (imgtool.memory.stream): address-ordered chunks, each in one VMA and one run of
dumped bytes, with an overlap; a scanner reporting only matches that start in the chunk proper finds a
match across a chunk boundary exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

import imgtool
from imgtool.memory.space import AddressSpace, address_space
from imgtool.memory.stream import Chunk, chunks
from imgtool.testing.synth import SynthTask, SynthVma, build_dump, generate

from corpus import CORPUS, SAMPLES

PAGE = 4096
BASE = 0x7F0000000000
REAL = [SAMPLES / "tree" / "images", SAMPLES / "loop-sh" / "images", CORPUS / "memory" / "images"]


def _find(piece: Chunk, needle: bytes) -> list[int]:
    """A scanner honouring the contract: matches starting in the chunk proper only."""
    found, data = [], bytes(piece.data)
    at = data.find(needle)
    while 0 <= at < piece.size:
        found.append(piece.vaddr + at)
        at = data.find(needle, at + 1)
    return found


def _check_chunks(space: AddressSpace, size: int, overlap: int) -> int:
    """Every chunk's invariants against the whole-index reads; returns how many chunks there were."""
    pos, count, dumped = 0, 0, 0
    for piece in chunks(space, size=size, overlap=overlap):
        assert piece.vaddr >= pos and 0 < piece.size <= size
        assert piece.size <= piece.length <= piece.size + overlap
        assert piece.vma is space.vma_at(piece.vaddr) or piece.vma == space.vma_at(piece.vaddr)
        if piece.vma is not None:
            assert piece.vma.start <= piece.vaddr and piece.end <= piece.vma.end
        assert bytes(piece.data) == bytes(space.raw(piece.vaddr, piece.length))
        assert space.dumped_bytes(piece.vaddr, piece.vaddr + piece.length) == piece.length   # no gap inside
        stop = piece.vaddr + piece.length
        if piece.length < piece.size + overlap:      # the overlap stops only where the run does
            assert space.locate(stop) is None
        pos, count, dumped = piece.end, count + 1, dumped + piece.size
    assert dumped == space.dumped_bytes()
    return count


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.parent.name)
def test_chunks_of_real_dumps_keep_the_contract(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    with imgtool.open(path) as dump:
        for task in dump.tasks:
            if task.mm is None:
                continue
            space = address_space(task)
            assert _check_chunks(space, 3 * PAGE + 7, 13) >= len(list(space.runs()))


def test_real_dump_needle_found_once_whatever_the_chunk_size() -> None:
    path = CORPUS / "memory" / "images"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    needle = b"CORPUS-SECRET-1234"
    with imgtool.open(path) as dump:
        space = address_space(dump.task(15755))
        whole = [h for piece in chunks(space, overlap=len(needle) - 1) for h in _find(piece, needle)]
        assert whole == [0x56365A7F72A0, 0x56365A7F751B]
        for size in (5, 1000, PAGE, PAGE + 3):     # chunk boundaries inside the needles
            assert [h for piece in chunks(space, 0x56365A7F7000, 0x56365A818000, size, len(needle) - 1)
                    for h in _find(piece, needle)] == whole


def _space(tmp: Path, data: dict[int, bytes], vmas: list[SynthVma], parent: Path | None = None,
           parent_runs: tuple[tuple[int, int], ...] = ()) -> AddressSpace:
    task = SynthTask(1, vmas=vmas, pages=data, parent_runs=parent_runs)
    return address_space(imgtool.open(build_dump(tmp, [task], parent=parent, entry_pages=1)).task(1))


def test_match_across_a_chunk_boundary_is_found_once(tmp_path: Path) -> None:
    data = bytearray(b"." * 4 * PAGE)
    data[PAGE - 3:PAGE + 3] = b"NEEDLE"
    space = _space(tmp_path, {BASE: bytes(data)}, [SynthVma.anon(BASE, 4 * PAGE)])
    for size in (PAGE, PAGE - 2, PAGE + 2, 7, 1 << 20):
        assert [h for piece in chunks(space, size=size, overlap=5) for h in _find(piece, b"NEEDLE")] == \
            [BASE + PAGE - 3]
    # without the overlap, a boundary inside the needle hides it
    assert [h for piece in chunks(space, size=PAGE) for h in _find(piece, b"NEEDLE")] == []


def test_each_chunk_knows_its_vma_and_the_overlap_runs_on_into_the_next(tmp_path: Path) -> None:
    """Two adjacent VMAs with dumped bytes across their border: chunks stop at the border, overlaps do not."""
    data = bytearray(b"." * 4 * PAGE)
    data[2 * PAGE - 2:2 * PAGE + 2] = b"SEAM"
    vmas = [SynthVma.anon(BASE, 2 * PAGE), SynthVma.anon(BASE + 2 * PAGE, 2 * PAGE)]
    space = _space(tmp_path, {BASE: bytes(data)}, vmas)
    pieces = [(p.vaddr, p.end, p.length, p.vma.start) for p in chunks(space, size=3 * PAGE, overlap=3)]
    assert pieces == [(BASE, BASE + 2 * PAGE, 2 * PAGE + 3, BASE), (BASE + 2 * PAGE, BASE + 4 * PAGE, 2 * PAGE,
                                                                    BASE + 2 * PAGE)]
    assert [h for piece in chunks(space, size=3 * PAGE, overlap=3) for h in _find(piece, b"SEAM")] == \
        [BASE + 2 * PAGE - 2]


def test_chunks_never_cross_a_gap_and_fill_zeroes_it(tmp_path: Path) -> None:
    data = {BASE: b"a" * PAGE, BASE + 2 * PAGE: b"b" * PAGE}
    space = _space(tmp_path, data, [SynthVma.anon(BASE, 4 * PAGE)])
    assert [(p.vaddr, p.length) for p in chunks(space, overlap=100)] == [(BASE, PAGE), (BASE + 2 * PAGE, PAGE)]
    filled = [(bytes(p.data), p.vma) for p in chunks(space, BASE, BASE + 4 * PAGE, size=3000, fill=True)]
    assert b"".join(data for data, _ in filled) == space.read(BASE, 4 * PAGE, zero_fill=True)
    assert all(vma is not None and vma.start == BASE for _, vma in filled)


def test_chunks_across_a_parent_seam(tmp_path: Path) -> None:
    """Pages alternating between a child dump and its parent: one run, read across the pages files."""
    content = b"".join(bytes([65 + i]) * PAGE for i in range(8))
    vmas = [SynthVma.anon(BASE, 8 * PAGE)]
    parent = build_dump(tmp_path / "p", [SynthTask(1, vmas=vmas, pages={BASE: content})], entry_pages=1)
    own = {BASE + i * PAGE: content[i * PAGE:(i + 1) * PAGE] for i in range(0, 8, 2)}
    space = _space(tmp_path / "c", own, vmas, parent, tuple((BASE + i * PAGE, 1) for i in range(1, 8, 2)))
    _check_chunks(space, PAGE + 1, 2)
    needle = content[3 * PAGE - 1:3 * PAGE + 1]          # "CD", across the seam between the files
    assert [h for p in chunks(space, size=PAGE + 1, overlap=1) for h in _find(p, needle)] == [BASE + 3 * PAGE - 1]


def test_chunks_of_a_generated_chain(tmp_path: Path) -> None:
    path = generate(tmp_path / "gen", gib=1 / 256, tasks=2, chain=2, fragmented=True)[-1]
    with imgtool.open(path) as dump:
        for task in dump.tasks:
            _check_chunks(address_space(task), 64 << 10, 31)
