"""README's Python examples run as written, so the public API they document cannot break unnoticed."""

from __future__ import annotations

import contextlib
import io
import os
import re

import pytest

from corpus import ROOT

README = ROOT / "README.md"


def _examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_has_python_examples() -> None:
    assert _examples()


@pytest.mark.parametrize("index", range(len(_examples())))
def test_readme_example_runs(index: int) -> None:
    code = _examples()[index]
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)   # the examples name samples/ relative to the checkout
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README.md example {index}", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    assert out.getvalue().strip(), "the example printed nothing"
