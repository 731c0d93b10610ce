"""Every benchmark, on generated dumps of 1, 2, 4 and 8 GiB, each figure against a baseline of the same run.

    python bench/run.py [--sizes 1,2,4,8] [--only op,...] [--out docs/benchmarks.md]

Per size, two dumps are generated with imgtool.synth.generate into a temp dir (prefix imgtool-bench-,
deleted afterwards; sizes that do not fit on the disk are skipped):

* fragmented: one task whose pagemap has one-page runs (262,144 entries per GiB, plus its stack page),
  1000 fds; its pages files are sparse (only pagemaps are read);
* realistic: 4 tasks, a 64 MiB shared object, 1000 fds and a 2-level chain (the child rewrites 10% of the
  pages in runs of 1-8 pages, the rest PE_PARENT), pseudo-random page bytes, a needle in the newest dump.

Every step runs in a fresh interpreter (bench/measure.py: wall time with imports, peak RSS = VmHWM); a
step and its baselines take turns, and each takes its best of 9 runs if it runs under a second, of 3 under
ten seconds.  Baselines: CRIU's crit (built by bench/get-crit.sh; skipped with a message without it) and
plain loops that do the same work with nothing but protobuf, bytes.find, file reads or hashlib.  Progress
goes to stderr; the table to stdout and ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imgtool.testing.synth import generate

from measure import ROOT, Row, Step, best, race, table

NEEDLE = "BENCH-NEEDLE-7f3a9c1e"
CRIT_CACHE = Path(os.environ.get("IMGTOOL_CRIU_CACHE", Path.home() / ".cache" / "imgtool" / "criu"))
CRIT = CRIT_CACHE / "crit-venv" / "bin" / "crit"
OPS = ("decode-raw", "decode-pretty", "x-rss", "summary", "search", "read", "diff")
FRAGMENTED_OPS = {"decode-raw", "decode-pretty", "x-rss", "summary"}
DECODE_RAW, DECODE_PRETTY, X_RSS = "decode pagemap (raw)", "decode pagemap (pretty)", "x rss"
SUMMARY, SEARCH, READ, DIFF = ("open + summary --json", "mem search (2-dump chain)", "full read of 1 task (of 4)",
                               "diff --only memory (parent, child)")
READ_IMPORTED = "full read of 1 task, imgtool imported"
CRIT_NAME = "crit 4.2"
# The goals: (baseline, highest time ratio, highest peak RSS in MB or None)
GOALS = {DECODE_RAW: (CRIT_NAME, 0.1, 60), DECODE_PRETTY: (CRIT_NAME, 0.1, 60), X_RSS: (CRIT_NAME, 0.1, 60),
         SEARCH: (None, 1.25, None), READ: (None, 1.25, None), READ_IMPORTED: (None, 1.25, None),
         DIFF: (None, 1.5, None)}

# Plain loops import only the generated protobuf modules they need (not imgtool).
PB = f"""
import types
_pkg = types.ModuleType("pb"); _pkg.__path__ = [{str(ROOT / "imgtool" / "format" / "pb")!r}]; sys.modules["pb"] = _pkg
"""

FRAMES = """
import struct
def frames(path):
    data = open(path, "rb").read()
    pos = 8
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        yield data[pos + 4:pos + 4 + size]
        pos += 4 + size
"""

IMGTOOL_CLI = """
from imgtool.cli.app import main
assert main(sys.argv[1:]) in (0, 1)
"""

CRIT_CLI = """
from crit.__main__ import main
main()
"""

PLAIN_DECODE = PB + FRAMES + """
import json
from pb.pagemap_pb2 import pagemap_entry, pagemap_head
entries = []
for payload in frames(sys.argv[1]):
    msg = (pagemap_entry if entries else pagemap_head).FromString(payload)
    entries.append({f.name: v for f, v in msg.ListFields()})
