"""Which task of one dump is which task of the other: by pid, else by comm + cmdline + tree position."""

from __future__ import annotations

from collections.abc import Callable

from imgtool.analysis.changes import TaskMatch
from imgtool.model.dump import Dump, Task


def _tree_position(task: Task) -> tuple[str, ...]:
    """Comms from the root down to the task, with the rank among same-named siblings."""
    chain: list[str] = []
    node: Task | None = task
    while node is not None:
        parent = node.parent
        siblings = parent.children if parent is not None else [t for t in node.dump.tasks if t.parent is None]
        same = [s.pid for s in siblings if s.comm == node.comm]
        chain.append(f"{node.comm}#{same.index(node.pid) if node.pid in same else '?'}")
        node = parent
    return tuple(reversed(chain))


def task_key(task: Task, cmdline: Callable[[Task], list[str]] | None = None) -> tuple:
    return (task.comm, tuple(cmdline(task)) if cmdline else (), _tree_position(task))


def match_tasks(a: Dump, b: Dump, cmdline: Callable[[Task], list[str]] | None = None) -> list[TaskMatch]:
    """Pair tasks: by pid when both dumps have it, else by a stable key (comm, cmdline, tree position)."""
    b_by_pid = {t.pid: t for t in b.tasks}
    matches, left_a = [], []
    for task in a.tasks:
        other = b_by_pid.get(task.pid)
        if other is not None:
            matches.append(TaskMatch(task.pid, other.pid, "pid"))
            del b_by_pid[task.pid]
        else:
            left_a.append(task)
    b_by_key: dict[tuple, list[Task]] = {}
    for task in b_by_pid.values():
        b_by_key.setdefault(task_key(task, cmdline), []).append(task)
    for task in left_a:
        same = b_by_key.get(task_key(task, cmdline))
        if same:
            other = same.pop(0)
            matches.append(TaskMatch(task.pid, other.pid, "key"))
            del b_by_pid[other.pid]
        else:
            matches.append(TaskMatch(task.pid, None, "unmatched"))
    matches += [TaskMatch(None, pid, "unmatched") for pid in b_by_pid]
    return matches
