"""Where scripts/zdtm.sh put CRIU's zdtm runs, and what each recorded.

``scripts/zdtm.sh [--subset ci|full] [--out DIR]`` (as root) dumps zdtm's static tests with CRIU's own zdtm.py,
keeps the images, records crit's JSON for them and the restore truth (see the script's header). Tests find its
output in ``$IMGTOOL_ZDTM`` (the --out dir) or, by default, in the newest ``~/.cache/imgtool/zdtm/<version>/out``
(``$IMGTOOL_ZDTM_CACHE/out`` if that is set). With ``IMGTOOL_REQUIRE_ZDTM=1`` a missing output fails the tests
instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "zdtm.sh"
IN_ENV = REPO / "scripts" / "zdtm" / "in-env.sh"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.parent.name))


def out_dir() -> Path | None:
    """The zdtm output dir (with index.json), or None when there is none."""
    if env := os.environ.get("IMGTOOL_ZDTM"):
        return Path(env)
    if env := os.environ.get("IMGTOOL_ZDTM_CACHE"):
        return Path(env) / "out"
    found = sorted((Path.home() / ".cache" / "imgtool" / "zdtm").glob("*/out/index.json"),
                   key=lambda p: _version_key(p.parent), reverse=True)
    return found[0].parent if found else None


def missing_reason() -> str | None:
    out = out_dir()
    if out is None:
        return f"no zdtm output: run `sudo {SCRIPT.relative_to(REPO)}` (or set IMGTOOL_ZDTM=DIR)"
    if not (out / "index.json").is_file():
        return f"{out}/index.json missing: run `sudo {SCRIPT.relative_to(REPO)} --out {out}`"
    return None


def require() -> Path:
    """The output dir; skips (fails with IMGTOOL_REQUIRE_ZDTM=1) when there is none."""
    reason = missing_reason()
    if reason:
        if os.environ.get("IMGTOOL_REQUIRE_ZDTM") == "1":
            pytest.fail(reason + " (IMGTOOL_REQUIRE_ZDTM=1)")
        pytest.skip(reason)
    out = out_dir()
    assert out is not None
    return out


def index() -> dict:
    out = out_dir()
    return json.loads((out / "index.json").read_text()) if out and (out / "index.json").is_file() else {}


@dataclass(frozen=True)
class Case:
    """One zdtm test dumped in one flavour: OUT/<name>-<flavour>/."""
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def images(self) -> Path:
        return self.dir / "images"

    @property
    def truth(self) -> dict:
        return json.loads((self.dir / "truth.json").read_text())

    def golden(self) -> list[tuple[Path, Path, bool]]:
        """(image, crit's JSON of it, pretty) for every image crit decoded."""
        pairs = []
        for folder, pretty in (("crit-json-raw", False), ("crit-json", True)):
            for js in sorted((self.dir / folder).glob("*.json")):
                pairs.append((self.images / (js.stem + ".img"), js, pretty))
        return pairs

    def crit_failed(self) -> list[str]:
        path = self.dir / "crit-failed.txt"
        return path.read_text().split() if path.is_file() else []


def cases(dumped_only: bool = True) -> list[Case]:
    """The runs index.json lists (those whose dump succeeded, unless dumped_only is False)."""
    out = out_dir()
    found = [Case(out / c["case"]) for c in index().get("cases", [])] if out else []
    return [c for c in found if (c.dir / "truth.json").is_file() and (not dumped_only or c.truth["dump_ok"])]
