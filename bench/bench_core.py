"""``imgtool core`` of a 1 GiB task against ``cp`` of its pages file, with peak RSS.

    python bench/bench_core.py [MIB ...]          (default: 1024)

The task is generated (``imgtool.testing.synth.generate``: one process, dense pagemap) and given x86_64
registers; the page cache is warmed, then each step runs in a fresh interpreter (bench/measure.py: fastest of
several runs, turns taken), after removing its previous output and a sync (so that no run pays for the
writeback of another).  Goal: the export within 1.5x of cp's time, with a peak RSS flat in the size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import imgtool
from imgtool.format.image import image_bytes
from imgtool.testing.synth import generate

from measure import Step, race

GOAL = 1.5
SETTLE = """
import os
if os.path.exists(sys.argv[2]):
    os.unlink(sys.argv[2])
os.sync()      # the previous run's writeback does not land in this run's time
start = time.perf_counter()
"""
CORE = SETTLE + """
from imgtool.cli.app import main
main(["core", sys.argv[1], "--pid", "1000", "-o", sys.argv[2]])
"""
CP = SETTLE + """
import subprocess
subprocess.run(["cp", sys.argv[1], sys.argv[2]], check=True)
"""


def give_registers(images: Path, pid: int = 1000) -> None:
    """Synthetic dumps carry no registers: add an x86_64 thread_info (zeros) to core-PID.img."""
    with imgtool.open(images) as dump:
        core = dump.task(pid).core
    gp = core.thread_info.gpregs
    for field in gp.DESCRIPTOR.fields:
        if field.name != "mode":
            setattr(gp, field.name, 0)
    fp = core.thread_info.fpregs
    fp.cwd = fp.swd = fp.twd = fp.fop = fp.rip = fp.rdp = fp.mxcsr = fp.mxcsr_mask = 0
    core.thread_info.clear_tid_addr = 0
    (images / f"core-{pid}.img").write_bytes(image_bytes("CORE", [core]))


def bench(mib: int, tmp: Path) -> str:
    images = generate(tmp / "dump", seed=3, tasks=1, gib=mib / 1024)[0]
    give_registers(images)
    pages = str(max(images.glob("pages-*.img"), key=lambda p: p.stat().st_size))
    subprocess.run(["cat", pages], stdout=subprocess.DEVNULL, check=True)
    os.sync()
    ours, base = race(Step(CORE, ["bench", str(images), str(tmp / "core")]),
                      Step(CP, ["bench", pages, str(tmp / "copy")]))
    ratio = ours.seconds / base.seconds
    verdict = "ok" if ratio <= GOAL else "MISSED"
    return (f"| core of a {mib} MiB task | {ours.seconds:.2f} s | {ours.rss_mib:.0f} MiB | cp of its pages file "
            f"{base.seconds:.2f} s | {ratio:.2f}x (goal {GOAL}x: {verdict}) |")


def main(argv: list[str]) -> int:
    print("| operation | imgtool | peak RSS | baseline | ratio |\n|---|---|---|---|---|")
    for mib in [int(a) for a in argv] or [1024]:
        with tempfile.TemporaryDirectory(prefix="imgtool-bench-core-") as tmp:
            if shutil.disk_usage(tmp).free < 3.3 * (mib << 20):
                print(f"| core of a {mib} MiB task | skipped: not enough disk |")
                continue
            print(bench(mib, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
