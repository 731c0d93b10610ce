"""Process memory: real CRIU dumps (memory, incremental, twice) and synthetic parent chains."""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgtool
from imgtool.crit import decode
from imgtool.errors import FormatError, ImgtoolError, NotDumpedError, UnmappedAddressError
from imgtool.format.image import Image, image_bytes
from imgtool.format.pb import message_class
from imgtool.memory.extract import extract
from imgtool.memory.shmem import shmem_id
from imgtool.memory.space import AddressSpace, address_space, cmdline, environ
from imgtool.model.dump import Dump
from imgtool.testing.synth import SynthShmem, SynthTask, SynthVma, build_dump, marked_pages

from corpus import CORPUS

PAGE = 4096
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
       "TERM=dumb"]


def page(prefix: bytes, i: int) -> bytes:
    mark = prefix + b"%08d" % i
    return mark + bytes(PAGE - len(mark))


def open_corpus(*parts: str) -> Dump:
    path = CORPUS.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"CRIU corpus not found at {CORPUS} (scenario {'/'.join(parts)})")
    return imgtool.open(path)


# -- corpus: memory -------------------------------------------------------------------
# memprog-stdout-at-dump.txt: A 0x7fdc69600000 (16384 pages), B 0x7fdc69200000 (1024, shared),
# C 0x7fdc6d6e2000 (256, file map, every 8th page dirty), D+E one VMA 0x7fdc68100000-0x7fdc69200000.

A, B, C, DE, DE_END = 0x7FDC69600000, 0x7FDC69200000, 0x7FDC6D6E2000, 0x7FDC68100000, 0x7FDC69200000
SECRET = 0x56365A7F72A0


@pytest.fixture(scope="module")
def memory() -> Iterator[AddressSpace]:
    dump = open_corpus("memory", "images")
    with dump:
        yield address_space(dump.task(15755))


def test_region_a_every_page_whole(memory: AddressSpace) -> None:
    data = memory.read(A, 16384 * PAGE)
    assert data == b"".join(page(b"PAGE", i) for i in range(16384))


def test_region_b_comes_from_the_memfd_shmem_pagemap(memory: AddressSpace) -> None:
    vma = memory.vma_at(B)
    assert (vma.prot, vma.shared_object, vma.shmid) == ("rw-s", "memfd", 2)
    assert "VMA_AREA_MEMFD" in vma.status
    with open_corpus("memory", "images") as dump:
        assert shmem_id(dump, vma) == 345
    assert memory.read(B, 1024 * PAGE) == b"".join(page(b"SHMPAGE", i) for i in range(1024))
    pages, offset = memory.locate(B + 5 * PAGE)
    assert (pages.path.name, offset) == ("pages-1.img", 5 * PAGE)


def test_region_c_only_dirty_pages_are_dumped(memory: AddressSpace) -> None:
    assert memory.read(C + 8 * PAGE, 22) == b"DIRTY-FILEPAGE00000008"
    assert all(memory.read(C + i * PAGE, PAGE) == page(b"DIRTY-FILEPAGE", i) for i in range(0, 256, 8))
    with pytest.raises(NotDumpedError, match=r"pid 15755: address 0x7fdc6d6eb000 in VMA "
                                             r"0x7fdc6d6e2000-0x7fdc6d7e2000 rw-p"):
        memory.read(C + 9 * PAGE, 4)
    assert memory.read(C + 9 * PAGE, PAGE, zero_fill=True) == bytes(PAGE)
    assert memory.dumped_bytes(C, C + 256 * PAGE) == 32 * PAGE


def test_untouched_and_zero_read_regions_are_zero_filled(memory: AddressSpace) -> None:
    vma = memory.vma_at(DE)
    assert (vma.start, vma.end) == (DE, DE_END)
    assert memory.dumped_bytes(DE, DE_END) == 0
    with pytest.raises(NotDumpedError) as info:
        memory.read(DE_END - PAGE, 16)
    assert info.value.address == DE_END - PAGE and info.value.vma == vma
    assert memory.read(DE, DE_END - DE, zero_fill=True) == bytes(DE_END - DE)


