from . import fown_pb2 as _fown_pb2
from . import sk_opts_pb2 as _sk_opts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class packet_mclist(_message.Message):
    __slots__ = ("index", "type", "addr")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    index: int
    type: int
    addr: bytes
    def __init__(self, index: _Optional[int] = ..., type: _Optional[int] = ..., addr: _Optional[bytes] = ...) -> None: ...

class packet_ring(_message.Message):
    __slots__ = ("block_size", "block_nr", "frame_size", "frame_nr", "retire_tmo", "sizeof_priv", "features")
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NR_FIELD_NUMBER: _ClassVar[int]
    FRAME_SIZE_FIELD_NUMBER: _ClassVar[int]
    FRAME_NR_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TMO_FIELD_NUMBER: _ClassVar[int]
    SIZEOF_PRIV_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    block_size: int
    block_nr: int
    frame_size: int
    frame_nr: int
    retire_tmo: int
    sizeof_priv: int
    features: int
    def __init__(self, block_size: _Optional[int] = ..., block_nr: _Optional[int] = ..., frame_size: _Optional[int] = ..., frame_nr: _Optional[int] = ..., retire_tmo: _Optional[int] = ..., sizeof_priv: _Optional[int] = ..., features: _Optional[int] = ...) -> None: ...

class packet_sock_entry(_message.Message):
    __slots__ = ("id", "type", "protocol", "flags", "ifindex", "fown", "opts", "version", "reserve", "aux_data", "orig_dev", "vnet_hdr", "loss", "timestamp", "copy_thresh", "mclist", "fanout", "rx_ring", "tx_ring", "ns_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    FOWN_FIELD_NUMBER: _ClassVar[int]
    OPTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    AUX_DATA_FIELD_NUMBER: _ClassVar[int]
    ORIG_DEV_FIELD_NUMBER: _ClassVar[int]
    VNET_HDR_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    COPY_THRESH_FIELD_NUMBER: _ClassVar[int]
    MCLIST_FIELD_NUMBER: _ClassVar[int]
    FANOUT_FIELD_NUMBER: _ClassVar[int]
    RX_RING_FIELD_NUMBER: _ClassVar[int]
    TX_RING_FIELD_NUMBER: _ClassVar[int]
    NS_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: int
    protocol: int
    flags: int
    ifindex: int
    fown: _fown_pb2.fown_entry
    opts: _sk_opts_pb2.sk_opts_entry
    version: int
    reserve: int
    aux_data: bool
    orig_dev: bool
    vnet_hdr: bool
    loss: bool
    timestamp: int
    copy_thresh: int
    mclist: _containers.RepeatedCompositeFieldContainer[packet_mclist]
    fanout: int
    rx_ring: packet_ring
    tx_ring: packet_ring
    ns_id: int
    def __init__(self, id: _Optional[int] = ..., type: _Optional[int] = ..., protocol: _Optional[int] = ..., flags: _Optional[int] = ..., ifindex: _Optional[int] = ..., fown: _Optional[_Union[_fown_pb2.fown_entry, _Mapping]] = ..., opts: _Optional[_Union[_sk_opts_pb2.sk_opts_entry, _Mapping]] = ..., version: _Optional[int] = ..., reserve: _Optional[int] = ..., aux_data: _Optional[bool] = ..., orig_dev: _Optional[bool] = ..., vnet_hdr: _Optional[bool] = ..., loss: _Optional[bool] = ..., timestamp: _Optional[int] = ..., copy_thresh: _Optional[int] = ..., mclist: _Optional[_Iterable[_Union[packet_mclist, _Mapping]]] = ..., fanout: _Optional[int] = ..., rx_ring: _Optional[_Union[packet_ring, _Mapping]] = ..., tx_ring: _Optional[_Union[packet_ring, _Mapping]] = ..., ns_id: _Optional[int] = ...) -> None: ...
