"""Test harness for real Docker checkpoints: run ``scripts/docker-env.sh`` and read what it recorded.

``scripts/docker-env.sh all`` installs docker.io and busybox-static when missing, starts a private dockerd under
``ROOT`` (``$IMGTOOL_DOCKER_ROOT``, default ``~/.cache/imgtool/docker``), creates the containers and checkpoints,
restores them with ``docker start --checkpoint``, records each outcome in ``ROOT/scenarios/<name>/result.json``
with copies of the checkpoint dir and the container's config.v2.json/hostconfig.json (Docker's layout, under
``copy/containers/<id>/``), and stops everything it started. Tests only read those copies, after dockerd is gone.

:func:`scenarios` runs it once per test session, or reuses results already under ROOT when their
``summary.json`` was written by the same scripts (``script_sha256``) within :data:`MAX_AGE` seconds; with
``CI=true`` or ``IMGTOOL_DOCKER_RERUN=1`` it always runs the script. It skips only when the script says dockerd
cannot start on this machine (exit status 3); ``IMGTOOL_REQUIRE_DOCKER=1`` turns that skip into a failure.
Any other failure of the script fails the tests with its error line.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "docker-env.sh"
ROOT = Path(os.environ.get("IMGTOOL_DOCKER_ROOT") or Path.home() / ".cache" / "imgtool" / "docker")
MAX_AGE = 7 * 24 * 3600
TIMEOUT = 600
CANNOT_START = 3          # docker-env.sh's exit status when dockerd cannot start here


def script_sha256() -> str:
    """What docker-env.sh writes as summary.json's script_sha256 (the script and its helpers)."""
    sha = hashlib.sha256()
    for f in [SCRIPT, *sorted((SCRIPT.parent / "docker").iterdir())]:
        if f.is_file():
            sha.update(f.name.encode() + b"\0" + f.read_bytes())
    return sha.hexdigest()


def _fresh(summary: Path) -> bool:
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return False
    return data.get("script_sha256") == script_sha256() and time.time() - data.get("created", 0) < MAX_AGE


@dataclass(frozen=True)
class Scenario:
    name: str
    result: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        """The copy of the checkpoint dir (``.../copy/containers/<id>/checkpoints/<name>``)."""
        return Path(self.result["checkpoint_copy"])

    @property
    def container(self) -> Path:
        """The copy of the container dir (config.v2.json, hostconfig.json, checkpoints/<name>)."""
        return Path(self.result["container_copy"])

    @property
    def has_images(self) -> bool:
        return (self.checkpoint / "inventory.img").is_file()


@cache
def _run_script() -> tuple[Path | None, str, str]:
    """(scenarios dir, "ok", "") or (None, "skip" or "fail", why): at most one run per session (cached, so a
    failure is not retried by every test)."""
    summary = ROOT / "scenarios" / "summary.json"
    rerun = os.environ.get("CI") == "true" or os.environ.get("IMGTOOL_DOCKER_RERUN") == "1"
    if not rerun and _fresh(summary):
        return summary.parent, "ok", ""
    start = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(SCRIPT), "all", "--root", str(ROOT)], capture_output=True, text=True,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(SCRIPT), "down", "--root", str(ROOT)], capture_output=True, timeout=120)
        return None, "fail", f"scripts/docker-env.sh all did not finish within {TIMEOUT} s"
    (ROOT / "docker-env.log").write_text(proc.stderr)
    sys.stderr.write(f"\nscripts/docker-env.sh all: exit {proc.returncode} in {time.monotonic() - start:.0f} s "
                     f"(log {ROOT / 'docker-env.log'})\n")
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    why = errors[-1] if errors else (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode == CANNOT_START:
        return None, "skip", why
    if proc.returncode != 0 or not _fresh(summary):
        return None, "fail", f"scripts/docker-env.sh all failed (exit {proc.returncode}): {why}"
    return summary.parent, "ok", ""


def scenarios() -> dict[str, Scenario]:
    """Every recorded scenario by name; skips (or, with IMGTOOL_REQUIRE_DOCKER=1, fails) when dockerd cannot start."""
    found, kind, why = _run_script()
    if kind == "fail":
        pytest.fail(why, pytrace=False)
    if found is None:
        message = f"dockerd cannot start on this machine: {why}"
        if os.environ.get("IMGTOOL_REQUIRE_DOCKER") == "1":
            pytest.fail(f"IMGTOOL_REQUIRE_DOCKER=1 but {message}", pytrace=False)
        pytest.skip(message)
    return {p.parent.name: Scenario(p.parent.name, json.loads(p.read_text()))
            for p in sorted(found.glob("*/result.json"))}


def imgtool(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would: ``python -m imgtool ARGS`` (stdout and stderr captured as text)."""
    env = {**os.environ, "COLUMNS": "300"}        # no wrapping: names and paths stay whole in the output
    return subprocess.run([sys.executable, "-m", "imgtool", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL, env=env)


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
