"""One search over many checkpoints: in this process, a local process pool, or an existing Dask cluster.

The unit of work is one checkpoint: ``scan_checkpoint(path, query)`` opens it by path (a directory or an
archive), runs the query (a literal, a regex or compiled YARA rules) over every task's memory and returns a
``CheckpointResult``: JSON-ready hits, or the error that stopped it.  It never raises, so one checkpoint that
cannot be read never stops the others.  ``scan`` hands the units to ``jobs`` local processes
(``concurrent.futures``, forkserver) or to a Dask scheduler (``dask.distributed``, the optional extra
``imgtool[dask]``), and yields results as they complete.  Workers read the checkpoints by path: a Dask
cluster's workers need the same shared filesystem, at the same paths, and imgtool installed.  No scheduler
of our own.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from imgtool.errors import ImgtoolError, UsageError

KINDS = ("string", "hex", "regex", "yara")


@dataclass(frozen=True)
class Query:
    """What to look for, in a form that pickles (YARA rules as compiled bytes: includes resolved here)."""

    kind: str                     # string, hex, regex, yara
    value: bytes                  # the needle, the regex, or the compiled rules
    label: str = ""               # for messages: the text given, or the rules file
    regex_window: int = 4096
    context: int = 16
    max_count: int | None = None  # hits per checkpoint
    pids: tuple[int, ...] | None = None

    @classmethod
    def make(cls, kind: str, text: str, **options: Any) -> Query:
        """A checked query: the regex compiles, the hex parses, the rules compile (raises otherwise)."""
        from imgtool.memory.search import Literal, Regex

        if kind == "string":
            value = text.encode("utf-8", "surrogateescape")
            Literal(value)
        elif kind == "hex":
            try:
                value = bytes.fromhex(text)
            except ValueError:
                raise UsageError(f"--hex {text!r} is not an even number of hex digits") from None
            Literal(value)
        elif kind == "regex":
            value = text.encode("utf-8", "surrogateescape")
            Regex(value, window=options.get("regex_window", 4096))
        elif kind == "yara":
            from imgtool.analysis.forensics.yara import compile_rules

            buf = io.BytesIO()
            compile_rules(text).save(file=buf)
            value = buf.getvalue()
        else:
            raise UsageError(f"unknown query kind {kind!r} (one of {', '.join(KINDS)})")
        return cls(kind, value, text, **options)


@dataclass
class CheckpointResult:
    """One checkpoint's outcome: its hits (JSON-ready, each with ``checkpoint``) or why it could not be read."""

    path: str
    hits: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    tasks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"checkpoint": self.path, "hits": len(self.hits), "error": self.error, "seconds": self.seconds,
                "tasks": self.tasks}


@lru_cache(maxsize=4)
def _rules(compiled: bytes) -> Any:
    """Rules loaded from their compiled bytes, once per process."""
    from imgtool.analysis.forensics.yara import load_yara

    return load_yara().load(file=io.BytesIO(compiled))


def _hits(dump: Any, query: Query) -> Iterator[dict[str, Any]]:
    if query.kind == "yara":
        from imgtool.analysis.forensics.yara import scan_dump

        for hit in scan_dump(dump, _rules(query.value), pids=query.pids, context=query.context):
            yield hit.to_json()
        return
    from imgtool.memory.search import Literal, Regex, search_dump

    pattern = Regex(query.value, window=query.regex_window) if query.kind == "regex" else Literal(query.value)
    for hit in search_dump(dump, pattern, pids=query.pids, context=query.context):
        yield hit.to_json()


def scan_checkpoint(path: str, query: Query, shown: str | None = None) -> CheckpointResult:
    """Run ``query`` over the checkpoint at ``path`` (reported as ``shown``); never raises."""
    import imgtool

    shown = shown or path
    started = time.perf_counter()
    result = CheckpointResult(shown)
    try:
        with imgtool.open(path) as dump:
            dump.require_pstree()
            result.tasks = len(dump.tasks)
            for hit in _hits(dump, query):
                result.hits.append({"checkpoint": shown, **hit})
                if query.max_count is not None and len(result.hits) >= query.max_count:
                    break
    except Exception as exc:    # any failure is this checkpoint's alone: reported, the others go on
        result.hits = []
        result.error = str(exc) if isinstance(exc, ImgtoolError) else f"{type(exc).__name__}: {exc}"
    result.seconds = round(time.perf_counter() - started, 6)
    return result


