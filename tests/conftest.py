from pathlib import Path

import pytest

from corpus import CORPUS, SAMPLES

_BEFORE: dict[Path, set[str]] = {}


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.is_dir() else set()


def pytest_sessionstart(session: pytest.Session) -> None:
    if not any(SAMPLES.glob("*/images/pstree.img")):
        raise pytest.UsageError(f"the bundled samples are missing under {SAMPLES}")
    for root in (SAMPLES, CORPUS):
        _BEFORE[root] = _listing(root)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing may ever be written into a checkpoint directory: fail the run if anything was."""
    for root, before in _BEFORE.items():
        added = sorted(_listing(root) - before)
        if added:
            print(f"\nERROR: the test run wrote into {root}: {added[:10]}")
            session.exitstatus = 1
