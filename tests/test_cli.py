"""The crit verbs from the command line: decode, encode, info, show."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from imgtool.cli.app import main

from corpus import SAMPLES

FDS = SAMPLES / "fds"


def test_decode_to_file_matches_crit(tmp_path: Path) -> None:
    out = tmp_path / "files.json"
    assert main(["decode", "-i", str(FDS / "images" / "files.img"), "-o", str(out), "--pretty"]) == 0
    assert out.read_text() == (FDS / "crit-json" / "files.json").read_text().rstrip("\n")


def test_show_prints_pretty_json_with_newline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(FDS / "images" / "pstree.img")]) == 0
    out = capsys.readouterr().out
    assert out == (FDS / "crit-json" / "pstree.json").read_text().rstrip("\n") + "\n"


def test_show_nopl_replaces_payloads_by_their_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--nopl", str(FDS / "images" / "pipes-data.img")]) == 0
    entry = json.loads(capsys.readouterr().out)["entries"][0]
    assert entry["extra"] == f"... <{entry['bytes']}B>"


def test_ghost_file_nopl_marks_the_payload(capsys: pytest.CaptureFixture[str]) -> None:
    # crit drops ghost contents silently under --nopl; we mark them like every payload, so that
    # encode can refuse the document instead of writing an empty ghost file.
    assert main(["show", "--nopl", str(FDS / "images" / "ghost-file-1.img")]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["entries"]
    assert entry["extra"] == "... <64B>"


def test_info_counts_like_crit(capsys: pytest.CaptureFixture[str]) -> None:
    image = FDS / "images" / "pagemap-13375.img"
    assert main(["info", str(image)]) == 0
    info = json.loads(capsys.readouterr().out)
    golden = json.loads((FDS / "crit-json-raw" / "pagemap-13375.json").read_text())
    assert info == {"magic": "PAGEMAP", "count": len(golden["entries"]) - 1}


def test_info_on_raw_pages(capsys: pytest.CaptureFixture[str]) -> None:
    pages = FDS / "images" / "pages-1.img"
    assert main(["info", str(pages)]) == 0
    assert json.loads(capsys.readouterr().out) == {"magic": "RAW", "kind": "pages", "size": pages.stat().st_size}


def test_decode_raw_image_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "-i", str(FDS / "images" / "pages-1.img")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("imgtool: error: pages-1.img:") and "raw" in err


@pytest.mark.parametrize("name", ["sk-queues.img", "ghost-file-1.img", "mm-13375.img", "inventory.img"])
def test_encode_of_decode_is_identity_through_pipes(tmp_path: Path, name: str) -> None:
    image = FDS / "images" / name
    cmd = [sys.executable, "-m", "imgtool"]
    decoded = subprocess.run([*cmd, "decode", "--pretty"], input=image.read_bytes(),
                             capture_output=True, check=True).stdout
    encoded = subprocess.run([*cmd, "encode"], input=decoded, capture_output=True, check=True).stdout
    assert encoded == image.read_bytes()
    out = tmp_path / name
    subprocess.run([*cmd, "encode", "-o", str(out)], input=decoded, check=True)
    assert out.read_bytes() == image.read_bytes()


def test_output_to_a_device_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert main(["decode", "-i", str(FDS / "images" / "pstree.img"), "-o", str(fifo)]) == 0
    assert json.loads(reader.communicate(timeout=10)[0])["magic"] == "PSTREE"
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # not replaced by a regular file
