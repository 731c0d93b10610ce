"""Memory search and extraction: corpus ground truth, chunk boundaries, gaps, memory use, the CLI."""

from __future__ import annotations

import io
import json
import re
import sys
import tempfile
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgtool
from imgtool.cli.app import main
from imgtool.errors import UnmappedAddressError
from imgtool.memory import stream
from imgtool.memory.extract import extract
from imgtool.memory.search import Literal, Regex, SearchError, any_of, search_dump, search_space
from imgtool.memory.space import AddressSpace, address_space
from imgtool.testing.synth import SynthTask, SynthVma, build_dump, marked_pages

from corpus import CORPUS

MEMORY = CORPUS / "memory" / "images"
PAGE = 4096
BASE = 0x7F0000000000
SECRET = 0x56365A7F72A0
STDIO_COPY = 0x56365A7F751B     # glibc's stdout buffer still holding the printed line


def need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"CRIU corpus not found at {CORPUS}")
    return path


# -- corpus -------------------------------------------------------------------------------


def test_secret_found_in_the_heap_and_the_stdio_buffer() -> None:
    with imgtool.open(need(MEMORY)) as dump:
        hits = list(search_dump(dump, Literal(b"CORPUS-SECRET-1234"), context=32))
    assert [(h.pid, h.vaddr) for h in hits] == [(15755, SECRET), (15755, STDIO_COPY)]
    # SCENARIO.md: offsets 12960 and 13595 of pages-2.img, the first after glibc's chunk header 0x111
    assert [(Path(h.file).name, h.offset) for h in hits] == [("pages-2.img", 12960), ("pages-2.img", 13595)]
    assert hits[0].before.endswith(b"\x11\x01" + bytes(6))
    assert hits[1].before.endswith(b'heap secret 0x56365a7f72a0 "') and hits[1].after.startswith(b'"\n')
    assert all(str(h.vma) == "0x56365a7f7000-0x56365a818000 rw-p" for h in hits)


def test_search_covers_shared_memory_and_regexes() -> None:
    with imgtool.open(need(MEMORY)) as dump:
        shm = [h.vaddr for h in search_dump(dump, Regex(rb"SHMPAGE\d{8}"))]
        assert shm == [0x7FDC69200000 + i * PAGE for i in range(1024)]
        dirty = list(search_dump(dump, any_of([b"DIRTY-FILEPAGE00000248", b"PAGE00016383"])))
        assert [h.vaddr for h in dirty] == [0x7FDC69600000 + 16383 * PAGE, 0x7FDC6D6E2000 + 248 * PAGE]


def test_twice_new_secret_only_in_the_second_dump() -> None:
    twice = need(CORPUS / "twice")
    with imgtool.open(twice / "images-a") as a, imgtool.open(twice / "images-b") as b:
        assert list(search_dump(a, Literal(b"CORPUS-SECRET-5678-GEN1"))) == []
        hits = list(search_dump(b, Literal(b"CORPUS-SECRET-5678-GEN1")))
        assert [(h.pid, h.vaddr) for h in hits] == [(16315, 0x556A13DBC3C0), (16387, 0x556A13DBC3C0)]
        # the format string "CORPUS-SECRET-5678-GEN%d" sits in memprog's data in both dumps
        assert len(list(search_dump(a, Literal(b"CORPUS-SECRET-5678")))) == 1
        assert len(list(search_dump(b, Literal(b"CORPUS-SECRET-1234"), pids=[16387]))) == 2


# -- synthetic: boundaries, seams and gaps --------------------------------------------------


def space_with(tmp: Path, data: dict[int, bytes], vma_pages: int = 16, parent: Path | None = None,
               parent_runs: tuple[tuple[int, int], ...] = (), entry_pages: int | None = 1) -> AddressSpace:
    task = SynthTask(1, vmas=[SynthVma.anon(BASE, vma_pages * PAGE)], pages=data, parent_runs=parent_runs)
    return address_space(imgtool.open(build_dump(tmp, [task], parent=parent, entry_pages=entry_pages)).task(1))


