"""Archives read without unpacking what a command does not read: time and bytes written to disk.

    python bench/bench_archive.py [--dir WORK] [--gib 1] [--runs 3] [--before] [--out FILE]

A dump of ``--gib`` GiB (imgtool.testing.synth.generate: 4 tasks, a 64 MiB shared object, 1000 fds, a
needle) is generated under WORK (default: a new imgtool-bench-archive-* temp dir, deleted afterwards; an
existing WORK/dump, ckpt.tar and ckpt.tar.zst are reused), packed with ``tar`` and ``zstd -3``.  Then
``ps``, ``summary --json`` and ``mem search --string NEEDLE --json`` run on the directory, the .tar and the
.tar.zst, each in a fresh interpreter that reports its wall time (imports included) and its
``/proc/self/io`` ``write_bytes`` (bytes it caused to be written to storage, file-system metadata included:
the directory and inode blocks of a temp dir's files, empty ones too) when the command is done.
A row for the .tar.zst with ``IMGTOOL_CACHE`` set (WORK/cache; filled by one untimed run first) shows a
series of commands on one compressed archive.
Each figure is the best of ``--runs`` runs (bytes: of the same run), page cache warm.  ``--before`` adds
rows for the old path, which unpacked the whole archive (``archive.extract``) before any command.

Goals (the issue): ps and summary on either archive within 2x of the directory and under 10 MB written;
mem search on the .tar within 1.25x of the directory with nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEEDLE = "BENCH-NEEDLE-7f3a9c1e"

_CHILD = """
import json, sys, time
start = time.perf_counter()
if {before!r}:
    from imgtool.model import archive
    archive.open_archive = lambda path, **kw: archive.extract(path)     # the old path: unpack everything
from imgtool.cli.app import main
code = main({argv!r})
elapsed = time.perf_counter() - start
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
print(json.dumps({{"code": code, "seconds": elapsed, "write_bytes": int(io["write_bytes"])}}), file=sys.__stderr__)
"""


def run(argv: list[str], before: bool = False, cache: Path | None = None) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "IMGTOOL_CACHE")}
    if cache is not None:
        env["IMGTOOL_CACHE"] = str(cache)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "imgtool-bench-pycache")
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(argv=argv, before=before)], env=env, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    if report["code"] not in (0, 1):
        raise RuntimeError(f"{argv}: exit code {report['code']}")
    return report["seconds"], report["write_bytes"]


def best(argv: list[str], runs: int, before: bool = False, cache: Path | None = None) -> tuple[float, int]:
    if cache is not None:
        run(argv, cache=cache)      # fills the cache: the runs timed find it warm
    return min(run(argv, before, cache) for _ in range(runs))


def prepare(work: Path, gib: float) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from imgtool.testing.synth import generate

    dump, tar, zst = work / "dump", work / "ckpt.tar", work / "ckpt.tar.zst"
    if not (dump / "d0" / "inventory.img").is_file():
        print(f"generating a {gib} GiB dump in {dump}", file=sys.stderr)
        generate(dump, seed=2, tasks=4, gib=gib, shmem_mib=64, chain=1, fds=1000, needle=NEEDLE.encode())
    if not tar.is_file():
        subprocess.run(["tar", "-cf", str(tar), "-C", str(dump), "d0"], check=True)
    if not zst.is_file():
        subprocess.run(["zstd", "-q", "-3", "-T0", "-f", str(tar), "-o", str(zst)], check=True)
    subprocess.run(["cat", str(tar), str(zst), *map(str, (dump / "d0").glob("pages-*.img"))],
                   stdout=subprocess.DEVNULL, check=True)      # warm the page cache
    os.sync()
    return {"directory": dump / "d0", ".tar": tar, ".tar.zst": zst}


COMMANDS = {"ps": ["ps"], "summary --json": ["summary", "--json"],
            "mem search": ["mem", "search", "--string", NEEDLE, "--json"]}
GOALS = {"ps": (2.0, 10_000_000, ".tar .tar.zst"), "summary --json": (2.0, 10_000_000, ".tar .tar.zst"),
         "mem search": (1.25, 0, ".tar")}


def _amount(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", action="store_true", help="also time the old path (unpack everything)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="imgtool-bench-archive-"))
    try:
        inputs = prepare(work, args.gib)
        sizes = {name: sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
                 for name, path in inputs.items()}
        lines = [f"{args.gib:g} GiB dump: directory {sizes['directory'] / 1e6:.0f} MB, .tar "
                 f"{sizes['.tar'] / 1e6:.0f} MB, .tar.zst {sizes['.tar.zst'] / 1e6:.0f} MB; best of {args.runs}",
                 "", "| command | input | time (s) | × directory | written to disk | goal |",
                 "|---|---|---:|---:|---:|---|"]
        for label, cmd in COMMANDS.items():
            base = None
            ratio_goal, bytes_goal, goal_inputs = GOALS[label]
            variants = [(name, path, False) for name, path in inputs.items()]
            variants.append((".tar.zst, IMGTOOL_CACHE warm", inputs[".tar.zst"], False))
            if args.before:
                variants += [(f"{name} (before: unpack all)", inputs[name], True) for name in (".tar", ".tar.zst")]
            for name, path, before in variants:
                cache = work / "cache" if "CACHE" in name else None
                at = 2 if cmd[0] == "mem" else 1
                argv = [*cmd[:at], str(path), *cmd[at:]]
                seconds, written = best(argv, args.runs, before, cache)
                base = seconds if base is None else base
                ratio = seconds / base
                goal = ""
                if name in goal_inputs.split():
                    ok = ratio <= ratio_goal and written <= bytes_goal
                    goal = f"{'met' if ok else 'MISSED'} (≤ {ratio_goal}×, ≤ {bytes_goal / 1e6:g} MB)"
                row = f"| {label} | {name} | {seconds:.2f} | {ratio:.2f} | {_amount(written)} | {goal} |"
                lines.append(row)
                print(row, file=sys.stderr)
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            command = " ".join(["python", "bench/bench_archive.py", *sys.argv[1:]])
            args.out.write_text(f"# Archives read in place\n\nGenerated by `{command}` on "
                                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n{text}")
    finally:
        shutil.rmtree(work / "cache", ignore_errors=True)
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
