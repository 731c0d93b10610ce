# ruff: noqa: UP031 -- printf-style formats copied from crit
"""``x rss`` formats runs of entries in bulk: it must print exactly what crit's per-entry loop prints."""

from __future__ import annotations

import random
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from imgtool.crit.explore import _RssWalk
from imgtool.format.flags import VMA_FILE_PRIVATE


class _Files:
    def payload(self, kind: str, file_id: int) -> SimpleNamespace:
        return SimpleNamespace(name=f"/file-{file_id}")


DUMP = SimpleNamespace(file_table=_Files())


def crit_rss(vmas: list, entries: list[tuple[int, int]]) -> list[str]:
    """crit 4.2's explore_rss loop (crit/__main__.py), for one task; except that crit fails with IndexError on a
    task with pagemap entries and no VMAs, where imgtool prints the entries alone."""
    lines, vmi, pvmi = [], 0, -1
    for vaddr, nr_pages in entries:
        pstr = "\t%lx / %-8d" % (vaddr, nr_pages)
        if not vmas:
            lines.append("%-24s" % pstr)
            continue
        while vmi < len(vmas) and vmas[vmi].end <= vaddr:
            vmi += 1
        pme, vstr = vaddr + (nr_pages << 12), ""
        while vmi < len(vmas) and vmas[vmi].start < pme:
            vma = vmas[vmi]
            if vmi == pvmi:
                vstr += " ~"
            else:
                vstr += " %08lx / %-8d" % (vma.start, (vma.end - vma.start) >> 12)
                if vma.status & VMA_FILE_PRIVATE:
                    vstr += " /file-%d" % vma.shmid
                pvmi = vmi
            vstr += "\n\t%23s" % ""
            vmi += 1
        vmi -= 1
        lines.append("%-24s%s" % (pstr, vstr))
    return lines


def _layout(rng: random.Random, tidy: bool) -> tuple[list, list[tuple[int, int]]]:
    base = rng.choice([0x1000, 0x7F0000000000, 0xFFFFF000])   # hex widths change inside some layouts
    vmas, pos = [], base
    for _ in range(rng.randint(0, 6)):
        pos += rng.randint(0, 4) << 12
        size = rng.randint(1, 40) << 12
        vmas.append(SimpleNamespace(start=pos, end=pos + size, shmid=rng.randint(1, 9),
                                    status=rng.choice([1, 1, 1 | VMA_FILE_PRIVATE])))
        pos += size
    entries, pos = [], base - (2 << 12)
    for _ in range(rng.randint(0, 120)):
        pos += rng.choice([0, 0, 0, 1, 2, 5]) << 12
        pages = rng.choice([0, 1, 1, 1, 1, 1, 2, 3, 7] + ([10 ** 8] if rng.random() < 0.05 else []))
        entries.append((pos, pages))
        pos += min(pages, 30) << 12
    if not tidy:
        rng.shuffle(entries if rng.random() < 0.5 else vmas)
    return vmas, entries


@pytest.mark.parametrize("seed", range(300))
def test_bulk_lines_equal_crits_loop(seed: int) -> None:
    rng = random.Random(seed)
    vmas, entries = _layout(rng, tidy=seed % 4 != 0)
    assert _outcome(lambda: _ours(rng, vmas, entries)) == _outcome(lambda: "\n".join(crit_rss(vmas, entries)))


def _ours(rng: random.Random, vmas: list, entries: list[tuple[int, int]]) -> str:
    walk, lines, pos = _RssWalk(DUMP, vmas), [], 0
    while pos < len(entries):                        # batches of random size, as the pagemap reader gives
        step = rng.randint(1, 50)
        batch = entries[pos:pos + step]
        lines += walk.lines([v for v, _ in batch], [p for _, p in batch])
        pos += step
    return "\n".join(lines)     # bulk-formatted lines come joined


def _outcome(func: Callable[[], str]) -> str:
    """The text, or the exception crit's loop dies of (IndexError: entries but no VMA, vmas[-1])."""
    try:
        return func()
    except IndexError as exc:
        return f"IndexError: {exc}"
