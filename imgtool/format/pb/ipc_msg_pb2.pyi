from . import ipc_desc_pb2 as _ipc_desc_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ipc_msg(_message.Message):
    __slots__ = ("mtype", "msize")
    MTYPE_FIELD_NUMBER: _ClassVar[int]
    MSIZE_FIELD_NUMBER: _ClassVar[int]
    mtype: int
    msize: int
    def __init__(self, mtype: _Optional[int] = ..., msize: _Optional[int] = ...) -> None: ...

class ipc_msg_entry(_message.Message):
    __slots__ = ("desc", "qbytes", "qnum")
    DESC_FIELD_NUMBER: _ClassVar[int]
    QBYTES_FIELD_NUMBER: _ClassVar[int]
    QNUM_FIELD_NUMBER: _ClassVar[int]
    desc: _ipc_desc_pb2.ipc_desc_entry
    qbytes: int
    qnum: int
    def __init__(self, desc: _Optional[_Union[_ipc_desc_pb2.ipc_desc_entry, _Mapping]] = ..., qbytes: _Optional[int] = ..., qnum: _Optional[int] = ...) -> None: ...
