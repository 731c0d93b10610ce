"""The seeded big-dump generator and the corpus scaler (imgtool.synth.generate, scale_corpus_dump)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import imgtool
from imgtool.format.image import Image
from imgtool.memory.search import Literal, search_dump
from imgtool.testing.synth import PAGE, SHMEM_BASE, generate, scale_corpus_dump

from corpus import CORPUS, SAMPLES

SMALL = {"tasks": 2, "gib": 1 / 128, "shmem_mib": 1, "fds": 5}     # 8 MiB of private memory


def _digests(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path: sha256 of regular files, the target of symlinks."""
    return {str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_symlink() or p.is_file()}


def test_same_seed_same_bytes_other_seed_other_pages(tmp_path: Path) -> None:
    generate(tmp_path / "a", seed=7, chain=2, **SMALL)
    generate(tmp_path / "b", seed=7, chain=2, **SMALL)
    generate(tmp_path / "c", seed=8, chain=2, **SMALL)
    a, b, c = (_digests(tmp_path / name) for name in "abc")
    assert a == b and len(a) > 20
    assert a["d0/pages-2.img"] != c["d0/pages-2.img"]
    assert a["d0/pstree.img"] == c["d0/pstree.img"]        # the seed changes bytes, not the shape


def test_chain_depth_and_parent_pages(tmp_path: Path) -> None:
    dumps = generate(tmp_path, seed=1, chain=3, dirty=0.25, **SMALL)
    assert [d.name for d in dumps] == ["d0", "d1", "d2"]
    assert [os.readlink(d / "parent") for d in dumps[1:]] == ["../d0", "../d1"]
    with imgtool.open(dumps[0]) as first, imgtool.open(dumps[-1]) as last:
        assert last.parent.parent.path.resolve() == first.path.resolve()
        for old, new in zip(first.tasks, last.tasks, strict=True):
            assert new.memory.problems == []
            assert new.memory.dumped_bytes() == old.memory.dumped_bytes()
            vma = old.memory.vmas[0]
            before, after = old.memory.read(vma.start, vma.size), new.memory.read(vma.start, vma.size)
            changed = sum(before[i:i + PAGE] != after[i:i + PAGE] for i in range(0, vma.size, PAGE))
            assert 0.3 < changed / (vma.size // PAGE) < 0.6        # two levels rewrite ~25% each
    own = sum(p.stat().st_size for p in dumps[1].glob("pages-*.img"))
    assert 0.15 < own / sum(p.stat().st_size for p in dumps[0].glob("pages-*.img")) < 0.35


def test_fragmented_pagemap_has_one_entry_per_page(tmp_path: Path) -> None:
    (dump,) = generate(tmp_path, seed=2, gib=1 / 64, fragmented=True)       # 4096 pages
    with Image.open(dump / "pagemap-1000.img") as img:
        assert img.count() == 1 + 4096 + 1                                   # head, pages, stack page
    with imgtool.open(dump) as opened:
        space = opened.tasks[0].memory
        assert len(list(space.runs())) == 4096 + 1                           # one-page runs between holes
        assert space.dumped_bytes() == (4096 + 1) * PAGE


def test_memory_reads_back_the_pages_files(tmp_path: Path) -> None:
    (dump,) = generate(tmp_path, seed=3, gib=1 / 64)
    with imgtool.open(dump) as opened:
        (task,) = opened.tasks
        memory = b"".join(task.memory.read(run.vaddr, run.length) for run in task.memory.runs())
        assert task.cmdline == ["/usr/bin/synth", "--worker", "0", "--pid-file", "/run/synth-1000.pid"]
        assert task.environ[0] == "PATH=/usr/bin:/bin"
    assert memory == (dump / "pages-1.img").read_bytes()


def test_shared_memory_fds_and_needle(tmp_path: Path) -> None:
    dumps = generate(tmp_path, seed=4, chain=2, needle=b"GENERATED-NEEDLE", **SMALL)
    with imgtool.open(dumps[-1]) as dump:
        assert [t.pid for t in dump.tasks] == [1000, 1001]
        assert [len(t.fds) for t in dump.tasks] == [3, 2]
        assert dump.tasks[1].fds[0].file.summary.startswith("/srv/synth/1001/data-0.db")
        shared = [t.memory.read(SHMEM_BASE, 1 << 20) for t in dump.tasks]
        assert shared[0] == shared[1] and shared[0] != bytes(1 << 20)
        hits = list(search_dump(dump, Literal(b"GENERATED-NEEDLE")))
    assert [(h.pid, h.file.endswith("d1/pages-3.img")) for h in hits] == [(1001, True)]


def test_sparse_pages_are_zero_holes(tmp_path: Path) -> None:
    (dump,) = generate(tmp_path, seed=5, gib=1 / 256, sparse=True)
    data = (dump / "pages-1.img").read_bytes()
    assert len(data) == (1 << 22) + PAGE and data[:1 << 22] == bytes(1 << 22)    # then the stack page
    assert data[1 << 22:].startswith(b"/usr/bin/synth\0")


@pytest.mark.parametrize("factor", [2, 5])
def test_scale_a_real_dump(tmp_path: Path, factor: int) -> None:
    src = SAMPLES / "loop-sh" / "images"
    out = scale_corpus_dump(src, tmp_path / "scaled", factor)
    size = sum(p.stat().st_size for p in src.glob("pages-*.img"))
    with imgtool.open(src) as before, imgtool.open(out) as after:
        old = {t.pid: t.memory for t in before.tasks}
        new = {t.pid: t.memory for t in after.tasks}
        grown = [pid for pid in old if len(new[pid].vmas) == len(old[pid].vmas) + 1]
        assert len(grown) == 1
        added = next(v for v in new[grown[0]].vmas if v not in old[grown[0]].vmas)
        template = max((v for v in old[grown[0]].vmas if v.prot == added.prot),
                       key=lambda v: old[grown[0]].dumped_bytes(v.start, v.end))
        assert new[grown[0]].raw(added.start, template.size) == old[grown[0]].raw(template.start, template.size)
        for pid, space in old.items():            # everything that was there reads the same
            for vma in space.vmas:
                assert new[pid].raw(vma.start, vma.size) == space.raw(vma.start, vma.size)
        total = sum(s.dumped_bytes() for s in new.values())
    assert 0.5 * factor * size <= total <= 1.5 * factor * size


@pytest.mark.skipif(not (CORPUS / "memory" / "images").is_dir(), reason="the team corpus is not beside the repo")
def test_scale_the_corpus_memory_dump(tmp_path: Path) -> None:
    src = CORPUS / "memory" / "images"
    out = scale_corpus_dump(src, tmp_path / "scaled", 2)
    with imgtool.open(src) as before, imgtool.open(out) as after:
        (old,), (new,) = before.tasks, after.tasks
        assert new.memory.problems == old.memory.problems
        assert new.cmdline == old.cmdline and len(new.memory.vmas) == len(old.memory.vmas) + 1
        assert 1.5 * old.memory.dumped_bytes() < new.memory.dumped_bytes() < 2.5 * old.memory.dumped_bytes()
        needle = b"CORPUS-SECRET-1234"
        assert len(list(search_dump(after, Literal(needle)))) == len(list(search_dump(before, Literal(needle))))