# -- many checkpoints ------------------------------------------------------------------------------------------

_GLOB = set("*?[")


def expand(patterns: Sequence[str]) -> list[str]:
    """Checkpoint paths: each argument as it is, or (a quoted glob, as a Dask job may get) what it matches."""
    found: list[str] = []
    for pattern in patterns:
        if not os.path.lexists(pattern) and _GLOB & set(pattern):
            matched = sorted(glob.glob(pattern))
            found += matched or [pattern]      # nothing matched: reported as a checkpoint that cannot be read
        else:
            found.append(pattern)
    return list(dict.fromkeys(found))


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:    # not Linux
        return os.cpu_count() or 1


def scan(paths: Sequence[str], query: Query, *, jobs: int | None = None, dask: str | None = None
         ) -> Iterator[CheckpointResult]:
    """``scan_checkpoint`` over every path, results as they complete: in this process (``jobs`` 1), in a pool
    of ``jobs`` processes (default: one per usable CPU) or on the Dask scheduler at ``dask``."""
    if dask is not None:
        yield from _on_dask(paths, query, dask)
        return
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if jobs == 1 or len(paths) <= 1:
        for path in paths:
            yield scan_checkpoint(os.path.abspath(path), query, path)
        return
    yield from _in_pool(paths, query, min(jobs, len(paths)))


def _in_pool(paths: Sequence[str], query: Query, jobs: int) -> Iterator[CheckpointResult]:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(jobs, mp_context=_pool_context()) as pool:
        futures = {pool.submit(scan_checkpoint, os.path.abspath(p), query, p): p for p in paths}
        try:
            for future in as_completed(futures):
                yield _outcome(future, futures[future])
        finally:
            for future in futures:
                future.cancel()


def _pool_context() -> Any:
    """fork while this process runs one thread: the workers start with imgtool imported ('imgtool scan' bench,
    --jobs 2); with more threads (a progress bar's) forkserver, as a fork could copy a lock another thread holds."""
    import multiprocessing

    return multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")


def _outcome(future: Any, path: str) -> CheckpointResult:
    """The result of a finished future; a worker that died is that checkpoint's error."""
    try:
        return future.result()
    except Exception as exc:
        return CheckpointResult(path, error=f"worker failed: {type(exc).__name__}: {exc}")


def load_dask() -> Any:
    try:
        import distributed  # optional extra: imported only for --dask
    except ImportError:
        raise UsageError("--dask needs dask.distributed: pip install 'imgtool[dask]' "
                         "(or pip install 'dask[distributed]')") from None
    return distributed


def _on_dask(paths: Sequence[str], query: Query, address: str) -> Iterator[CheckpointResult]:
    distributed = load_dask()
    try:
        client = distributed.Client(address, timeout="10s")
    except OSError as exc:
        raise UsageError(f"--dask {address}: cannot reach the scheduler: {exc}") from None
    token = hashlib.sha1(os.urandom(8)).hexdigest()[:12]
    try:
        futures = {client.submit(scan_checkpoint, os.path.abspath(p), query, p, key=f"imgtool-scan-{token}-{i}",
                                 pure=False): p for i, p in enumerate(paths)}
        try:
            for future in distributed.as_completed(list(futures)):
                yield _outcome(future, futures[future])
        finally:
            client.cancel(list(futures))
    finally:
        client.close()


def exit_status(results: Sequence[CheckpointResult]) -> int:
    """0: something found; 1: nothing found; 2: every checkpoint failed (or none given)."""
    if not results or all(r.error is not None for r in results):
        return 2
    return 0 if any(r.hits for r in results) else 1


__all__ = ["CheckpointResult", "Query", "default_jobs", "exit_status", "expand", "scan", "scan_checkpoint"]