with open("/dev/null", "w") as out:
    json.dump({"magic": "PAGEMAP", "entries": entries}, out, indent=4 if sys.argv[2] == "pretty" else None)
"""

PLAIN_RSS = PB + FRAMES + """
import os
from pb.mm_pb2 import mm_entry
from pb.pagemap_pb2 import pagemap_entry
from pb.pstree_pb2 import pstree_entry
d = sys.argv[1]
for item in frames(os.path.join(d, "pstree.img")):
    pid = pstree_entry.FromString(item).pid
    vmas = mm_entry.FromString(next(frames(os.path.join(d, f"mm-{pid}.img")))).vmas
    print(pid)
    entries = frames(os.path.join(d, f"pagemap-{pid}.img"))
    next(entries)
    vmi, pvmi = 0, -1
    for item in entries:
        pm = pagemap_entry.FromString(item)
        pstr = "\\t%lx / %-8d" % (pm.vaddr, pm.nr_pages)
        while vmi < len(vmas) and vmas[vmi].end <= pm.vaddr:
            vmi += 1
        pme, vstr = pm.vaddr + (pm.nr_pages << 12), ""
        while vmi < len(vmas) and vmas[vmi].start < pme:
            if vmi == pvmi:
                vstr += " ~"
            else:
                vstr += " %08lx / %-8d" % (vmas[vmi].start, (vmas[vmi].end - vmas[vmi].start) >> 12)
                pvmi = vmi
            vstr += "\\n\\t%23s" % ""
            vmi += 1
        vmi -= 1
        print("%-24s%s" % (pstr, vstr))
"""

PLAIN_SUMMARY = PB + FRAMES + """
import collections, os
from pb.core_pb2 import core_entry
from pb.mm_pb2 import mm_entry
from pb.pagemap_pb2 import pagemap_entry
from pb.pstree_pb2 import pstree_entry
d, pages = sys.argv[1], collections.Counter()
for item in frames(os.path.join(d, "pstree.img")):
    pid = pstree_entry.FromString(item).pid
    core_entry.FromString(next(frames(os.path.join(d, f"core-{pid}.img"))))
    mm_entry.FromString(next(frames(os.path.join(d, f"mm-{pid}.img"))))
    entries = frames(os.path.join(d, f"pagemap-{pid}.img"))
    next(entries)
    for item in entries:
        pm = pagemap_entry.FromString(item)
        pages[pm.flags] += pm.nr_pages
print(dict(pages))
"""

PLAIN_FIND = """
needle, found = sys.argv[1].encode(), 0
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        tail = b""
        while chunk := f.read(8 << 20):
            buf = tail + chunk
            at = buf.find(needle)
            while at >= 0:
                found += 1
                at = buf.find(needle, at + 1)
            tail = buf[-(len(needle) - 1):]
assert found == 1, found
"""

IMGTOOL_READ = """
import imgtool
from imgtool.memory.extract import extract
{clock}
with imgtool.open(sys.argv[1]) as dump, open("/dev/null", "wb") as out:
    space = dump.task(int(sys.argv[2])).memory
    total = sum(extract(space, vma.start, vma.end, out) for vma in space.vmas)
assert total > 0
"""

IMPORTS_IMGTOOL = """
import imgtool, imgtool.memory.search
from imgtool.format.pb import message_class
for name in ("pstree_entry", "mm_entry", "pagemap_entry", "pagemap_columns"):
    message_class(name)