def filler(pages: int) -> bytearray:
    return bytearray(b"".join(b"%07d." % i for i in range(pages * PAGE // 8)))


def test_needle_across_a_chunk_boundary_is_found_once(tmp_path: Path) -> None:
    data = filler(4)
    data[PAGE - 5:PAGE + 5] = b"NEEDLE-XYZ"
    space = space_with(tmp_path, {BASE: bytes(data)})
    for chunk in (PAGE, PAGE - 3, 1000, 1 << 20):
        assert [h.vaddr for h in search_space(space, Literal(b"NEEDLE-XYZ"), chunk=chunk)] == [BASE + PAGE - 5]
        assert [h.vaddr for h in search_space(space, Regex(rb"NEEDLE-[A-Z]+"), chunk=chunk)] == [BASE + PAGE - 5]


def test_needle_across_a_gap_between_runs_is_not_found(tmp_path: Path) -> None:
    space = space_with(tmp_path, {BASE: b"x" * (PAGE - 3) + b"NEE", BASE + 2 * PAGE: b"DLE" + b"x" * (PAGE - 3)})
    assert len(list(space.runs())) == 2
    assert list(search_space(space, Literal(b"NEEDLE"))) == []
    assert [h.vaddr for h in search_space(space, Literal(b"NEE"))] == [BASE + PAGE - 3]
    assert space.read(BASE + PAGE - 3, 3) == b"NEE"


def test_needle_across_a_seam_between_dumps_is_found(tmp_path: Path) -> None:
    parent = build_dump(tmp_path / "p", [SynthTask(1, vmas=[SynthVma.anon(BASE, 16 * PAGE)],
                                                   pages={BASE + PAGE: b"x" * (PAGE - 2) + b"SE"})])
    space = space_with(tmp_path / "c", {BASE + 2 * PAGE: b"AM" + b"y" * (PAGE - 2)}, parent=parent,
                       parent_runs=((BASE + PAGE, 1),))
    assert len(list(space.segments())) == 2 and len(list(space.runs())) == 1
    hits = list(search_space(space, Literal(b"SEAM"), context=4))
    assert [(h.vaddr, h.before, h.after) for h in hits] == [(BASE + 2 * PAGE - 2, b"xxxx", b"yyyy")]
    assert Path(hits[0].file).parent.name == "p"


def test_overlapping_occurrences_and_non_overlapping_regex(tmp_path: Path) -> None:
    space = space_with(tmp_path, {BASE: b"aaaa" + bytes(PAGE - 4)})
    for chunk in (1, 2, 3, PAGE):
        assert [h.vaddr - BASE for h in search_space(space, Literal(b"aa"), chunk=chunk)] == [0, 1, 2]
        assert [(h.vaddr - BASE, h.length) for h in search_space(space, Regex(b"a+"), chunk=chunk)] == [(0, 4)]


def test_bad_patterns_are_errors() -> None:
    with pytest.raises(SearchError):
        Literal(b"")
    with pytest.raises(SearchError, match="invalid regular expression"):
        Regex(b"(")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_needles_found_exactly_once(data: st.DataObject) -> None:
    """A needle anywhere in 12 pages that come partly from a child dump and partly from its parent
    (seams between files wherever the drawn page sets change), any chunk size and any step of the walk
    (WINDOW): found exactly where it is, as often as a plain bytes.find over the same bytes finds it, with the
    bytes around it as context.
    """
    pages = 12
    needle = b"\xff" + data.draw(st.binary(max_size=40), label="needle")
    at = data.draw(st.integers(0, pages * PAGE - len(needle)), label="offset")
    chunk = data.draw(st.sampled_from([7, 64, 1000, PAGE, PAGE + 1, 3 * PAGE, 1 << 20]), label="chunk")
    window = data.draw(st.sampled_from([7, 100, PAGE, 3 * PAGE + 5, stream.WINDOW]), label="window")
    in_child = data.draw(st.sets(st.integers(0, pages - 1)), label="pages in the child")
    content = filler(pages)
    content[at:at + len(needle)] = needle
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(stream, "WINDOW", window):
        parent = build_dump(Path(tmp, "p"), [SynthTask(1, vmas=[SynthVma.anon(BASE, pages * PAGE)],
                                                       pages={BASE: bytes(content)})], entry_pages=1)
        own = {BASE + i * PAGE: bytes(content[i * PAGE:(i + 1) * PAGE]) for i in in_child}
        rest = tuple((BASE + i * PAGE, 1) for i in range(pages) if i not in in_child)
        space = space_with(Path(tmp, "c"), own, pages, parent, rest)
        expect = [BASE + i for i in _occurrences(bytes(content), needle)]
        assert BASE + at in expect
        hits = list(search_space(space, Literal(needle), chunk=chunk))
        assert [h.vaddr for h in hits] == expect
        for hit in hits:
            off = hit.vaddr - BASE
            assert (hit.before, hit.match, hit.after) == (bytes(content[max(off - 16, 0):off]), needle,
                                                          bytes(content[off + len(needle):off + len(needle) + 16]))
        regex_hits = [h.vaddr for h in search_space(space, Regex(re.escape(needle)), chunk=chunk)]
        assert regex_hits == _non_overlapping(expect, len(needle))
        assert space.read(BASE, pages * PAGE) == content


def test_context_before_a_step_boundary_at_a_file_seam(tmp_path: Path) -> None:
    """A match right where a step of the walk begins, after a page from the child dump: its context comes
    from the extents before the step (found by hypothesis)."""
    content = filler(12)
    content[11 * PAGE] = 0xFF
    parent = build_dump(tmp_path / "p", [SynthTask(1, vmas=[SynthVma.anon(BASE, 12 * PAGE)],
                                                   pages={BASE: bytes(content)})], entry_pages=1)
    space = space_with(tmp_path / "c", {BASE + 10 * PAGE: bytes(content[10 * PAGE:11 * PAGE])}, 12, parent,
                       tuple((BASE + i * PAGE, 1) for i in range(12) if i != 10))
    for window in (1, 7, PAGE):
        with mock.patch.object(stream, "WINDOW", window):
            (hit,) = search_space(space, Literal(b"\xff"), chunk=7)
        assert (hit.vaddr, hit.before, hit.after) == (BASE + 11 * PAGE, bytes(content[11 * PAGE - 16:11 * PAGE]),
                                                      bytes(content[11 * PAGE + 1:11 * PAGE + 17]))


def _occurrences(haystack: bytes, needle: bytes) -> list[int]:
    found, at = [], haystack.find(needle)
    while at >= 0:
        found.append(at)
        at = haystack.find(needle, at + 1)
    return found


def _non_overlapping(starts: list[int], size: int) -> list[int]:
    kept: list[int] = []
    for start in starts:
        if not kept or start >= kept[-1] + size:
            kept.append(start)
    return kept


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_search_of_256_mib_keeps_memory_flat(tmp_path: Path) -> None:
    """First half: pages alternate between child and parent (copied windows); second half: 63-page
    parent runs (searched in place).  Peak traced memory and resident size stay far below 256 MiB.
    """
    pages, half = 256 * 256, 128 * 256
    parent = build_dump(tmp_path / "p", [SynthTask(1, vmas=[SynthVma.anon(BASE, pages * PAGE)],
                                                   pages={BASE: marked_pages(0, pages, fill=b"0123456789abcdef")})])
    changed = {BASE + i * PAGE: marked_pages(i, 1, prefix=b"NEW-") for i in [*range(1, half, 2),
                                                                          *range(half, pages - 64, 64)]}
    changed[BASE + (pages - 3) * PAGE] = b"z" * 100 + b"THE-NEEDLE" + bytes(PAGE - 110)
    rest = [(BASE + i * PAGE, 1) for i in range(0, half, 2)]
    rest += [(BASE + i * PAGE, 63) for i in range(half + 1, pages - 64, 64)]
    rest += [(BASE + (pages - 64) * PAGE, 61), (BASE + (pages - 2) * PAGE, 2)]
    space = space_with(tmp_path / "c", changed, pages, parent, tuple(rest), entry_pages=None)
    assert space.dumped_bytes() == pages * PAGE
    start_rss, rss = _rss_mib(), []
    tracemalloc.start()
    try:
        hits = list(search_space(space, Literal(b"THE-NEEDLE"), progress=lambda _: rss.append(_rss_mib())))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [h.vaddr for h in hits] == [BASE + (pages - 3) * PAGE + 100]
    assert peak < 64 << 20, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert max(rss) - start_rss < 64, f"resident size grew by {max(rss) - start_rss:.0f} MiB"


# -- extract --------------------------------------------------------------------------------


def test_extract_streams_a_range_and_checks_it_first(tmp_path: Path) -> None:
    space = space_with(tmp_path, {BASE + PAGE: marked_pages(1, 2)}, vma_pages=4)
    out = io.BytesIO()
    assert extract(space, BASE, BASE + 4 * PAGE, out, chunk=1000) == 4 * PAGE
    assert out.getvalue() == space.read(BASE, 4 * PAGE, zero_fill=True)
    assert out.getvalue()[PAGE:PAGE + 12] == b"PAGE00000001"
    empty = io.BytesIO()
    with pytest.raises(UnmappedAddressError):
        extract(space, BASE, BASE + 5 * PAGE, empty)
    assert empty.getvalue() == b""


# -- the command line ----------------------------------------------------------------------


def test_cli_search_json_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    memory = str(need(MEMORY))
    assert main(["mem", "search", memory, "--string", "CORPUS-SECRET-1234", "--json", "--context", "4"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [(h["pid"], h["vaddr"], h["length"]) for h in hits] == [(15755, SECRET, 18), (15755, STDIO_COPY, 18)]
    assert bytes.fromhex(hits[1]["before"]) == b'a0 "' and hits[0]["vma"]["prot"] == "rw-p"
    assert main(["mem", "search", memory, "--hex", "434f52 5055532d5345435245542d31323334", "--pid", "15755"]) == 0
    out = capsys.readouterr().out
    assert "0x56365a7f72a0" in out and "0x56365a7f751b" in out and "2 matches" in out
    assert main(["mem", "search", memory, "--string", "NOT-IN-THIS-DUMP"]) == 1
    assert main(["mem", "search", memory, "--hex", "abc"]) == 2
    assert main(["mem", "search", memory, "--regex", "(", "--json"]) == 2
    assert main(["mem", "search", memory, "--string", "x", "--pid", "1"]) == 2
    assert "no process with pid 1" in capsys.readouterr().err
    assert main(["mem", "search", memory, "--regex", r"SHMPAGE\d+", "-m", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_cli_read_to_file_pipe_and_terminal(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    memory = str(need(MEMORY))
    out = tmp_path / "a.bin"
    assert main(["mem", "read", memory, "15755", "0x7fdc69600000", "8192", "-o", str(out)]) == 0
    assert out.read_bytes()[:12] == b"PAGE00000000" and out.read_bytes()[PAGE:PAGE + 12] == b"PAGE00000001"
    assert main(["mem", "read", memory, "15755", str(SECRET), "18"]) == 0
    assert capsysbinary.readouterr().out == b"CORPUS-SECRET-1234"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["mem", "read", memory, "15755", hex(SECRET), "0x12"]) == 0
    assert capsysbinary.readouterr().out.decode().splitlines() == [
        "000056365a7f72a0  43 4f 52 50 55 53 2d 53 45 43 52 45 54 2d 31 32  |CORPUS-SECRET-12|",
        "000056365a7f72b0  33 34                                            |34|",
        "000056365a7f72b2"]   # the end address closes the dump, as hexdump -C does


def test_cli_read_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    memory = str(need(MEMORY))
    out = tmp_path / "never.bin"
    assert main(["mem", "read", memory, "15755", "0x7fdc6d6eb000", "16", "-o", str(out)]) == 2
    assert "is mapped but its page is not in the dump" in capsys.readouterr().err and not out.exists()
    assert main(["mem", "read", memory, "15755", "0x7fdc6d6eb000", "16", "--zero-fill", "-o", str(out)]) == 0
    assert out.read_bytes() == bytes(16)
    assert main(["mem", "read", memory, "15755", "0x1000", "1", "--zero-fill"]) == 2
    assert "address 0x1000 is not mapped" in capsys.readouterr().err
    assert main(["mem", "read", memory, "15755", "zz", "1"]) == 2
    assert "ADDR 'zz' is not a number" in capsys.readouterr().err


def test_cli_dump_a_whole_vma(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    memory = str(need(MEMORY))
    out = tmp_path / "c.bin"
    assert main(["mem", "dump", memory, "15755", "--vma", "0x7fdc6d6e2123", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert len(data) == 256 * PAGE
    assert data[8 * PAGE:8 * PAGE + 22] == b"DIRTY-FILEPAGE00000008" and data[9 * PAGE:10 * PAGE] == bytes(PAGE)
    assert "131072 from the dump" in capsys.readouterr().err
    assert main(["mem", "dump", memory, "15755", "--vma", "0x10", "-o", str(out)]) == 2
