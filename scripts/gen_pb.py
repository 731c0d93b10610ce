"""Regenerate imgtool/format/pb/ from schemas/*.proto.

Usage: python scripts/gen_pb.py [OUTDIR]   (default: imgtool/format/pb)

Needs grpcio-tools (the "dev" extra).  The (criu) field options (hex, flags, dev, ...) only steer crit's
"pretty" JSON, and loading them needs protobuf's own descriptor.proto, which is slow to import.  So they
are taken out: the *_pb2 modules are generated from the schemas without them, and _schema.py holds them
as a table (FIELD_OPTIONS), beside each module's serialized descriptor (FILES) and the module of each
message (MODULE_OF).  protoc writes top-level imports (``import vma_pb2``); they are rewritten to
package-relative ones.  tests/test_schemas.py regenerates into a temp dir and fails if the committed code
differs.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
OPTS_FILE, OPTS_EXTENSION = "opts.proto", "imgtool.images.criu"
PROTOBUF_OWN = "google/protobuf/descriptor.proto"

SCHEMA = '''"""Generated from schemas/ by scripts/gen_pb.py. Do not edit.

MODULE_OF: the *_pb2 module of each message.  FILES: each module's serialized descriptor and the modules it
imports.  FIELD_OPTIONS: the (criu) options of each field that has some (schemas/opts.proto), which the
descriptors leave out.
"""

MODULE_OF = {{
{module_of}
}}

FILES: dict[str, tuple[bytes, tuple[str, ...]]] = {{
{files}
}}

FIELD_OPTIONS: dict[str, dict[str, bool | str]] = {{
{options}
}}
'''


def module_name(proto: str) -> str:
    return proto.replace("-", "_").removesuffix(".proto") + "_pb2"


def protoc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args], check=True, cwd=SCHEMAS)


def messages(prefix: str, found: Any) -> Iterator[tuple[str, Any]]:
    """(full name, DescriptorProto) of each message in ``found`` and of the messages nested in them."""
    for message in found:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from messages(name, message.nested_type)


def strip_options(data: bytes) -> tuple[Any, dict[str, dict[str, bool | str]]]:
    """The FileDescriptorSet ``data`` without opts.proto, descriptor.proto and the (criu) options, and
    those options by field full name."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()       # one that knows the extension, so it parses as one
    for proto in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(proto)
    file_set = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.protobuf.FileDescriptorSet"))
    criu = pool.FindExtensionByName(OPTS_EXTENSION)
    options: dict[str, dict[str, bool | str]] = {}
    kept = [proto for proto in file_set.FromString(data).file if proto.name not in (OPTS_FILE, PROTOBUF_OWN)]
    for proto in kept:
        assert not proto.public_dependency and not proto.weak_dependency, proto.name
        deps = [dep for dep in proto.dependency if dep != OPTS_FILE]
        del proto.dependency[:]
        proto.dependency.extend(deps)
        for name, message in messages(proto.package, proto.message_type):
            for field in message.field:
                field.ClearField("json_name")    # protoc sets it in descriptor sets, not in generated code
                if field.options.HasExtension(criu):
                    values = field.options.Extensions[criu].ListFields()
                    options[f"{name}.{field.name}"] = {desc.name: value for desc, value in values}
                    field.options.ClearExtension(criu)
                    if not field.options.ListFields():
                        field.ClearField("options")
    return file_set(file=kept), options


def serialized(module: Path) -> bytes:
    """The descriptor a generated module adds to the pool, as it adds it."""
    literal = re.search(r"AddSerializedFile\((b'.*?')\)\n", module.read_text(), re.S)
    assert literal is not None, module
    return ast.literal_eval(literal.group(1))


def generate(out: Path) -> None:
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(p.name for p in SCHEMAS.glob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*_pb2.py*"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        full, stripped = Path(tmp) / "full.pb", Path(tmp) / "stripped.pb"
        protoc(f"-I{SCHEMAS}", f"-I{include}", "--include_imports", f"--descriptor_set_out={full}", *protos)
        file_set, options = strip_options(full.read_bytes())
        stripped.write_bytes(file_set.SerializeToString())
        protoc(f"--descriptor_set_in={stripped}", f"--python_out={out}", f"--pyi_out={out}",
               *(proto.name for proto in file_set.file))
    for gen in sorted(out.glob("*_pb2.py*")):
        gen.write_text(re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", gen.read_text(), flags=re.M))
    module_of = {message.name: module_name(proto.name) for proto in file_set.file for message in proto.message_type}
    files = {module_name(proto.name): (serialized(out / f"{module_name(proto.name)}.py"),
                                       tuple(module_name(dep) for dep in proto.dependency))
             for proto in file_set.file}
    (out / "_schema.py").write_text(SCHEMA.format(
        module_of="\n".join(f"    {name!r}: {module!r}," for name, module in sorted(module_of.items())),
        files="\n".join(f"    {module!r}: ({data!r}, {deps!r})," for module, (data, deps) in sorted(files.items())),
        options="\n".join(f"    {field!r}: {opts!r}," for field, opts in sorted(options.items()))))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "imgtool" / "format" / "pb")
