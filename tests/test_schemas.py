"""The generated protobuf code matches schemas/, and the schemas describe what CRIU writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from imgtool import magic
from imgtool.convert import to_dict
from imgtool.pb import message_class
from imgtool.registry import KINDS

from corpus import ROOT

sys.path.insert(0, str(ROOT / "scripts"))


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                    reason="grpcio-tools (the dev extra) is needed to regenerate imgtool/pb")
def test_generated_code_is_fresh(tmp_path: Path) -> None:
    import gen_pb

    gen_pb.generate(tmp_path)
    committed = ROOT / "imgtool" / "pb"
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi") and p.stem != "__init__")
    stale = [name for name in fresh if (tmp_path / name).read_text() != (committed / name).read_text()]
    assert not stale, f"run scripts/gen_pb.py: {stale} differ from schemas/"


def test_every_magic_has_a_kind() -> None:
    assert KINDS.keys() == magic.BY_NAME.keys()
    for name, kind in KINDS.items():
        assert kind.name == name


def test_task_state_labels_follow_criu_c_code() -> None:
    # compel/include/uapi/task-state.h: STOPPED = 3, ZOMBIE = 6 (crit 4.2 swaps the labels).
    core = message_class("task_core_entry")
    labels = {state: to_dict(core(task_state=state), pretty=True)["task_state"] for state in (1, 3, 6)}
    assert labels == {1: "Alive", 3: "Stopped", 6: "Zombie"}
    assert to_dict(core(task_state=3), pretty=False)["task_state"] == 3
