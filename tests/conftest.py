import pytest

from corpus import SAMPLES


def pytest_sessionstart(session: pytest.Session) -> None:
    if not any(SAMPLES.glob("*/images/pstree.img")):
        raise pytest.UsageError(f"the bundled samples are missing under {SAMPLES}")
