"""The file-order literal search (``memory/filescan.py``) against the walk in address order: same hits, same
order, same context, on random synthetic chains (pages from up to three dumps, holes, a shared object mapped
by two tasks and perhaps twice by one), with needles across page boundaries whose pages sit apart in the
files and false ones across pages that sit together in a file but not in the address space."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgtool
from imgtool.memory import filescan
from imgtool.memory.search import Literal, search_dump, search_space, spaces
from imgtool.testing.synth import SynthShmem, SynthTask, SynthVma, build_dump

PAGE = 4096
BASE = 0x7F0000000000
SHM_BASE = 0x7E0000000000


class _Walked(Literal):
    """The same literal, searched by the walk in address order (``search_space`` takes the file order only for
    a plain ``Literal``)."""


def _page(rng: random.Random, needle: bytes) -> bytes:
    """Filler with pieces of the needle at both ends and a few inside (so needles cross page boundaries)."""
    if len(needle) >= PAGE and rng.random() < 0.25:     # a long needle (one byte repeated) across whole pages
        return needle[:1] * PAGE
    data = bytearray(b"." * PAGE)
    head, tail = needle[rng.randrange(len(needle) + 1):][:PAGE], needle[:rng.randrange(len(needle) + 1)][-PAGE:]
    data[:len(head)] = head
    data[PAGE - len(tail):] = tail
    for _ in range(rng.randrange(4) if len(needle) < PAGE else 0):
        at = rng.randrange(PAGE - len(needle))
        data[at:at + len(needle)] = needle if rng.random() < 0.5 else needle[:-1]
    return bytes(data)


def _chain(tmp: Path, rng: random.Random, needle: bytes, pages: int, levels: int, twice: bool) -> Path:
    """``levels`` dumps of two tasks; each later dump rewrites some pages and leaves the rest to its parent."""
    held: set[int] = set()      # pages some dump so far holds
    shm_held: set[int] = set()
    parent = None
    for level in range(levels):
        tasks = []
        for pid in (1, 2):
            dumped = {i for i in range(pages) if rng.random() < 0.8}       # the rest: holes (or lost pages)
            own = {i for i in dumped if level == 0 or i not in held or rng.random() < 0.4}
            vmas = [SynthVma.anon(BASE, pages // 2 * PAGE), SynthVma.anon(BASE + pages // 2 * PAGE,
                                                                            (pages - pages // 2) * PAGE),
                    SynthVma.anon_shared(SHM_BASE, 4 * PAGE, 7)]
            if twice and pid == 1:
                vmas.append(SynthVma.anon_shared(SHM_BASE + 8 * PAGE, 2 * PAGE, 7, pgoff=2 * PAGE))
            tasks.append(SynthTask(pid, vmas=vmas, pages={BASE + i * PAGE: _page(rng, needle) for i in sorted(own)},
                                   parent_runs=[(BASE + i * PAGE, 1) for i in sorted((dumped - own) & held)]))
            held |= own
        shm_own = {i for i in range(4) if level == 0 or rng.random() < 0.5}
        shm = SynthShmem(7, 4 * PAGE, pages={i * PAGE: _page(rng, needle) for i in sorted(shm_own)},
                         parent_runs=[(i * PAGE, 1) for i in sorted(set(range(4)) - shm_own) if i in shm_held])
        shm_held |= shm_own
        parent = build_dump(tmp / f"d{level}", tasks, parent=parent, shmem=[shm],
                            entry_pages=rng.choice([1, None]))
    return parent


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1 << 32), needle=st.binary(min_size=1, max_size=9).filter(lambda b: b"." not in b),
       levels=st.integers(1, 3), twice=st.booleans(), context=st.sampled_from([0, 3, 16, 5000]),
       window=st.sampled_from([1, 3, 2048]), block=st.sampled_from([5, PAGE - 1, filescan.BLOCK]),
       span_gap=st.sampled_from([0, 1 << 16]), seam_gap=st.sampled_from([0, 256, 1 << 14]),
       long=st.sampled_from([0, 0, 0, PAGE - 1, PAGE, 2 * PAGE + 3]))
def test_file_order_finds_what_the_walk_finds(seed: int, needle: bytes, levels: int, twice: bool, context: int,
                                              window: int, block: int, span_gap: int, seam_gap: int,
                                              long: int) -> None:
    """``long``: the needle is its first byte repeated so often, and some pages hold only that byte: matches
    across several seams (pages shorter than the needle)."""
    rng = random.Random(seed)
    needle = needle[:1] * long if long else needle
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.multiple(filescan, WINDOW_EXTENTS=window, BLOCK=block, SPAN_GAP=span_gap, SEAM_GAP=seam_gap):
        path = _chain(Path(tmp), rng, needle, 16, levels, twice)
        with imgtool.open(path) as dump:
            fast = list(search_dump(dump, Literal(needle), context=context))
            slow = list(search_dump(dump, _Walked(needle), context=context))
            assert fast == slow
            for space in spaces(dump):       # and what a plain find over each run finds
                expect = [run.vaddr + at for run in space.runs() for at in _occurrences(
                    bytes(run.extents.copy(run.vaddr, run.end)), needle)]
                assert [h.vaddr for h in fast if h.pid == space.pid] == expect


def test_false_match_across_file_neighbours_and_real_one_across_a_seam(tmp_path: Path) -> None:
    """The child holds pages 0 and 2 (together in its pages file), page 1 is the parent's: "AB|CD" across
    the child's two pages is no match; "XY|ZW" across pages 0 and 1 (apart in the files) is one."""
    parent = build_dump(tmp_path / "p", [SynthTask(1, vmas=[SynthVma.anon(BASE, 3 * PAGE)],
                                                   pages={BASE: bytes(3 * PAGE)})])
    page0 = b"." * (PAGE - 2) + b"AB"
    page1 = b"ZW" + b"." * (PAGE - 4) + b".."
    page2 = b"CD" + b"." * (PAGE - 2)
    parent = build_dump(tmp_path / "p2", [SynthTask(1, vmas=[SynthVma.anon(BASE, 3 * PAGE)],
                                                    pages={BASE + PAGE: page1})])
    child = build_dump(tmp_path / "c", [SynthTask(1, vmas=[SynthVma.anon(BASE, 3 * PAGE)],
                                                  pages={BASE: page0[:-2] + b"XY", BASE + 2 * PAGE: page2},
                                                  parent_runs=[(BASE + PAGE, 1)])], parent=parent, entry_pages=1)
    with imgtool.open(child) as dump:
        space = next(spaces(dump))
        assert list(search_space(space, Literal(b"YZ"))) == list(search_space(space, _Walked(b"YZ")))
        assert [h.vaddr for h in search_space(space, Literal(b"XYZW"), context=2)] == [BASE + PAGE - 2]
        assert [h.vaddr for h in search_space(space, Literal(b"XYCD"))] == []
        (hit,) = search_space(space, Literal(b"XYZW"), context=2)
        assert (hit.before, hit.after, Path(hit.file).parent.name) == (b"..", b"..", "c")


def _occurrences(haystack: bytes, needle: bytes) -> list[int]:
    found, at = [], haystack.find(needle)
    while at >= 0:
        found.append(at)
        at = haystack.find(needle, at + 1)
    return found
