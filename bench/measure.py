"""Run one benchmark step in a fresh interpreter and report its wall time and peak RSS.

Peak RSS is VmHWM of the child (ru_maxrss would include the parent's memory at fork).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

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


def run(code: str, argv: list[str] | None = None) -> Result:
    """Execute ``code`` in a new Python process (imports included in the time)."""
    child = _CHILD.format(code=code, argv=argv or ["bench"])
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "benchmark step failed")
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return Result(report["seconds"], report["rss_kib"] / 1024)


def table(rows: list[tuple[str, str, Result, str, Result]]) -> str:
    """Operation, size, ours, baseline, ratio (baseline time / ours)."""
    head = f"{'operation':<28} {'size':>14} {'imgtool':>18} {'baseline':<34} {'speed-up':>8}"
    lines = [head, "-" * len(head)]
    for op, size, ours, base_name, base in rows:
        lines.append(f"{op:<28} {size:>14} {ours.seconds:7.2f} s {ours.rss_mib:5.0f} MiB "
                     f"{base_name:<16}{base.seconds:6.2f} s {base.rss_mib:5.0f} MiB {base.seconds / ours.seconds:7.1f}x")
    return "\n".join(lines)
