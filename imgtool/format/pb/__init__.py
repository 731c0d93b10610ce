"""The protobuf classes of CRIU's messages, generated from schemas/ by scripts/gen_pb.py.

A module's classes are built the first time one of them is asked for: a program that reads three kinds of
image does not pay for the descriptors of seventy.  With protobuf's C backend (upb, the default) they are
built straight from the serialized descriptors in _schema.py, as the *_pb2 modules build them but without
importing protobuf's Python descriptor machinery (descriptor_pool and what it pulls in), which would take
longer than reading a GiB of memory from the page cache.  They are the very classes the *_pb2 modules give
(upb keeps one class per descriptor).  Other backends import the *_pb2 modules.
"""

from importlib import import_module

from google.protobuf.internal import api_implementation
from google.protobuf.message import Message

from ._schema import FILES, MODULE_OF

if api_implementation.Type() == "upb":
    from google.protobuf.pyext.cpp_message import GeneratedProtocolMessageType as _MessageType   # as builder.py
    _POOL = api_implementation._c_module.default_pool    # descriptor_pool.Default(), as cpp_message.py finds it
else:
    _POOL = None

_classes: dict[str, type[Message]] = {}
_loaded: set[str] = set()


def message_class(name: str) -> type[Message]:
    """The generated class of a CRIU message, by its schema name (e.g. "pstree_entry")."""
    found = _classes.get(name)
    if found is None:
        _load(MODULE_OF[name])
        found = _classes[name]
    return found


def _load(module: str) -> None:
    """Build the classes of ``module`` (after those of the modules it imports) into _classes."""
    if _POOL is None:
        generated = import_module(f"{__name__}.{module}")
        _classes.update((name, getattr(generated, name)) for name in generated.DESCRIPTOR.message_types_by_name)
        return
    data, imports = FILES[module]
    for other in imports:
        if other not in _loaded:
            _load(other)
    file = _POOL.AddSerializedFile(data)
    for name, descriptor in file.message_types_by_name.items():
        _classes[name] = _MessageType(name, (Message,), {"DESCRIPTOR": descriptor, "__module__": module,
                                                         "__qualname__": name})
    _loaded.add(module)
