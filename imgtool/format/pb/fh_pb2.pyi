from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class fh_entry_sizes(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    min_entries: _ClassVar[fh_entry_sizes]
min_entries: fh_entry_sizes

class fh_entry(_message.Message):
    __slots__ = ("bytes", "type", "handle", "path", "mnt_id")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    type: int
    handle: _containers.RepeatedScalarFieldContainer[int]
    path: str
    mnt_id: int
    def __init__(self, bytes: _Optional[int] = ..., type: _Optional[int] = ..., handle: _Optional[_Iterable[int]] = ..., path: _Optional[str] = ..., mnt_id: _Optional[int] = ...) -> None: ...

class irmap_cache_entry(_message.Message):
    __slots__ = ("dev", "inode", "path")
    DEV_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    dev: int
    inode: int
    path: str
    def __init__(self, dev: _Optional[int] = ..., inode: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...
