from . import fown_pb2 as _fown_pb2
from . import sk_opts_pb2 as _sk_opts_pb2
from . import tcp_stream_pb2 as _tcp_stream_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ip_opts_raw_entry(_message.Message):
    __slots__ = ("hdrincl", "nodefrag", "checksum", "icmpv_filter")
    HDRINCL_FIELD_NUMBER: _ClassVar[int]
    NODEFRAG_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    ICMPV_FILTER_FIELD_NUMBER: _ClassVar[int]
    hdrincl: bool
    nodefrag: bool
    checksum: bool
    icmpv_filter: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, hdrincl: _Optional[bool] = ..., nodefrag: _Optional[bool] = ..., checksum: _Optional[bool] = ..., icmpv_filter: _Optional[_Iterable[int]] = ...) -> None: ...

class ip_opts_entry(_message.Message):
    __slots__ = ("freebind", "raw", "pktinfo", "tos", "ttl")
    FREEBIND_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    PKTINFO_FIELD_NUMBER: _ClassVar[int]
    TOS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    freebind: bool
    raw: ip_opts_raw_entry
    pktinfo: bool
    tos: int
    ttl: int
    def __init__(self, freebind: _Optional[bool] = ..., raw: _Optional[_Union[ip_opts_raw_entry, _Mapping]] = ..., pktinfo: _Optional[bool] = ..., tos: _Optional[int] = ..., ttl: _Optional[int] = ...) -> None: ...

class inet_sk_entry(_message.Message):
    __slots__ = ("id", "ino", "family", "type", "proto", "state", "src_port", "dst_port", "flags", "backlog", "src_addr", "dst_addr", "fown", "opts", "v6only", "ip_opts", "ifname", "ns_id", "shutdown", "tcp_opts")
    ID_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    SRC_ADDR_FIELD_NUMBER: _ClassVar[int]
    DST_ADDR_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    OPTS_FIELD_NUMBER: _ClassVar[int]
    V6ONLY_FIELD_NUMBER: _ClassVar[int]
    IP_OPTS_FIELD_NUMBER: _ClassVar[int]
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    NS_ID_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    TCP_OPTS_FIELD_NUMBER: _ClassVar[int]
    id: int
    ino: int
    family: int
    type: int
    proto: int
    state: int
    src_port: int
    dst_port: int
    flags: int
    backlog: int
    src_addr: _containers.RepeatedScalarFieldContainer[int]
    dst_addr: _containers.RepeatedScalarFieldContainer[int]
    fown: _fown_pb2.fown_entry
    opts: _sk_opts_pb2.sk_opts_entry
    v6only: bool
    ip_opts: ip_opts_entry
    ifname: str
    ns_id: int
    shutdown: _sk_opts_pb2.sk_shutdown
    tcp_opts: _tcp_stream_pb2.tcp_opts_entry
    def __init__(self, id: _Optional[int] = ..., ino: _Optional[int] = ..., family: _Optional[int] = ..., type: _Optional[int] = ..., proto: _Optional[int] = ..., state: _Optional[int] = ..., src_port: _Optional[int] = ..., dst_port: _Optional[int] = ..., flags: _Optional[int] = ..., backlog: _Optional[int] = ..., src_addr: _Optional[_Iterable[int]] = ..., dst_addr: _Optional[_Iterable[int]] = ..., fown: _Optional[_Union[_fown_pb2.fown_entry, _Mapping]] = ..., opts: _Optional[_Union[_sk_opts_pb2.sk_opts_entry, _Mapping]] = ..., v6only: _Optional[bool] = ..., ip_opts: _Optional[_Union[ip_opts_entry, _Mapping]] = ..., ifname: _Optional[str] = ..., ns_id: _Optional[int] = ..., shutdown: _Optional[_Union[_sk_opts_pb2.sk_shutdown, str]] = ..., tcp_opts: _Optional[_Union[_tcp_stream_pb2.tcp_opts_entry, _Mapping]] = ...) -> None: ...