def test_unmapped_addresses_raise_even_with_zero_fill(memory: AddressSpace) -> None:
    for addr in (0x1000, A + 16384 * PAGE):
        with pytest.raises(UnmappedAddressError, match=f"pid 15755: address {addr:#x} is not mapped"):
            memory.read(addr, 1, zero_fill=True)
    with pytest.raises(UnmappedAddressError) as info:   # a read running off the end of A
        memory.read(A + 16384 * PAGE - 8, 16)
    assert info.value.address == A + 16384 * PAGE and "0x7fdc69600000-0x7fdc6d600000 rw-p" in str(info.value)
    assert memory.vma_at(0x1000) is None


def test_heap_secret_cmdline_environ_and_page_size(memory: AddressSpace) -> None:
    assert memory.read(SECRET, 19) == b"CORPUS-SECRET-1234\0"
    assert memory.page_size == PAGE
    assert cmdline(memory) == ["./memprog", "/tmp/criu-work2/memory", "64"]
    assert environ(memory) == ENV


def test_dumped_bytes_match_the_stats(memory: AddressSpace) -> None:
    # stats: pages_written 16444 private pages + the 1024-page memfd mapped once
    assert memory.dumped_bytes() == (16444 + 1024) * PAGE
    runs = list(memory.runs())
    assert sum(r.length for r in runs) == memory.dumped_bytes()
    assert all(a.end < b.vaddr for a, b in itertools.pairwise(runs))   # gaps separate runs


# -- corpus: incremental (images-1 -> parent images-0) ----------------------------------

IA, IB, ISECRET = 0x7F751D63E000, 0x7F751D23E000, 0x55E9D3ACC2A0


def test_incremental_pages_come_from_the_right_dump() -> None:
    with open_corpus("incremental", "images-1") as dump:
        assert dump.parent is not None and dump.parent.path.name == "images-0"
        space = address_space(dump.task(142))
        assert space.problems == []
        data = space.read(IA, 4096 * PAGE)
        for i in range(4096):
            mark = b"MODIFIED%08d-GEN1" % i if 100 <= i < 200 else b"PAGE%08d" % i
            assert data[i * PAGE:i * PAGE + len(mark) + 1] == mark + b"\0", i
            pages, _ = space.locate(IA + i * PAGE)
            assert pages.path.parent.name == ("images-1" if 100 <= i < 200 else "images-0"), i
        assert space.read(IB, 17) == b"SHMMODIFIED-GEN1\0"          # memfd object, dumped in full again
        assert space.read(IB + PAGE, 16) == b"SHMPAGE00000001\0"
        assert space.read(ISECRET, 18) == b"CORPUS-SECRET-1234"
        assert cmdline(space) == ["/usr/bin/memprog", "/tmp/criu-work/incremental", "16"]


def test_incremental_parent_entries_are_split_across_parent_entries() -> None:
    with open_corpus("incremental", "images-1") as dump:
        space = address_space(dump.task(142))
        parent_files = {e.pages.path for e in space.segments() if e.pages.path.parent.name == "images-0"}
        assert len(parent_files) == 1
        # every page the pre-dump had and the dump did not rewrite is served from images-0
        from_parent = sum(e.length for e in space.segments() if e.pages.path.parent.name == "images-0")
        assert from_parent == 4047 * PAGE


# -- corpus: twice ----------------------------------------------------------------------

TA, TSECRET, TSECRET2 = 0x7F00BEA00000, 0x556A13DBB2A0, 0x556A13DBC3C0


def test_twice_first_dump() -> None:
    with open_corpus("twice", "images-a") as dump:
        space = address_space(dump.task(16315))
        assert space.read(TA, 12) == b"PAGE00000000"
        assert space.read(TSECRET, 18) == b"CORPUS-SECRET-1234"
        assert environ(space) == ENV
        with pytest.raises(UnmappedAddressError):
            space.read(TSECRET2 + 0x100000, 1)