"""

IMPORTS_PROTOBUF = PB + """
import pb.pstree_pb2, pb.mm_pb2, pb.pagemap_pb2, pb.imgtool_columns_pb2
"""

PLAIN_READ = """
with open("/dev/null", "wb") as out:
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                out.write(chunk)
"""

PLAIN_HASH = """
import hashlib
for path in sys.argv[1:]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    digest.hexdigest()
"""


def log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


@dataclass
class Dumps:
    """The dumps of one size."""

    label: str
    fragmented: Path | None
    chain: list[Path]


def imgtool(*args: str) -> Step:
    return Step(IMGTOOL_CLI, ["imgtool", *args])


def crit(*args: str) -> Step:
    return Step(CRIT_CLI, ["crit", *args], python=str(CRIT.parent / "python"))


def _with_baselines(op: str, size: str, ours: Step, crit_args: list[str] | None,
                    plain: tuple[str, list[str]]) -> list[Row]:
    baselines = {"plain protobuf loop": Step(plain[0], ["bench", *plain[1]])}
    if crit_args is not None and CRIT.exists():
        baselines = {CRIT_NAME: crit(*crit_args), **baselines}
    result, *bases = race(ours, *baselines.values())
    return [Row(op, size, result, name, base) for name, base in zip(baselines, bases, strict=True)]


def step_decode(d: Dumps, pretty: bool) -> list[Row]:
    pagemap = str(d.fragmented / "pagemap-1000.img")
    flag = ["--pretty"] if pretty else []
    ours = imgtool("decode", "-i", pagemap, "-o", "/dev/null", *flag)
    op = DECODE_PRETTY if pretty else DECODE_RAW
    return _with_baselines(op, d.label, ours, ["decode", "-i", pagemap, "-o", "/dev/null", *flag],
                           (PLAIN_DECODE, [pagemap, "pretty" if pretty else "raw"]))


def step_rss(d: Dumps) -> list[Row]:
    path = str(d.fragmented)
    return _with_baselines(X_RSS, d.label, imgtool("x", path, "rss"), ["x", path, "rss"], (PLAIN_RSS, [path]))


def step_summary(d: Dumps) -> list[Row]:
    path = str(d.fragmented)
    ours, base = race(imgtool("summary", path, "--json"), Step(PLAIN_SUMMARY, ["b", path]))
    return [Row(SUMMARY, d.label, ours, "plain protobuf decode", base)]


def _pages_files(dumps: list[Path], pages_ids: tuple[int, ...] | None = None) -> list[str]:
    return [str(p) for d in dumps for p in sorted(d.glob("pages-*.img"))
            if pages_ids is None or int(p.stem.split("-")[1]) in pages_ids]


def step_search(d: Dumps) -> list[Row]:
    ours, base = race(imgtool("mem", "search", str(d.chain[-1]), "--string", NEEDLE, "--json"),
                      Step(PLAIN_FIND, ["bench", NEEDLE, *_pages_files(d.chain)]))
    return [Row(SEARCH, d.label, ours, "chunked bytes.find", base)]


def step_read(d: Dumps) -> list[Row]:
    """Twice: timed from the imports on, and (a script that has imported imgtool) from after them."""
    argv = ["bench", str(d.chain[-1]), "1000"]
    cold, warm, base = race(Step(IMGTOOL_READ.format(clock=""), argv),
                            Step(IMGTOOL_READ.format(clock="start = time.perf_counter()"), argv),
                            Step(PLAIN_READ, ["bench", *_pages_files(d.chain, (1, 2))]))   # shared object + task
    return [Row(READ, d.label, cold, "read its pages files", base),
            Row(READ_IMPORTED, d.label, warm, "read its pages files", base)]


def step_diff(d: Dumps) -> list[Row]:
    ours, base = race(imgtool("diff", str(d.chain[0]), str(d.chain[1]), "--only", "memory", "--json"),
                      Step(PLAIN_HASH, ["bench", *_pages_files(d.chain)]))
    return [Row(DIFF, d.label, ours, "sha256 of both dumps", base)]


STEPS: dict[str, Callable[[Dumps], list[Row]]] = {
    "decode-raw": lambda d: step_decode(d, False), "decode-pretty": lambda d: step_decode(d, True),
    "x-rss": step_rss, "summary": step_summary, "search": step_search, "read": step_read, "diff": step_diff,
}


def size_label(gib: float) -> str:
    return f"{gib:g} GiB" if gib >= 1 else f"{round(gib * 1024)} MiB"


def needed_bytes(gib: float, ops: list[str]) -> int:
    """Disk space for the dumps of one size (sparse pages files take none), with a margin."""
    real = gib * 1.15 + 0.1 if set(ops) - FRAGMENTED_OPS else 0
    return int((real + 0.02 * gib + 0.5) * (1 << 30))


def make_dumps(tmp: Path, gib: float, ops: list[str]) -> Dumps:
    fragmented, chain = None, []
    if FRAGMENTED_OPS & set(ops):
        log(f"{size_label(gib)}: generating the fragmented dump")
        fragmented = generate(tmp / "fragmented", seed=1, gib=gib, fragmented=True, fds=1000, sparse=True)[0]
    if set(ops) - FRAGMENTED_OPS:
        log(f"{size_label(gib)}: generating the realistic 2-dump chain")
        chain = generate(tmp / "chain", seed=2, tasks=4, gib=gib, shmem_mib=64, chain=2, fds=1000,
                         needle=NEEDLE.encode())
        log(f"{size_label(gib)}: warming the page cache")
        subprocess.run(["cat", *_pages_files(chain)], stdout=subprocess.DEVNULL, check=True)
    log(f"{size_label(gib)}: flushing the new files to disk (no writeback during the timings)")
    os.sync()
    return Dumps(size_label(gib), fragmented, chain)


def run_size(gib: float, ops: list[str], tmp_root: str | None) -> list[Row]:
    free = shutil.disk_usage(tmp_root or tempfile.gettempdir()).free
    if needed_bytes(gib, ops) > free:
        log(f"{size_label(gib)}: skipped, needs {needed_bytes(gib, ops) >> 20} MiB of disk, {free >> 20} MiB free")
        return []
    rows = []
    with tempfile.TemporaryDirectory(prefix="imgtool-bench-", dir=tmp_root) as tmp:
        dumps = make_dumps(Path(tmp), gib, ops)
        for op in ops:
            log(f"{dumps.label}: {op}")
            rows += STEPS[op](dumps)
    return rows


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor() or "unknown CPU")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {mem / (1 << 20):.1f} GiB RAM, {cpu}"


def goal_lines(rows: list[Row]) -> list[str]:
    """Per operation, over every size: the time ratio against the goal's baseline and the peak RSS range."""
    lines = []
    for op in dict.fromkeys(r.op for r in rows):
        mine = [r for r in rows if r.op == op]
        rss = [r.ours.rss_mib for r in mine]
        text = f"- {op}: imgtool peak RSS {min(rss):.0f}-{max(rss):.0f} MiB from {mine[0].size} to {mine[-1].size}"
        base, limit, rss_mb = GOALS.get(op, (None, None, None))
        ratios = [r.ours.seconds / r.base.seconds for r in mine if base is None or r.baseline == base]
        if limit is not None and ratios:
            met = "met" if max(ratios) <= limit else "MISSED"
            text += f"; time ratio {min(ratios):.3f}-{max(ratios):.3f} vs {base or mine[0].baseline} " \
                    f"(goal <= {limit}: {met})"
        if rss_mb is not None:
            text += f"; RSS goal < {rss_mb} MB: {'met' if max(rss) * 1.048576 < rss_mb else 'MISSED'}"
        lines.append(text)
    return lines


