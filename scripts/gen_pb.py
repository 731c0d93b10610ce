"""Regenerate imgtool/pb/ from schemas/*.proto.

Usage: python scripts/gen_pb.py [OUTDIR]   (default: imgtool/pb)

Needs grpcio-tools (the "dev" extra).  protoc writes top-level imports
(``import opts_pb2``); they are rewritten to package-relative ones.
tests/test_schemas.py regenerates into a temp dir and fails if the
committed code differs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"

INIT = '''"""Protobuf classes generated from schemas/ by scripts/gen_pb.py. Do not edit.

A module is imported the first time one of its classes is asked for: a program that reads three kinds of image
does not pay for building the descriptors of seventy.
"""

from importlib import import_module

from google.protobuf.message import Message

MODULE_OF = {{
{module_of}
}}

_classes: dict[str, type[Message]] = {{}}


def message_class(name: str) -> type[Message]:
    """The generated class of a CRIU message, by its schema name (e.g. "pstree_entry")."""
    found = _classes.get(name)
    if found is None:
        found = _classes[name] = getattr(import_module(f"{{__name__}}.{{MODULE_OF[name]}}"), name)
    return found
'''

TOP_LEVEL_MESSAGE = re.compile(r"^message\s+(\w+)", re.M)


def generate(out: Path) -> None:
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(p.name for p in SCHEMAS.glob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*_pb2.py*"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{SCHEMAS}", f"-I{include}",
                    f"--python_out={out}", f"--pyi_out={out}", *protos], check=True, cwd=SCHEMAS)
    for gen in sorted(out.glob("*_pb2.py*")):
        gen.write_text(re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", gen.read_text(), flags=re.M))
    module_of = {message: proto.replace("-", "_").removesuffix(".proto") + "_pb2"
                 for proto in protos for message in TOP_LEVEL_MESSAGE.findall((SCHEMAS / proto).read_text())}
    lines = "\n".join(f"    {name!r}: {module!r}," for name, module in sorted(module_of.items()))
    (out / "__init__.py").write_text(INIT.format(module_of=lines))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "imgtool" / "pb")
