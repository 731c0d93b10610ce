"""Run one benchmark step in a fresh interpreter and report its wall time and peak RSS.

Peak RSS is VmHWM of the child, read by the child itself (ru_maxrss would include the parent's memory at
fork).  The time counts from before the step's code, imports included, to its end (a step may restart the
clock after its imports: ``start = time.perf_counter()``); the step's stdout goes to /dev/null.  ``python``
runs the step under another interpreter (crit's venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, time
sys.argv = {argv!r}
start = time.perf_counter()
{code}
elapsed = time.perf_counter() - start
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"seconds": elapsed, "rss_kib": hwm}}), file=sys.__stderr__)
"""


@dataclass
class Result:
    seconds: float
    rss_mib: float


def run(code: str, argv: list[str] | None = None, python: str = sys.executable) -> Result:
    """Execute ``code`` in a new Python process (imports included in the time); imgtool is importable."""
    child = _CHILD.format(code=code, argv=argv or ["bench"])
    proc = subprocess.run([python, "-c", child], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False, env=child_env())
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "benchmark step failed")
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return Result(report["seconds"], report["rss_kib"] / 1024)


def child_env() -> dict[str, str]:
    """imgtool importable from the work tree, its bytecode cached as an installed package's is (outside the
    tree, even where PYTHONDONTWRITEBYTECODE is set): otherwise every step would compile imgtool anew."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "imgtool-bench-pycache")
    return env


@dataclass(frozen=True)
class Step:
    """Code to time in a fresh interpreter (``python``: another one, e.g. crit's venv)."""

    code: str
    argv: list[str]
    python: str = sys.executable


RUNS = ((1.0, 9), (10.0, 3))   # a step whose first run took under so many seconds runs so many times; else once


def runs_for(seconds: float) -> int:
    return next((count for limit, count in RUNS if seconds < limit), 1)


def race(*steps: Step) -> list[Result]:
    """Each step's fastest run (RUNS says how many it gets).  The runs take turns (a, b, a, b, ...), so that a
    slow spell of the shared machine hits every step alike."""
    runs: list[list[Result]] = [[] for _ in steps]
    while due := [i for i, done in enumerate(runs) if not done or len(done) < runs_for(done[0].seconds)]:
        for i in due:
            runs[i].append(run(steps[i].code, steps[i].argv, steps[i].python))
    return [min(done, key=lambda r: r.seconds) for done in runs]


def best(code: str, argv: list[str] | None = None, python: str = sys.executable) -> Result:
    """The fastest of a step's runs (see RUNS)."""
    return race(Step(code, argv or ["bench"], python))[0]


@dataclass
class Row:
    """One line of the table: imgtool against one baseline on the same dump in the same run."""

    op: str
    size: str
    ours: Result
    baseline: str
    base: Result


HEADER = ("| operation | dump | imgtool time | imgtool peak RSS | baseline | baseline time | baseline peak RSS "
          "| time ratio | RSS ratio |")


def table(rows: list[Row]) -> str:
    """A Markdown table; ratios are imgtool / baseline, so below 1 means imgtool is faster or smaller."""
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for r in rows:
        lines.append(f"| {r.op} | {r.size} | {r.ours.seconds:.2f} s | {r.ours.rss_mib:.0f} MiB | {r.baseline} "
                     f"| {r.base.seconds:.2f} s | {r.base.rss_mib:.0f} MiB | {r.ours.seconds / r.base.seconds:.3f} "
                     f"| {r.ours.rss_mib / r.base.rss_mib:.2f} |")
    return "\n".join(lines)