def test_twice_second_dump_parent_and_child() -> None:
    with open_corpus("twice", "images-b") as dump:
        assert [(t.pid, t.comm) for t in dump.tasks] == [(16315, "memprog"), (16387, "memprog-child")]
        for task in dump.tasks:
            space = address_space(task)
            assert space.read(TA, 20) == b"CHANGED00000000-GEN1"
            assert space.read(TA + 16 * PAGE, 12) == b"PAGE00000016"
            assert space.read(TSECRET2, 24) == b"CORPUS-SECRET-5678-GEN1\0"
            assert space.read(0x7F00BE600000, 15) == b"SHMPAGE00000000"   # B, shared memfd


# -- synthetic dumps ----------------------------------------------------------------------

BASE = 0x7F0000000000


def chain(tmp_path: Path) -> Path:
    """Three levels: every page written by the level that last changed it.

    level 0: pages 0..63 "L0-", one pagemap entry per page (fragmented)
    level 1: pages 8..11 and 40..47 "L1-", the rest PE_PARENT, in 3-page entries
    level 2: page 9 and 41..42 "L2-", the rest PE_PARENT in two long entries
    """
    vma = [SynthVma.anon(BASE, 64 * PAGE)]
    d0 = build_dump(tmp_path / "d0", [SynthTask(7, vmas=vma, pages={BASE: marked_pages(0, 64, prefix=b"L0-")})],
                    entry_pages=1)
    d1 = build_dump(tmp_path / "d1", [SynthTask(7, vmas=vma, pages={
        BASE + 8 * PAGE: marked_pages(8, 4, prefix=b"L1-"), BASE + 40 * PAGE: marked_pages(40, 8, prefix=b"L1-")},
        parent_runs=[(BASE, 8), (BASE + 12 * PAGE, 28), (BASE + 48 * PAGE, 16)])], parent=d0, entry_pages=3)
    return build_dump(tmp_path / "d2", [SynthTask(7, vmas=vma, pages={
        BASE + 9 * PAGE: marked_pages(9, 1, prefix=b"L2-"), BASE + 41 * PAGE: marked_pages(41, 2, prefix=b"L2-")},
        parent_runs=[(BASE, 9), (BASE + 10 * PAGE, 31), (BASE + 43 * PAGE, 21)])], parent=d1,
        parent_as_file=True)


def expected_level(i: int) -> int:
    if i in (9, 41, 42):
        return 2
    return 1 if 8 <= i < 12 or 40 <= i < 48 else 0


def assert_apart(space: AddressSpace) -> None:
    """No extent continues the one before it (same file, next offset): the index merged all it could."""
    e = space.index
    for i in range(1, len(e)):
        touching = (e.starts[i] == e.ends[i - 1] and e.file_ids[i] == e.file_ids[i - 1]
                    and e.offsets[i] == e.offsets[i - 1] + e.ends[i - 1] - e.starts[i - 1])
        assert not touching, f"extents {i - 1} and {i} should be one"


def test_three_level_chain_with_split_parent_entries(tmp_path: Path) -> None:
    with imgtool.open(chain(tmp_path)) as dump:
        assert [d.path.name for d in dump.chain()] == ["d2", "d1", "d0"]
        space = address_space(dump.task(7))
        assert_apart(space)
        data = space.read(BASE, 64 * PAGE)
        for i in range(64):
            level = expected_level(i)
            assert data[i * PAGE:(i + 1) * PAGE] == page(b"L%d-" % level, i), i
            assert space.locate(BASE + i * PAGE)[0].path.parent.name == f"d{level}"
        assert space.dumped_bytes() == 64 * PAGE and len(list(space.runs())) == 1


PRESENT, IN_PARENT, ABSENT = "present", "parent", "absent"
CHAIN_PAGES = 40


def _level_task(level: int, states: list[str]) -> SynthTask:
    """The task of one level: runs of equal states as page data (marked "L<level>-") or PE_PARENT runs."""
    pages, parent_runs, i = {}, [], 0
    for state, run in itertools.groupby(states):
        n = len(list(run))
        if state == PRESENT:
            pages[BASE + i * PAGE] = b"".join(page(b"L%d-" % level, j) for j in range(i, i + n))
        elif state == IN_PARENT:
            parent_runs.append((BASE + i * PAGE, n))
        i += n
    return SynthTask(8, vmas=[SynthVma.anon(BASE, CHAIN_PAGES * PAGE)], pages=pages, parent_runs=parent_runs)


