"""Check schemas/*.proto against CRIU's images/*.proto, field by field.

Usage: python scripts/compare_schemas.py CRIU_SRC/images [NAME.proto ...]

Both trees are compiled with grpc_tools' protoc into descriptor sets; every
message and enum of CRIU's files must exist in ours with the same fields
(name, number, type, label, default, packed, (criu) options) and values.
Package names and comments are ignored.  Exit 1 on any difference.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
SKIP = {"rpc.proto", "img-streamer.proto"}


def _protoc_include() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def compile_set(root: Path, names: list[str]) -> descriptor_pb2.FileDescriptorSet:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}",
               f"-I{_protoc_include()}", "--include_imports",
               f"--descriptor_set_out={out}", *names]
        subprocess.run(cmd, check=True, cwd=root)
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(out.read_bytes())
        return fds


def _short(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


def _field_key(f: descriptor_pb2.FieldDescriptorProto) -> tuple:
    opts = descriptor_pb2.FieldOptions()
    opts.CopyFrom(f.options)
    return (f.name, f.number, f.type, f.label, _short(f.type_name),
            f.default_value, opts.SerializeToString(deterministic=True))


def collect(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, tuple]:
    out: dict[str, tuple] = {}

    def walk_msg(m: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        name = prefix + m.name
        out[name] = tuple(sorted(_field_key(f) for f in m.field))
        for e in m.enum_type:
            out[name + "." + e.name] = tuple((v.name, v.number) for v in e.value)
        for n in m.nested_type:
            walk_msg(n, name + ".")

    for fd in fds.file:
        if fd.name.startswith("google/"):
            continue
        for m in fd.message_type:
            walk_msg(m, "")
        for e in fd.enum_type:
            out[e.name] = tuple((v.name, v.number) for v in e.value)
        for x in fd.extension:
            out["ext:" + x.name] = (x.number, x.type, _short(x.type_name))
    return out


def main(argv: list[str]) -> int:
    criu = Path(argv[1])
    names = argv[2:] or sorted(p.name for p in criu.glob("*.proto") if p.name not in SKIP)
    theirs = collect(compile_set(criu, names))
    ours = collect(compile_set(SCHEMAS, names))
    bad = 0
    for key, val in theirs.items():
        if key not in ours:
            print(f"missing: {key}")
            bad += 1
        elif ours[key] != val:
            print(f"differs: {key}\n  criu: {val}\n  ours: {ours[key]}")
            bad += 1
    print(f"{len(theirs) - bad} of {len(theirs)} definitions identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
