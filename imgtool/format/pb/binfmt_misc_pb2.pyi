from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class binfmt_misc_entry(_message.Message):
    __slots__ = ("name", "enabled", "interpreter", "flags", "extension", "magic", "mask", "offset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    INTERPRETER_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    MAGIC_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    interpreter: str
    flags: str
    extension: str
    magic: str
    mask: str
    offset: int
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., interpreter: _Optional[str] = ..., flags: _Optional[str] = ..., extension: _Optional[str] = ..., magic: _Optional[str] = ..., mask: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...
