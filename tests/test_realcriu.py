"""The real-CRIU harness (tests/realcriu.py) against the real criu: dump a live process, read it, restore it.

Skipped, with the reason, when no usable CRIU >= 4.1 exists (build one with scripts/get-criu.sh).
"""

from __future__ import annotations

from pathlib import Path

import imgtool

import realcriu

# The fixtures criu and holder_binary come from conftest.py.


def test_dump_read_restore(criu: Path, holder_binary: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("0123456789abcdef\n")
    images = tmp_path / "images"

    dumped = realcriu.dump_process(criu, [holder_binary, "-m", "64", data], images)
    assert dumped.ok, f"criu dump exited {dumped.returncode}:\n{dumped.log_text()[-3000:]}"
    assert "Dumping finished successfully" in dumped.log_text()
    assert dumped.report[0] == f"file 3 {data} 5"
    assert not dumped.alive()
    for name in ("inventory.img", "pstree.img", f"core-{dumped.pid}.img"):
        assert (images / name).is_file(), name

    with imgtool.open(images) as dump:
        task = dump.tasks[0]
        assert task.pid == dumped.pid
        assert task.comm == "holder"
        files = {fd.fd: fd.file for fd in task.fds}
        assert files[3].kind == "REG"
        assert files[3].details["path"] == str(data)
        assert files[3].details["pos"] == 5
        assert files[1].details["path"] == str(dumped.output)

    restored = realcriu.restore(criu, images)
    assert restored.ok, f"criu restore exited {restored.returncode}:\n{restored.log_text()[-3000:]}"
    assert "Restore finished successfully" in restored.log_text()
    assert restored.pid == dumped.pid       # CRIU restores the original PID
    assert restored.alive()
    assert Path(f"/proc/{restored.pid}/fd/3").resolve() == data
    assert Path(f"/proc/{restored.pid}/fdinfo/3").read_text().startswith("pos:\t5\n")

    restored.kill()
    assert not restored.alive()


def test_failed_dump_leaves_process_running(criu: Path, holder_binary: Path, tmp_path: Path) -> None:
    """A held flock without --file-locks makes criu dump fail; the process survives and is cleaned up."""
    data = tmp_path / "data.txt"
    data.write_text("locked\n")
    dumped = realcriu.dump_process(criu, [holder_binary, "-l", "-m", "0", data], tmp_path / "images")
    assert dumped.returncode == 1
    assert "--file-locks" in dumped.log_text()
    assert dumped.alive()
    dumped.kill()
    assert not dumped.alive()