def fixed_costs() -> tuple[float, float]:
    """Seconds to import imgtool and build the classes a memory read uses, and to import protobuf's generated
    modules for them alone."""
    return best(IMPORTS_IMGTOOL).seconds, best(IMPORTS_PROTOBUF).seconds


def report(rows: list[Row], argv: list[str], crit_note: str, imports: tuple[float, float]) -> str:
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""# Benchmarks

Generated by `python bench/run.py {' '.join(argv)}` on {when}.

- Machine: {machine()}; Python {platform.python_version()}, {platform.system()} {platform.release()}.
- Baseline crit: {crit_note}.
- Every figure is a ratio against its baseline, measured in the same run on the same dump: **time ratio
  = imgtool time / baseline time and RSS ratio = imgtool peak RSS / baseline peak RSS, so below 1 means
  imgtool is faster (smaller)**.  Times are wall clock in a fresh interpreter, imports included (but for
  the "imgtool imported" rows); peak RSS is the process's VmHWM.  A step and its baselines take turns; each
  is its best of 9 runs if it runs under a second, of 3 under ten seconds.  The machine is shared: expect noise.

Dumps (imgtool.synth.generate, seeded): *fragmented* is one task whose pagemap has one-page runs (262,144
entries per GiB; sparse pages files); the other operations use a *realistic* 2-dump chain of 4 tasks with a
64 MiB shared object and 1000 fds, whose child rewrites 10% of the pages in runs of 1-8 pages.  Search
looks for a needle in the child; full read extracts every VMA of one task (1/4 of the memory plus the shared
object), timed once from the imports on and once from after them (as in a script that has imported imgtool:
opening the dump and walking the task's pagemaps still count); diff compares the parent with the child.

Goals: pagemap decode and x rss at least 10x faster than crit (time ratio <= 0.1) with peak RSS < 60 MB;
search and full read within 1.25x of their raw baseline; diff within 1.5x of hashing; peak RSS that does
not grow with the dump size.

{table(rows)}

Against the goals (computed from the table above):

{chr(10).join(goal_lines(rows))}

Reading the table: a step's time includes importing imgtool and building the protobuf classes it uses
({imports[0]:.3f} s in this run, best of 9; importing protobuf's generated modules for them, as the plain loops
do, takes {imports[1]:.3f} s: imgtool builds the classes through protobuf's C backend, without its Python
descriptor pool), a fixed cost that weighs most on the small dumps; the "imgtool imported" row leaves it
out.  Search, full read and diff walk each task's pagemaps as a stream (a batch of extents and the parent's
extents around it at a time, never an index of the task), so their peak RSS does not depend on the dump's
size or fragmentation; decode, x rss and summary stream too.