def _model(levels: list[list[str]], i: int) -> bytes:
    """Page ``i`` as CRIU restores it: the newest level that has it, through PE_PARENT; zeros if none does."""
    for level in reversed(range(len(levels))):
        if levels[level][i] != IN_PARENT:
            return page(b"L%d-" % level, i) if levels[level][i] == PRESENT else bytes(PAGE)
    return bytes(PAGE)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(levels=st.lists(st.lists(st.sampled_from([PRESENT, IN_PARENT, ABSENT]), min_size=CHAIN_PAGES,
                                max_size=CHAIN_PAGES), min_size=1, max_size=3),
       entry_pages=st.sampled_from([None, 1, 3]))
def test_chains_resolve_as_the_page_model(tmp_path_factory: pytest.TempPathFactory, levels: list[list[str]],
                                          entry_pages: int | None) -> None:
    """Random chains (PE_PARENT anywhere, parents split into entries of any size): the indexed read and the
    streamed extract give every page of the newest level that has it."""
    root, parent = tmp_path_factory.mktemp("chain"), None
    for level, states in enumerate(levels):
        parent = build_dump(root / f"d{level}", [_level_task(level, states)], parent=parent, entry_pages=entry_pages)
    expected = b"".join(_model(levels, i) for i in range(CHAIN_PAGES))
    with imgtool.open(parent) as dump:
        streamed = io.BytesIO()
        extract(address_space(dump.task(8)), BASE, BASE + CHAIN_PAGES * PAGE, streamed, chunk=3 * PAGE + 5)
        assert streamed.getvalue() == expected
        assert address_space(dump.task(8)).read(BASE, CHAIN_PAGES * PAGE, zero_fill=True) == expected


def test_fragmented_and_dense_pagemaps_read_the_same(tmp_path: Path) -> None:
    def build(name: str, entry_pages: int | None) -> AddressSpace:
        task = SynthTask(3, vmas=[SynthVma.anon(BASE, 300 * PAGE)],
                         pages={BASE: marked_pages(0, 100), BASE + 150 * PAGE: marked_pages(150, 150)})
        dump = imgtool.open(build_dump(tmp_path / name, [task], entry_pages=entry_pages))
        return address_space(dump.task(3))

    dense, fragmented = build("dense", None), build("fragmented", 1)
    assert Image.open(tmp_path / "fragmented" / "pagemap-3.img").count() == 1 + 250
    assert Image.open(tmp_path / "dense" / "pagemap-3.img").count() == 1 + 2
    for space in (dense, fragmented):
        assert_apart(space)
        assert [(r.vaddr, r.length) for r in space.runs()] == [(BASE, 100 * PAGE), (BASE + 150 * PAGE, 150 * PAGE)]
        assert len(list(space.segments())) == 2          # one-page entries merge into file-contiguous extents
    assert dense.read(BASE, 300 * PAGE, zero_fill=True) == fragmented.read(BASE, 300 * PAGE, zero_fill=True)


def test_lazy_entries_have_no_data_and_do_not_move_offsets(tmp_path: Path) -> None:
    task = SynthTask(5, vmas=[SynthVma.anon(BASE, 12 * PAGE)],
                     pages={BASE: marked_pages(0, 2), BASE + 6 * PAGE: marked_pages(6, 2)},
                     lazy_runs=[(BASE + 2 * PAGE, 4)])
    with imgtool.open(build_dump(tmp_path, [task])) as dump:
        space = address_space(dump.task(5))
        assert space.read(BASE + 6 * PAGE, PAGE) == page(b"PAGE", 6)
        assert space.locate(BASE + 6 * PAGE)[1] == 2 * PAGE
        with pytest.raises(NotDumpedError):
            space.read(BASE + 2 * PAGE, 1)


