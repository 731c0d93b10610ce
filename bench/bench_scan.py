"""``imgtool scan`` over a fleet of synthetic checkpoints: 1 job, 2 jobs and a 2-worker local Dask cluster.

    python bench/bench_scan.py [--count 4] [--gib 1] [--runs 3] [--keep DIR]

Generates ``count`` seeded dumps of ``gib`` GiB each (imgtool.testing.synth.generate: one task, dense
pagemap, pseudo-random pages, a needle in the last page) into a temp dir (or ``--keep DIR``, reused when it
holds them already), reads them once so every variant starts from a warm page cache, then times
``imgtool scan DUMP... --string NEEDLE --json`` in a fresh interpreter with ``--jobs 1``, ``--jobs 2`` and
``--dask`` to a LocalCluster of 2 single-threaded worker processes started here beforehand (its start-up is
reported on its own, not in the scan's time).  Each variant takes the best of ``--runs``; the table gives
each against ``--jobs 1`` (the goal: at most 0.7 with 2 jobs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from imgtool.testing.synth import generate  # noqa: E402

from measure import child_env  # noqa: E402

NEEDLE = b"BENCH-SCAN-NEEDLE-5e1f"
GOAL = 0.7


def fleet(root: Path, count: int, gib: float) -> list[Path]:
    dumps = []
    for i in range(count):
        target = root / f"ckpt-{i}"
        done = target / "d0" / "inventory.img"
        if not done.is_file():
            shutil.rmtree(target, ignore_errors=True)
            started = time.perf_counter()
            generate(target, seed=100 + i, gib=gib, needle=NEEDLE)
            print(f"generated {target} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        dumps.append(target / "d0")
    return dumps


def warm(dumps: list[Path]) -> None:
    for dump in dumps:
        for pages in dump.glob("pages-*.img"):
            with open(pages, "rb") as f:
                while f.read(8 << 20):
                    pass


def timed(argv: list[str], runs: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env())
        took = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
        best, out = min(best, took), done.stdout
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4, help="checkpoints in the fleet (default 4)")
    parser.add_argument("--gib", type=float, default=1.0, help="GiB of memory per checkpoint (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant, best taken (default 3)")
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it (reused next time)")
    args = parser.parse_args(argv)
    tmp = None if args.keep else tempfile.mkdtemp(prefix="imgtool-bench-scan-")
    root = Path(args.keep or tmp)
    root.mkdir(parents=True, exist_ok=True)
    try:
        dumps = fleet(root, args.count, args.gib)
        warm(dumps)
        base = [sys.executable, "-m", "imgtool", "scan", *map(str, dumps), "--string", NEEDLE.decode(), "--json"]
        rows: list[tuple[str, float, int]] = []
        for label, extra in (("--jobs 1", ["--jobs", "1"]), ("--jobs 2", ["--jobs", "2"])):
            took, out = timed([*base, *extra], args.runs)
            rows.append((label, took, len(out.splitlines())))
        from distributed import LocalCluster

        started = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            startup = time.perf_counter() - started
            took, out = timed([*base, "--dask", cluster.scheduler_address], args.runs)
            rows.append(("--dask (2-worker LocalCluster)", took, len(out.splitlines())))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    one = rows[0][1]
    cpus = len(os.sched_getaffinity(0))
    print(f"imgtool scan: {args.count} x {args.gib:g} GiB synthetic checkpoints, {cpus} CPUs, best of {args.runs}, "
          f"warm page cache; Dask cluster start-up {startup:.1f}s (not counted)\n")
    print("| variant | time (s) | vs --jobs 1 | hits |\n|---|---:|---:|---:|")
    for label, took, hits in rows:
        print(f"| {label} | {took:.2f} | {took / one:.2f} | {hits} |")
    ratio = rows[1][1] / one
    print(f"\ngoal --jobs 2 <= {GOAL} x --jobs 1: {'met' if ratio <= GOAL else 'NOT met'} ({ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
