"""The generated protobuf code matches schemas/, and the schemas describe what CRIU writes."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgtool.crit.convert import to_dict
from imgtool.format import magic, registry
from imgtool.format.pb import message_class
from imgtool.format.pb._schema import MODULE_OF
from imgtool.format.registry import KINDS

from corpus import ROOT

sys.path.insert(0, str(ROOT / "scripts"))


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                    reason="grpcio-tools (the dev extra) is needed to regenerate imgtool/format/pb")
def test_generated_code_is_fresh(tmp_path: Path) -> None:
    import gen_pb

    gen_pb.generate(tmp_path)
    committed = ROOT / "imgtool" / "format" / "pb"
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi") and p.stem != "__init__")
    stale = [name for name in fresh if (tmp_path / name).read_text() != (committed / name).read_text()]
    assert not stale, f"run scripts/gen_pb.py: {stale} differ from schemas/"


def test_every_kind_has_its_own_magic() -> None:
    assert len({kind.magic for kind in KINDS.values()}) == len(KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name and registry.BY_VALUE[kind.magic] == name
    assert not {magic.IMG_COMMON, magic.IMG_SERVICE, magic.KDAT} & set(registry.BY_VALUE)


def test_task_state_labels_follow_criu_c_code() -> None:
    # compel/include/uapi/task-state.h: STOPPED = 3, ZOMBIE = 6 (crit 4.2 swaps the labels).
    core = message_class("task_core_entry")
    labels = {state: to_dict(core(task_state=state), pretty=True)["task_state"] for state in (1, 3, 6)}
    assert labels == {1: "Alive", 3: "Stopped", 6: "Zombie"}
    assert to_dict(core(task_state=3), pretty=False)["task_state"] == 3


def test_classes_are_those_of_the_generated_modules() -> None:
    # message_class builds them from _schema.py (upb); importing the *_pb2 modules afterwards gives the same.
    for name, module in MODULE_OF.items():
        assert message_class(name) is getattr(importlib.import_module(f"imgtool.format.pb.{module}"), name), name


_PURE_PYTHON_CHECK = """
import io, sys
from google.protobuf.internal import api_implementation
from imgtool.crit import decode
from imgtool.format.image import Image
from imgtool.crit.jsonout import write_document
from corpus import SAMPLES, golden_files
assert api_implementation.Type() == "python"
checked = 0
for golden in golden_files():
    if SAMPLES not in golden.json.parents or golden.image.name.startswith("ipcns-shm"):
        continue
    out = io.StringIO()
    with Image.open(golden.image) as image:
        write_document(out, image.magic, decode.json_batches(image, golden.pretty), golden.pretty)
    assert out.getvalue() == golden.json.read_text().rstrip("\\n"), golden.id
    checked += 1
print(checked)
"""


def test_pure_python_backend_decodes_as_crit() -> None:
    """Without upb, classes come from the *_pb2 modules and options from the same table: the samples'
    golden files still match, pretty (options at work) and raw."""
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", _PURE_PYTHON_CHECK], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 200
