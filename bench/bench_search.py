"""Search a synthetic address space for a needle near its end, against a plain scan of the pages files.

    python bench/bench_search.py [MIB ...]          (default: 256 1024)

For each size a three-dump chain is written with imgtool.synth into a temp
dir: a full dump (16-page pagemap entries), a child rewriting 4 pages in
every 64 (one entry per run, as CRIU writes them), and the searched
grandchild rewriting 2 other pages in every 64 with a fragmented pagemap:
one entry per page, 262,144 entries per GiB.  Every 64 pages of the
address space thus come from 5 extents in 3 files.  Page bytes are
pseudo-random, so find() cannot skip through zeros.

Each step runs in a fresh interpreter (imports included): ``imgtool mem
search --json`` on the grandchild, and a plain loop that reads every pages
file of the chain in 8 MiB chunks (with needle-1 bytes of overlap) and
calls bytes.find: the throughput ceiling for a search in Python, although
it scans the superseded parent pages too and knows nothing of addresses.
Goal: imgtool within 1.25x of the baseline time, with a flat peak RSS.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imgtool.synth import SynthTask, SynthVma, build_dump

from measure import Result, run

PAGE = 4096
BASE = 0x7F0000000000
NEEDLE = b"BENCH-NEEDLE-7f3a9c1e"
BLOCK_PAGES = 256

IMGTOOL = """
from imgtool.cli import main
sys.stdout = open("/dev/null", "w")
assert main(["mem", "search", sys.argv[1], "--string", sys.argv[2], "--json"]) == 0
"""

BASELINE = """
import glob, os
needle = sys.argv[2].encode()
found = 0
for path in sorted(glob.glob(os.path.join(sys.argv[1], "..", "*", "pages-*.img"))):
    with open(path, "rb") as f:
        tail = b""
        while chunk := f.read(8 << 20):
            buf = tail + chunk
            at = buf.find(needle)
            while at >= 0:
                found += 1
                at = buf.find(needle, at + 1)
            tail = buf[-(len(needle) - 1):]
assert found == 1, found
"""


_BLOCK = random.Random(1).randbytes(BLOCK_PAGES * PAGE)
_DOUBLE = _BLOCK + _BLOCK


def random_pages(first: int, count: int, salt: int = 0, needle_page: int | None = None) -> Iterator[bytes]:
    """Pseudo-random pages (windows of a 1 MiB random block), NEEDLE in ``needle_page``."""
    for start in range(first, first + count, BLOCK_PAGES):
        n = min(BLOCK_PAGES, first + count - start)
        shift = (start * 97 + salt * 13) % len(_BLOCK)
        data = _DOUBLE[shift:shift + n * PAGE]
        if needle_page is not None and start <= needle_page < start + n:
            at = (needle_page - start) * PAGE + 1000
            data = data[:at] + NEEDLE + data[at + len(NEEDLE):]
        yield data


def rewritten(pages: int, offsets: range, salt: int) -> dict[int, Iterator[bytes]]:
    return {BASE + (group + i) * PAGE: random_pages(group + i, 1, salt)
            for group in range(0, pages, 64) for i in offsets}


def make_chain(root: Path, mib: int) -> Path:
    pages = mib * 256
    vma = [SynthVma.anon(BASE, pages * PAGE)]
    full = build_dump(root / "d0", [SynthTask(1, vmas=vma, pages={BASE: random_pages(0, pages, 1, pages - 7)})],
                      entry_pages=16)
    child = build_dump(root / "d1", [SynthTask(1, vmas=vma, pages=rewritten(pages, range(8, 12), 2),
                                               parent_runs=_others(pages, 8, 12))], parent=full)
    return build_dump(root / "d2", [SynthTask(1, vmas=vma, pages=rewritten(pages, range(40, 42), 3),
                                              parent_runs=_others(pages, 40, 42))], parent=child, entry_pages=1)


def _others(pages: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """(vaddr, nr_pages) of the pages outside ``[lo, hi)`` of each group of 64, one run per gap."""
    runs = [(BASE + (group + start) * PAGE, stop - start)
            for group in range(0, pages, 64) for start, stop in ((0, lo), (hi, 64))]
    return [run for run in runs if run[1]]


def line(op: str, size: str, mib: int, ours: Result, base: Result) -> str:
    def cell(r: Result) -> str:
        return f"{r.seconds:6.2f} s {mib / r.seconds:7.0f} MiB/s {r.rss_mib:5.0f} MiB"

    return f"{op:<22} {size:>9} {cell(ours)}   {cell(base)}   {ours.seconds / base.seconds:6.2f}x"


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [256, 1024]
    head = f"{'operation':<22} {'size':>9} {'imgtool mem search':<34}   {'plain bytes.find loop':<34}   time ratio"
    rows = [head, "-" * len(head)]
    for mib in sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            images = make_chain(Path(tmp), mib)
            argv = ["bench", str(images), NEEDLE.decode()]
            run(BASELINE, argv)                      # warm the page cache
            ours = min((run(IMGTOOL, argv) for _ in range(2)), key=lambda r: r.seconds)
            base = min((run(BASELINE, argv) for _ in range(2)), key=lambda r: r.seconds)
            rows.append(line("search, 3-dump chain", f"{mib} MiB", mib, ours, base))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
