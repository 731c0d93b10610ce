"""imgtool check on the bundled samples, offline and against synthetic host roots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import imgtool
from imgtool.analysis.checks import Context, run_checks
from imgtool.cli.app import main

from corpus import CORPUS, SAMPLES


def _codes(path: Path, options: list[str] | None = None, **kwargs) -> dict[str, str]:
    with imgtool.open(path) as dump:
        return {f.code: f.severity for f in run_checks(Context(dump, criu_options=options or [], **kwargs))}


def test_established_tcp_needs_the_option() -> None:
    assert _codes(SAMPLES / "tcp")["option-tcp-established"] == "error"
    assert "option-tcp-established" not in _codes(SAMPLES / "tcp", ["--tcp-established"])


def test_offline_checks_pass_on_every_sample() -> None:
    for sample in ("loop-sh", "tree", "fds", "tcp", "container"):
        # the option an established connection needs is an image check, offline too
        options = ["--", "--tcp-established"] if sample == "tcp" else []
        assert main(["check", str(SAMPLES / sample), "--offline", "--json", *options]) == 0, sample
    assert main(["check", str(SAMPLES / "tcp"), "--offline", "--json"]) == 1


def test_truncated_pages_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    shutil.copytree(SAMPLES / "loop-sh" / "images", images)
    pages = max(images.glob("pages-*.img"), key=lambda p: p.stat().st_size)
    pages.write_bytes(pages.read_bytes()[:-4096])
    assert main(["check", str(images), "--offline", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == ["image-pages-short"]


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"team corpus not found at {CORPUS}")
def test_pre_dump_is_not_restorable() -> None:
    assert _codes(CORPUS / "incremental" / "images-0", offline=True) == {"image-predump": "error"}


def test_ids_unknown_to_the_target_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("app:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("app:x:1000:\n")
    with imgtool.open(SAMPLES / "fds") as dump:
        found = [f for f in run_checks(Context(dump, root=tmp_path)) if f.code == "host-unknown-ids"]
    assert [(f.severity, f.message.split(" runs as ")[1].split(",")[0]) for f in found] == [("info", "uid 0")]


def test_container_cgroups_missing_here_are_reported() -> None:
    codes = _codes(SAMPLES / "container")
    assert codes["host-cgroup-missing"] == "info"
    assert _codes(SAMPLES / "container", ["--manage-cgroups=strict"])["host-cgroup-missing"] == "error"


def test_in_parent_pages_no_parent_holds(tmp_path: Path) -> None:
    from imgtool.testing.synth import SynthTask, SynthVma, build_dump

    base, vmas = 0x7F0000000000, [SynthVma.anon(0x7F0000000000, 8 * 4096)]
    parent = build_dump(tmp_path / "p", [SynthTask(7, "t", vmas=vmas, pages={base: b"A" * 2 * 4096})])
    child = build_dump(tmp_path / "c", [SynthTask(7, "t", vmas=vmas, parent_runs=[(base, 4)])], parent=parent)
    with imgtool.open(child) as dump:
        (finding,) = [f for f in run_checks(Context(dump, offline=True)) if f.code == "image-parent-range"]
    assert finding.severity == "error" and "task 7: 2 pages" in finding.message
    full = build_dump(tmp_path / "c2", [SynthTask(7, "t", vmas=vmas, parent_runs=[(base, 2)])], parent=parent)
    assert "image-parent-range" not in _codes(full, offline=True)
