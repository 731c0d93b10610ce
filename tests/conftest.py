import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import realcriu
from corpus import CORPUS, SAMPLES

_BEFORE: dict[Path, set[str]] = {}


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.is_dir() else set()


def pytest_sessionstart(session: pytest.Session) -> None:
    if not any(SAMPLES.glob("*/images/pstree.img")):
        raise pytest.UsageError(f"the bundled samples are missing under {SAMPLES}")
    if os.environ.get("CI") == "true" and not (CORPUS / "INDEX.md").is_file():
        # In CI the corpus tests must run: a silent skip once hid half the suite.
        raise pytest.UsageError(f"CI=true but the team corpus is missing at {CORPUS}")
    for root in (SAMPLES, CORPUS):
        _BEFORE[root] = _listing(root)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing may ever be written into a checkpoint directory: fail the run if anything was."""
    for root, before in _BEFORE.items():
        added = sorted(_listing(root) - before)
        if added:
            print(f"\nERROR: the test run wrote into {root}: {added[:10]}")
            session.exitstatus = 1


# -- real CRIU (tests/realcriu.py): shared by test_realcriu.py and test_faults.py -----------------------------------

@pytest.fixture
def criu() -> Iterator[Path]:
    """The usable criu binary (the test skips, saying why, without one); kills what the test left running."""
    yield realcriu.require_criu()
    realcriu.kill_all()


@pytest.fixture(scope="session")
def holder_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return realcriu.build_holder(tmp_path_factory.mktemp("holder"))


@pytest.fixture(scope="session")
def remapped_dumps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    """Two real dumps of tests/programs/remap.py, before and after it changed its mappings, and their addresses
    (grow, gone, prot, new)."""
    import sys

    criu = realcriu.require_criu()
    root = tmp_path_factory.mktemp("remap")
    program = Path(__file__).parent / "programs" / "remap.py"
    try:
        dumped = realcriu.dump_twice(criu, [sys.executable, program], root / "before", root / "after")
    finally:
        realcriu.kill_all()
    addresses = {k: int(v, 16) for k, _, v in (line.partition("=") for line in dumped.report)}
    return root / "before", root / "after", addresses
