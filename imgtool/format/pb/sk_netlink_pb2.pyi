from . import fown_pb2 as _fown_pb2
from . import sk_opts_pb2 as _sk_opts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class netlink_sk_entry(_message.Message):
    __slots__ = ("id", "ino", "protocol", "state", "flags", "portid", "groups", "dst_portid", "dst_group", "fown", "opts", "ns_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    PORTID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DST_PORTID_FIELD_NUMBER: _ClassVar[int]
    DST_GROUP_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    OPTS_FIELD_NUMBER: _ClassVar[int]
    NS_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    ino: int
    protocol: int
    state: int
    flags: int
    portid: int
    groups: _containers.RepeatedScalarFieldContainer[int]
    dst_portid: int
    dst_group: int
    fown: _fown_pb2.fown_entry
    opts: _sk_opts_pb2.sk_opts_entry
    ns_id: int
    def __init__(self, id: _Optional[int] = ..., ino: _Optional[int] = ..., protocol: _Optional[int] = ..., state: _Optional[int] = ..., flags: _Optional[int] = ..., portid: _Optional[int] = ..., groups: _Optional[_Iterable[int]] = ..., dst_portid: _Optional[int] = ..., dst_group: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.fown_entry, _Mapping]] = ..., opts: _Optional[_Union[_sk_opts_pb2.sk_opts_entry, _Mapping]] = ..., ns_id: _Optional[int] = ...) -> None: ...
