from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class remap_type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINKED: _ClassVar[remap_type]
    GHOST: _ClassVar[remap_type]
    PROCFS: _ClassVar[remap_type]
LINKED: remap_type
GHOST: remap_type
PROCFS: remap_type

class remap_file_path_entry(_message.Message):
    __slots__ = ("orig_id", "remap_id", "remap_type")
    ORIG_ID_FIELD_NUMBER: _ClassVar[int]
    REMAP_ID_FIELD_NUMBER: _ClassVar[int]
    REMAP_TYPE_FIELD_NUMBER: _ClassVar[int]
    orig_id: int
    remap_id: int
    remap_type: remap_type
    def __init__(self, orig_id: _Optional[int] = ..., remap_id: _Optional[int] = ..., remap_type: _Optional[_Union[remap_type, str]] = ...) -> None: ...
