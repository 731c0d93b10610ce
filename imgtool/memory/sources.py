"""What memory needs from a task and a dump's tasks: protocols that ``model.Task`` and ``model.Dump`` fulfil
(``chain.ImageSource`` is what it needs from a dump's images).

Memory sits below the model, so it never imports it; it types against these instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from google.protobuf.message import Message

from imgtool.memory.chain import ImageSource


class TaskSource(Protocol):
    """A task: its pid, its mm image entry and the dump holding its images."""

    @property
    def pid(self) -> int: ...

    @property
    def mm(self) -> Message | None: ...

    @property
    def dump(self) -> ImageSource: ...


class TaskSet(Protocol):
    """A dump's tasks, in pstree order."""

    @property
    def tasks(self) -> Sequence[TaskSource]: ...

    def task(self, pid: int) -> TaskSource: ...


__all__ = ["ImageSource", "TaskSet", "TaskSource"]
