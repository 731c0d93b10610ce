from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class pagemap_columns(_message.Message):
    __slots__ = ("vaddr", "compat_nr_pages", "in_parent", "flags", "nr_pages")
    VADDR_FIELD_NUMBER: _ClassVar[int]
    COMPAT_NR_PAGES_FIELD_NUMBER: _ClassVar[int]
    IN_PARENT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NR_PAGES_FIELD_NUMBER: _ClassVar[int]
    vaddr: _containers.RepeatedScalarFieldContainer[int]
    compat_nr_pages: _containers.RepeatedScalarFieldContainer[int]
    in_parent: _containers.RepeatedScalarFieldContainer[bool]
    flags: _containers.RepeatedScalarFieldContainer[int]
    nr_pages: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, vaddr: _Optional[_Iterable[int]] = ..., compat_nr_pages: _Optional[_Iterable[int]] = ..., in_parent: _Optional[_Iterable[bool]] = ..., flags: _Optional[_Iterable[int]] = ..., nr_pages: _Optional[_Iterable[int]] = ...) -> None: ...
