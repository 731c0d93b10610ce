from . import ipc_desc_pb2 as _ipc_desc_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ipc_shm_entry(_message.Message):
    __slots__ = ("desc", "size", "in_pagemaps", "hugetlb_flag")
    DESC_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    IN_PAGEMAPS_FIELD_NUMBER: _ClassVar[int]
    HUGETLB_FLAG_FIELD_NUMBER: _ClassVar[int]
    desc: _ipc_desc_pb2.ipc_desc_entry
    size: int
    in_pagemaps: bool
    hugetlb_flag: int
    def __init__(self, desc: _Optional[_Union[_ipc_desc_pb2.ipc_desc_entry, _Mapping]] = ..., size: _Optional[int] = ..., in_pagemaps: _Optional[bool] = ..., hugetlb_flag: _Optional[int] = ...) -> None: ...
