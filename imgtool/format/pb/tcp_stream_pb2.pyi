from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class tcp_opts_entry(_message.Message):
    __slots__ = ("cork", "nodelay", "keepcnt", "keepidle", "keepintvl")
    CORK_FIELD_NUMBER: _ClassVar[int]
    NODELAY_FIELD_NUMBER: _ClassVar[int]
    KEEPCNT_FIELD_NUMBER: _ClassVar[int]
    KEEPIDLE_FIELD_NUMBER: _ClassVar[int]
    KEEPINTVL_FIELD_NUMBER: _ClassVar[int]
    cork: bool
    nodelay: bool
    keepcnt: int
    keepidle: int
    keepintvl: int
    def __init__(self, cork: _Optional[bool] = ..., nodelay: _Optional[bool] = ..., keepcnt: _Optional[int] = ..., keepidle: _Optional[int] = ..., keepintvl: _Optional[int] = ...) -> None: ...

class tcp_stream_entry(_message.Message):
    __slots__ = ("inq_len", "inq_seq", "outq_len", "outq_seq", "opt_mask", "snd_wscale", "mss_clamp", "rcv_wscale", "timestamp", "cork", "nodelay", "unsq_len", "snd_wl1", "snd_wnd", "max_window", "rcv_wnd", "rcv_wup")
    INQ_LEN_FIELD_NUMBER: _ClassVar[int]
    INQ_SEQ_FIELD_NUMBER: _ClassVar[int]
    OUTQ_LEN_FIELD_NUMBER: _ClassVar[int]
    OUTQ_SEQ_FIELD_NUMBER: _ClassVar[int]
    OPT_MASK_FIELD_NUMBER: _ClassVar[int]
    SND_WSCALE_FIELD_NUMBER: _ClassVar[int]
    MSS_CLAMP_FIELD_NUMBER: _ClassVar[int]
    RCV_WSCALE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CORK_FIELD_NUMBER: _ClassVar[int]
    NODELAY_FIELD_NUMBER: _ClassVar[int]
    UNSQ_LEN_FIELD_NUMBER: _ClassVar[int]
    SND_WL1_FIELD_NUMBER: _ClassVar[int]
    SND_WND_FIELD_NUMBER: _ClassVar[int]
    MAX_WINDOW_FIELD_NUMBER: _ClassVar[int]
    RCV_WND_FIELD_NUMBER: _ClassVar[int]
    RCV_WUP_FIELD_NUMBER: _ClassVar[int]
    inq_len: int
    inq_seq: int
    outq_len: int
    outq_seq: int
    opt_mask: int
    snd_wscale: int
    mss_clamp: int
    rcv_wscale: int
    timestamp: int
    cork: bool
    nodelay: bool
    unsq_len: int
    snd_wl1: int
    snd_wnd: int
    max_window: int
    rcv_wnd: int
    rcv_wup: int
    def __init__(self, inq_len: _Optional[int] = ..., inq_seq: _Optional[int] = ..., outq_len: _Optional[int] = ..., outq_seq: _Optional[int] = ..., opt_mask: _Optional[int] = ..., snd_wscale: _Optional[int] = ..., mss_clamp: _Optional[int] = ..., rcv_wscale: _Optional[int] = ..., timestamp: _Optional[int] = ..., cork: _Optional[bool] = ..., nodelay: _Optional[bool] = ..., unsq_len: _Optional[int] = ..., snd_wl1: _Optional[int] = ..., snd_wnd: _Optional[int] = ..., max_window: _Optional[int] = ..., rcv_wnd: _Optional[int] = ..., rcv_wup: _Optional[int] = ...) -> None: ...