def test_legacy_in_parent_and_compat_nr_pages(tmp_path: Path) -> None:
    parent = build_dump(tmp_path / "p", [SynthTask(9, vmas=[SynthVma.anon(BASE, 4 * PAGE)],
                                                   pages={BASE: marked_pages(0, 4, prefix=b"OLD-")})])
    child = build_dump(tmp_path / "c", [SynthTask(9, vmas=[SynthVma.anon(BASE, 4 * PAGE)])], parent=parent)
    entry, head = message_class("pagemap_entry"), message_class("pagemap_head")
    (child / "pagemap-9.img").write_bytes(image_bytes("PAGEMAP", [
        head(pages_id=1), entry(vaddr=BASE, compat_nr_pages=1),                       # present (no flags)
        entry(vaddr=BASE + PAGE, compat_nr_pages=3, in_parent=True)]))              # in the parent
    (child / "pages-1.img").write_bytes(page(b"NEW-", 0))
    with imgtool.open(child) as dump:
        space = address_space(dump.task(9))
        assert space.read(BASE, 4 * PAGE) == page(b"NEW-", 0) + b"".join(page(b"OLD-", i) for i in (1, 2, 3))


def test_parent_pages_without_a_parent_are_not_dumped(tmp_path: Path) -> None:
    task = SynthTask(4, vmas=[SynthVma.anon(BASE, 4 * PAGE)], pages={BASE: b"x" * PAGE}, parent_runs=[(BASE + PAGE, 3)])
    with imgtool.open(build_dump(tmp_path, [task])) as dump:
        space = address_space(dump.task(4))
        assert space.problems == [f"{3 * PAGE} bytes marked PE_PARENT in pagemap-4.img are in no parent dump"]
        assert space.read(BASE, 2 * PAGE, zero_fill=True) == b"x" * PAGE + bytes(PAGE)
        with pytest.raises(NotDumpedError):
            space.read(BASE + PAGE, 1)


def test_shared_objects_use_offsets_and_pgoff(tmp_path: Path) -> None:
    anon = SynthShmem(11, 8 * PAGE, {0: marked_pages(0, 8, prefix=b"ANON")})
    memfd = SynthShmem(345, 4 * PAGE, {2 * PAGE: marked_pages(2, 2, prefix=b"MFD")}, memfd_id=6)
    task = SynthTask(2, vmas=[SynthVma.anon_shared(BASE, 4 * PAGE, 11, pgoff=4 * PAGE),
                              SynthVma.memfd(BASE + 16 * PAGE, 4 * PAGE, file_id=6)])
    with imgtool.open(build_dump(tmp_path, [task], shmem=[anon, memfd])) as dump:
        space = address_space(dump.task(2))
        assert space.read(BASE, 4 * PAGE) == b"".join(page(b"ANON", i) for i in range(4, 8))
        assert space.read(BASE + 18 * PAGE, 2 * PAGE) == page(b"MFD", 2) + page(b"MFD", 3)
        with pytest.raises(NotDumpedError):      # memfd pages 0-1 are holes in the object
            space.read(BASE + 16 * PAGE, 1)
        assert [v.shared_object for v in space.vmas] == ["anon-shared", "memfd"]


def test_out_of_order_pagemap_is_a_format_error(tmp_path: Path) -> None:
    task = SynthTask(8, vmas=[SynthVma.anon(BASE, 4 * PAGE)])
    path = build_dump(tmp_path, [task])
    entry, head = message_class("pagemap_entry"), message_class("pagemap_head")
    (path / "pagemap-8.img").write_bytes(image_bytes("PAGEMAP", [
        head(pages_id=1), entry(vaddr=BASE + PAGE, compat_nr_pages=0, flags=4, nr_pages=1),
        entry(vaddr=BASE, compat_nr_pages=0, flags=4, nr_pages=1)]))
    (path / "pages-1.img").write_bytes(bytes(2 * PAGE))
    _first_use_raises(path, 8, r"pagemap-8.img: entry 2: .*address order")


def _first_use_raises(path: Path, pid: int, message: str) -> None:
    """The pagemap is read when the memory is first walked or read, and both say what is wrong with it."""
    with imgtool.open(path) as dump:
        space = address_space(dump.task(pid))
        with pytest.raises(FormatError, match=message):
            space.dumped_bytes()
        with pytest.raises(FormatError, match=message):
            space.read(BASE, PAGE)


