from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class user_riscv64_regs_entry(_message.Message):
    __slots__ = ("pc", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6")
    PC_FIELD_NUMBER: _ClassVar[int]
    RA_FIELD_NUMBER: _ClassVar[int]
    SP_FIELD_NUMBER: _ClassVar[int]
    GP_FIELD_NUMBER: _ClassVar[int]
    TP_FIELD_NUMBER: _ClassVar[int]
    T0_FIELD_NUMBER: _ClassVar[int]
    T1_FIELD_NUMBER: _ClassVar[int]
    T2_FIELD_NUMBER: _ClassVar[int]
    S0_FIELD_NUMBER: _ClassVar[int]
    S1_FIELD_NUMBER: _ClassVar[int]
    A0_FIELD_NUMBER: _ClassVar[int]
    A1_FIELD_NUMBER: _ClassVar[int]
    A2_FIELD_NUMBER: _ClassVar[int]
    A3_FIELD_NUMBER: _ClassVar[int]
    A4_FIELD_NUMBER: _ClassVar[int]
    A5_FIELD_NUMBER: _ClassVar[int]
    A6_FIELD_NUMBER: _ClassVar[int]
    A7_FIELD_NUMBER: _ClassVar[int]
    S2_FIELD_NUMBER: _ClassVar[int]
    S3_FIELD_NUMBER: _ClassVar[int]
    S4_FIELD_NUMBER: _ClassVar[int]
    S5_FIELD_NUMBER: _ClassVar[int]
    S6_FIELD_NUMBER: _ClassVar[int]
    S7_FIELD_NUMBER: _ClassVar[int]
    S8_FIELD_NUMBER: _ClassVar[int]
    S9_FIELD_NUMBER: _ClassVar[int]
    S10_FIELD_NUMBER: _ClassVar[int]
    S11_FIELD_NUMBER: _ClassVar[int]
    T3_FIELD_NUMBER: _ClassVar[int]
    T4_FIELD_NUMBER: _ClassVar[int]
    T5_FIELD_NUMBER: _ClassVar[int]
    T6_FIELD_NUMBER: _ClassVar[int]
    pc: int
    ra: int
    sp: int
    gp: int
    tp: int
    t0: int
    t1: int
    t2: int
    s0: int
    s1: int
    a0: int
    a1: int
    a2: int
    a3: int
    a4: int
    a5: int
    a6: int
    a7: int
    s2: int
    s3: int
    s4: int
    s5: int
    s6: int
    s7: int
    s8: int
    s9: int
    s10: int
    s11: int
    t3: int
    t4: int
    t5: int
    t6: int
    def __init__(self, pc: _Optional[int] = ..., ra: _Optional[int] = ..., sp: _Optional[int] = ..., gp: _Optional[int] = ..., tp: _Optional[int] = ..., t0: _Optional[int] = ..., t1: _Optional[int] = ..., t2: _Optional[int] = ..., s0: _Optional[int] = ..., s1: _Optional[int] = ..., a0: _Optional[int] = ..., a1: _Optional[int] = ..., a2: _Optional[int] = ..., a3: _Optional[int] = ..., a4: _Optional[int] = ..., a5: _Optional[int] = ..., a6: _Optional[int] = ..., a7: _Optional[int] = ..., s2: _Optional[int] = ..., s3: _Optional[int] = ..., s4: _Optional[int] = ..., s5: _Optional[int] = ..., s6: _Optional[int] = ..., s7: _Optional[int] = ..., s8: _Optional[int] = ..., s9: _Optional[int] = ..., s10: _Optional[int] = ..., s11: _Optional[int] = ..., t3: _Optional[int] = ..., t4: _Optional[int] = ..., t5: _Optional[int] = ..., t6: _Optional[int] = ...) -> None: ...

class user_riscv64_d_ext_entry(_message.Message):
    __slots__ = ("f", "fcsr")
    F_FIELD_NUMBER: _ClassVar[int]
    FCSR_FIELD_NUMBER: _ClassVar[int]
    f: _containers.RepeatedScalarFieldContainer[int]
    fcsr: int
    def __init__(self, f: _Optional[_Iterable[int]] = ..., fcsr: _Optional[int] = ...) -> None: ...

class thread_info_riscv64(_message.Message):
    __slots__ = ("clear_tid_addr", "tls", "gpregs", "fpsimd")
    CLEAR_TID_ADDR_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    GPREGS_FIELD_NUMBER: _ClassVar[int]
    FPSIMD_FIELD_NUMBER: _ClassVar[int]
    clear_tid_addr: int
    tls: int
    gpregs: user_riscv64_regs_entry
    fpsimd: user_riscv64_d_ext_entry
    def __init__(self, clear_tid_addr: _Optional[int] = ..., tls: _Optional[int] = ..., gpregs: _Optional[_Union[user_riscv64_regs_entry, _Mapping]] = ..., fpsimd: _Optional[_Union[user_riscv64_d_ext_entry, _Mapping]] = ...) -> None: ...
