"""Per-task facets read from the core image: identity, threads, credentials, limits, signals, registers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imgtool.analysis.changes import Change
from imgtool.analysis.diff.registry import TaskPair, facet
from imgtool.analysis.diff.values import diff_values
from imgtool.crit.convert import to_dict
from imgtool.model.dump import Task
from imgtool.model.files import signal_names

RLIMITS = ["CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS",
           "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"]


@facet("tasks", order=10, help="processes added or removed; comm, state, exit code, parent, group, session, cwd",
       images=r"pstree|core-\d+|ids-\d+|fs-\d+")
def tasks(pair: TaskPair) -> Iterator[Change]:
    ta, tb, base = pair.a, pair.b, pair.base
    for name in ("comm", "state", "exit_code"):
        if getattr(ta, name) != getattr(tb, name):
            yield Change("tasks", (*base, name), "changed", getattr(ta, name), getattr(tb, name))
    for name in ("ppid", "pgid", "sid"):  # pid-valued: compared through the task matching
        old, new = getattr(ta, name), getattr(tb, name)
        if pair.pid_map.get(old, old) != new:
            yield Change("tasks", (*base, name), "changed", old, new)
    if ta.cwd != tb.cwd:
        yield Change("tasks", (*base, "cwd"), "changed", ta.cwd, tb.cwd)


@facet("threads", order=20, help="number and names of threads")
def threads(pair: TaskPair) -> Iterator[Change]:
    old, new = [t.comm for t in pair.a.thread_list], [t.comm for t in pair.b.thread_list]
    if len(old) != len(new):
        yield Change("threads", (*pair.base, "threads"), "changed", len(old), len(new))
    elif old != new:
        yield Change("threads", (*pair.base, "thread names"), "changed", old, new)


@facet("creds", order=30, help="uids, gids, capabilities, securebits", images=r"creds-\d+")
def creds(pair: TaskPair) -> Iterator[Change]:
    if pair.a.creds is not None and pair.b.creds is not None:
        yield from diff_values("creds", (*pair.base, "creds"), to_dict(pair.a.creds, True),
                               to_dict(pair.b.creds, True))


@facet("rlimits", order=40, help="resource limits (soft/hard)")
def rlimits(pair: TaskPair) -> Iterator[Change]:
    yield from diff_values("rlimits", (*pair.base, "rlimits"), _rlimits(pair.a), _rlimits(pair.b))


@facet("signals", order=50, help="blocked signals, pending signals, handlers")
def signals(pair: TaskPair) -> Iterator[Change]:
    yield from diff_values("signals", (*pair.base, "signals"), _signals(pair.a), _signals(pair.b))


@facet("registers", order=60, default=False, help="thread registers (differ at every dump: not by default)")
def registers(pair: TaskPair) -> Iterator[Change]:
    ta, tb = pair.a, pair.b
    for tid_a, tid_b in zip(ta.threads, tb.threads, strict=False):
        yield from diff_values("registers", (*pair.base, f"thread {tid_a}", "registers"),
                               to_dict(ta.thread_core(tid_a).thread_info, True),
                               to_dict(tb.thread_core(tid_b).thread_info, True))


def _rlimits(task: Task) -> dict[str, Any]:
    tc = task.core.tc
    limits = tc.rlimits.rlimits if tc.HasField("rlimits") else []
    return {RLIMITS[i] if i < len(RLIMITS) else str(i): f"{r.cur}/{r.max}" for i, r in enumerate(limits)}


def _signals(task: Task) -> dict[str, Any]:
    tc = task.core.tc
    handlers = {f"SIG{i + 1} handler": hex(sa.sigaction) for i, sa in enumerate(tc.sigactions) if sa.sigaction}
    pending = len(tc.signals_s.signals) if tc.HasField("signals_s") else 0
    return {"blocked": signal_names(tc.blk_sigset), "pending shared": pending, **handlers}
