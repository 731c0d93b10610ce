from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class aa_policy(_message.Message):
    __slots__ = ("name", "blob")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    name: str
    blob: bytes
    def __init__(self, name: _Optional[str] = ..., blob: _Optional[bytes] = ...) -> None: ...

class aa_namespace(_message.Message):
    __slots__ = ("name", "policies", "namespaces")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    name: str
    policies: _containers.RepeatedCompositeFieldContainer[aa_policy]
    namespaces: _containers.RepeatedCompositeFieldContainer[aa_namespace]
    def __init__(self, name: _Optional[str] = ..., policies: _Optional[_Iterable[_Union[aa_policy, _Mapping]]] = ..., namespaces: _Optional[_Iterable[_Union[aa_namespace, _Mapping]]] = ...) -> None: ...

class apparmor_entry(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[aa_namespace]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[aa_namespace, _Mapping]]] = ...) -> None: ...
