"""``imgtool x DIR ps|fds|mems|rss`` prints what crit 4.2 printed for every corpus scenario."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import imgtool
from imgtool.cli.app import main
from imgtool.crit.explore import EXPLORERS
from imgtool.errors import MissingImageError

from corpus import scenario_dirs

SECTION = re.compile(r"===== \$ crit x (\S+) (\w+)\n(.*?)(?=\n===== |\Z)", re.S)


def _cases() -> list[tuple[Path, str, str]]:
    cases = []
    for scenario in scenario_dirs():
        for text_file in sorted(scenario.glob("crit-x*.txt")):
            for m in SECTION.finditer(text_file.read_text()):
                folder, what, expected = m.groups()
                path = next(p for p in (scenario / folder, scenario / "extracted" / folder) if p.exists())
                cases.append((path, what, expected.rstrip()))
    return cases


CASES = _cases()


def _ours(path: Path, what: str) -> str:
    with imgtool.open(path) as dump:
        return "\n".join(EXPLORERS[what](dump)).rstrip()


@pytest.mark.parametrize(("path", "what", "expected"), CASES,
                         ids=[f"{p.parent.name}/{p.name}/{w}" for p, w, _ in CASES])
def test_same_text_as_crit(path: Path, what: str, expected: str) -> None:
    if "Traceback" in expected:  # crit crashed: a pre-dump dir has no pstree.img
        with pytest.raises(MissingImageError, match="pre-dump"):
            _ours(path, what)
        return
    ours = _ours(path, what).splitlines()
    theirs = expected.splitlines()
    assert len(ours) == len(theirs)
    for mine, crit in zip(ours, theirs, strict=True):
        if mine != crit:  # crit cannot name memfd mappings; we print the memfd's name
            assert crit.endswith("unknown path (s)") and re.search(r" memfd:\S+ \(s\)$", mine), (mine, crit)
            assert mine.split(" memfd:")[0] == crit.split(" unknown path")[0]


def test_cases_cover_every_explorer() -> None:
    assert {what for _, what, _ in CASES} == {"ps", "fds", "mems", "rss"}
    assert len(CASES) >= 20


def test_cli_x(capsys: pytest.CaptureFixture[str]) -> None:
    path, what, expected = next(c for c in CASES if c[1] == "fds" and "Traceback" not in c[2])
    assert main(["x", str(path), what]) == 0
    assert capsys.readouterr().out.rstrip() == expected


def test_x_sk_lists_sockets(capsys: pytest.CaptureFixture[str]) -> None:
    fds = next(p for p, w, _ in CASES if p.parent.name == "fds" and w == "ps")
    assert main(["x", str(fds), "sk"]) == 0
    out = capsys.readouterr().out
    assert "unix STREAM ESTABLISHED ino 75490 peer 75491" in out and "19 bytes queued" in out
