"""imgtool check against the real criu on a dump with a pty pair made inside the tree, a zombie and raw sockets:
criu restores it without --shell-job, and check must say so (it used to demand --shell-job for any terminal and
ids/mm images of the zombie)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from imgtool.cli.app import main

import realcriu

PROGRAM = Path(__file__).parent / "programs" / "tty_zombie_raw.py"


def _wait_gone(pid: int) -> None:
    """The zombie, orphaned by the dump, goes to its reaper: us when we are a child subreaper, else init."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("raw", [False, True], ids=["pty+zombie", "pty+zombie+raw"])
def test_pty_made_inside_the_tree_and_zombie(criu: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             raw: bool) -> None:
    dumped = realcriu.dump_process(criu, [sys.executable, PROGRAM, *(["--raw"] if raw else [])], tmp_path / "images")
    assert dumped.ok, dumped.log_text()[-3000:]
    zombie = int(dumped.report[0].split()[1])
    assert (dumped.images / f"core-{zombie}.img").exists() and not (dumped.images / f"mm-{zombie}.img").exists()
    assert (dumped.images / "tty-info.img").exists()
    _wait_gone(zombie)
    capsys.readouterr()
    status = main(["check", str(dumped.images), "--criu", str(criu), "--json"])
    report = json.loads(capsys.readouterr().out)
    result = realcriu.restore(criu, dumped.images)
    try:
        assert result.ok, result.log_text()[-3000:]
        errors = [f"{f['code']}: {f['message']}" for f in report["findings"] if f["severity"] == "error"]
        assert status == 0 and not errors
    finally:
        result.kill()
        _wait_gone(zombie)   # the restored zombie, re-parented to us (a child subreaper) when its parent died