Reproduce: `bench/get-crit.sh` (optional: builds CRIU's crit into a private venv), then
`python bench/run.py --sizes 1,2,4,8` (14-17 minutes on 2 cores; needs ~12 GiB of free disk in $TMPDIR
for the 8 GiB dumps).
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8", help="dump sizes in GiB, comma-separated (default 1,2,4,8)")
    parser.add_argument("--only", help=f"operations, comma-separated: {','.join(OPS)}")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="Markdown report ('' for none)")
    parser.add_argument("--tmp", default=os.environ.get("BENCH_TMP"), help="where the dumps go (default $TMPDIR)")
    args = parser.parse_args(argv)
    args.ops = [op.strip() for op in args.only.split(",")] if args.only else list(OPS)
    unknown = sorted(set(args.ops) - set(OPS))
    if unknown:
        parser.error(f"unknown operation(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")
    args.gibs = [float(s) for s in args.sizes.split(",")]
    return args


def crit_status() -> str:
    if CRIT.exists():
        version = subprocess.run([str(CRIT), "--version"], capture_output=True, text=True, check=False)
        return f"CRIU's crit {(version.stdout or version.stderr).strip()} ({CRIT})"
    log(f"crit is not installed ({CRIT} is missing): crit baselines skipped; run bench/get-crit.sh to add them")
    return "not installed (run bench/get-crit.sh), crit rows skipped"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    crit_note = crit_status()
    log("warming up on a 4 MiB dump (bytecode caches of every interpreter, page cache)")
    run_size(1 / 256, args.ops, args.tmp)
    rows: list[Row] = []
    for gib in args.gibs:
        rows += run_size(gib, args.ops, args.tmp)
    print(table(rows))
    if args.out:
        imports = fixed_costs()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report(rows, argv, crit_note, imports))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