def test_synthetic_images_decode_and_nothing_is_written_to_the_dump(tmp_path: Path) -> None:
    path = chain(tmp_path)
    before = sorted(os.listdir(path))
    for name in before:
        if name.endswith(".img") and not name.startswith("pages-"):
            assert decode.to_dict(Image.open(path / name))["magic"]
    with imgtool.open(path) as dump:
        task = dump.task(7)
        assert (task.comm, task.state) == ("synth", "alive")
        address_space(task).read(BASE, 64 * PAGE)
        files = dump.memory_store.files
        assert [f.path.name for f in files] == ["pages-1.img"]
        dump.close()
        assert all(f.data.closed for f in files)
    assert sorted(os.listdir(path)) == before


def test_truncated_pages_file_is_a_format_error(tmp_path: Path) -> None:
    task = SynthTask(6, vmas=[SynthVma.anon(BASE, 4 * PAGE)], pages={BASE: marked_pages(0, 4)})
    path = build_dump(tmp_path, [task])
    with open(path / "pages-1.img", "r+b") as f:
        f.truncate(3 * PAGE)
    _first_use_raises(path, 6, r"needs 16384 bytes of pages-1.img, it has")


def test_pagemap_entry_without_required_fields_is_a_decode_error(tmp_path: Path) -> None:
    # Found by the fuzz test below: a frame holding only a vaddr (protobuf-c, hence CRIU, refuses it).
    task = SynthTask(6, vmas=[SynthVma.anon(BASE, 64 * PAGE)], pages={BASE: marked_pages(0, 8)})
    build_dump(tmp_path, [task], entry_pages=2)
    image = (tmp_path / "pagemap-6.img").read_bytes()
    head_end = 8 + 4 + image[8]
    (tmp_path / "pagemap-6.img").write_bytes(image[:head_end] + b"\x04\x00\x00\x00\x08\x80\x80\x00")
    _first_use_raises(tmp_path, 6, r"pagemap_entry lacks required field\(s\) compat_nr_pages")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damaged_pagemaps_raise_only_imgtool_errors(tmp_path_factory: pytest.TempPathFactory,
                                                    data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("damaged")
    task = SynthTask(6, vmas=[SynthVma.anon(BASE, 64 * PAGE)], pages={BASE: marked_pages(0, 8)},
                     parent_runs=[(BASE + 8 * PAGE, 4)], lazy_runs=[(BASE + 12 * PAGE, 2)])
    build_dump(path, [task], entry_pages=2)
    image = bytearray((path / "pagemap-6.img").read_bytes())
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(image) - 1), label="offset")
        image[at] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(8, len(image)), label="length")
    (path / "pagemap-6.img").write_bytes(bytes(image[:cut]))
    with imgtool.open(path) as dump:
        try:
            space = address_space(dump.task(6))
            extents = list(space.segments())  # whatever it decoded is ordered and reads back consistently
        except ImgtoolError:
            return
        assert all(a.end <= b.vaddr for a, b in itertools.pairwise(extents))
        for extent in extents:
            assert space.raw(extent.vaddr, min(extent.length, PAGE)) == extent.view()[:PAGE]


def test_cmdline_and_environ_from_a_synthetic_stack(tmp_path: Path) -> None:
    args, env = b"prog\0--flag\0", b"A=1\0B=\xff\0"
    stack = BASE + 4 * PAGE
    fields = {"mm_arg_start": stack, "mm_arg_end": stack + len(args),
              "mm_env_start": stack + len(args), "mm_env_end": stack + len(args) + len(env)}
    task = SynthTask(12, vmas=[SynthVma.anon(BASE, 8 * PAGE)], pages={stack: args + env}, mm=fields)
    with imgtool.open(build_dump(tmp_path, [task])) as dump:
        space = address_space(dump.task(12))
        assert cmdline(space) == ["prog", "--flag"]
        assert environ(space, dump.task(12).mm) == ["A=1", "B=\\xff"]
