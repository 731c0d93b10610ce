"""CRIU's zdtm suite as the peer suite: imgtool against every dump scripts/zdtm.sh kept (see tests/zdtm.py).

For each zdtm test and flavour whose dump succeeded:

* decode: ``imgtool decode -i IMG`` and ``--pretty`` equal crit's JSON (CRIU's own crit, built from the same
  source), JSON-parsed, for every image crit decodes. Differences are collected and reported, all of them;
  KNOWN_DECODE_DIFFERENCES lists the deliberate ones (README, "Differences from crit").
* commands: every reading command (ps, files, maps, summary, x ps|fds|mems|rss|sk, each with --json where it has
  it, diff DIR DIR, check --offline) exits 0 or 1, never 2 or worse, never with a Python traceback.
* check: ``imgtool check DIR --criu CRIU -- <restore options>``, run in the very world the restore truth was taken
  in (scripts/zdtm/in-env.sh: fresh namespaces, the test's side files back), predicts what the real restore did
  (truth.json restore_ok). Needs root. No xfails: a disagreement fails with imgtool's findings and the restore's.

Set IMGTOOL_ZDTM_REPORT=FILE to get every measurement as JSON lines (the peer-suite table).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import zdtm

CASES = zdtm.cases()
IDS = [c.id for c in CASES]

# (image name prefix, JSON path prefix) of differences from crit that are deliberate; each needs a reason here.
KNOWN_DECODE_DIFFERENCES: list[tuple[str, str]] = [
    # crit 4.2 reads `size` bytes of inline data after every ipcns-shm entry; CRIU has kept the contents in
    # pagemap-shmem-<shmid>.img since 2017 (in_pagemaps), so imgtool shows no "extra" (criu/ipc_ns.c).
    ("ipcns-shm", "/entries/0/extra"),
    # crit 4.2 swaps the task_state labels 3 and 6 (fixed upstream in criu PR #2864); imgtool follows
    # compel/include/uapi/task-state.h: 3 = Stopped, 6 = Zombie. Only the pretty form differs.
    ("core-", "/entries/0/tc/task_state"),
]


def _report(kind: str, case: zdtm.Case, **data: object) -> None:
    path = os.environ.get("IMGTOOL_ZDTM_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"kind": kind, "case": case.id, **data}, default=str) + "\n")


def imgtool(*args: str | os.PathLike[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgtool", *map(os.fspath, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# An uncaught Python exception, even without its traceback (imgtool prints only the last line unless --traceback).
PY_EXCEPTION = re.compile(r"^(Traceback|[A-Za-z_.]*(Error|Exception)\b: )", re.M)


def _crashed(done: subprocess.CompletedProcess[str]) -> bool:
    return bool(PY_EXCEPTION.search(done.stderr))


def _differences(a: object, b: object, path: str = "") -> list[str]:
    """Where two JSON values differ (paths, at most a few per subtree)."""
    if type(a) is not type(b):
        return [f"{path or '/'}: imgtool {json.dumps(a)[:80]} vs crit {json.dumps(b)[:80]}"]
    if isinstance(a, dict):
        out = [f"{path}/{k}: only in {'imgtool' if k in a else 'crit'}" for k in sorted(set(a) ^ set(b))]
        for k in a.keys() & b.keys():
            out += _differences(a[k], b[k], f"{path}/{k}")
        return out[:10]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items (imgtool) vs {len(b)} (crit)"]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += _differences(x, y, f"{path}/{i}")
            if len(out) >= 10:
                break
        return out
    return [] if a == b else [f"{path}: imgtool {json.dumps(a)[:80]} vs crit {json.dumps(b)[:80]}"]


def _known(image: Path, diff: str) -> bool:
    return any(image.name.startswith(img) and diff.startswith(where) for img, where in KNOWN_DECODE_DIFFERENCES)


def test_zdtm_output_present() -> None:
    """Fails (with IMGTOOL_REQUIRE_ZDTM=1) or skips when scripts/zdtm.sh has not been run; else sanity."""
    out = zdtm.require()
    all_cases = zdtm.cases(dumped_only=False)
    assert all_cases, f"{out}/index.json lists no runs"
    assert CASES, f"no dump in {out} succeeded: see the truth.json files"


def _decode_one(image: Path, golden: Path, pretty: bool) -> list[str]:
    done = imgtool("decode", "-i", image, *(["--pretty"] if pretty else []))
    mode = "pretty" if pretty else "raw"
    if done.returncode != 0 or _crashed(done):
        return [f"{image.name} ({mode}): exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"]
    mine, crits = json.loads(done.stdout), json.loads(golden.read_text())
    return [f"{image.name} ({mode}) {d}" for d in _differences(mine, crits) if not _known(image, d)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_decode_matches_crit(case: zdtm.Case) -> None:
    golden = case.golden()
    assert golden, f"crit decoded no image of {case.id}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = [d for diffs in pool.map(lambda g: _decode_one(*g), golden) for d in diffs]
    _report("decode", case, compared=len(golden), differences=found, crit_failed=case.crit_failed())
    assert not found, f"{len(found)} difference(s) from crit:\n" + "\n".join(found)


def _commands(images: Path) -> list[list[str | os.PathLike[str]]]:
    cmds: list[list[str | os.PathLike[str]]] = []
    for cmd in ("ps", "files", "maps", "summary"):
        cmds += [[cmd, images], [cmd, "--json", images]]
    cmds += [["x", images, sub] for sub in ("ps", "fds", "mems", "rss", "sk")]
    cmds += [["diff", images, images], ["diff", "--json", images, images], ["check", "--offline", images],
             ["check", "--offline", "--json", images]]
    return cmds


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reading_commands_are_clean(case: zdtm.Case) -> None:
    cmds = _commands(case.images)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: imgtool(*c), cmds))
    failures = []
    for cmd, done in zip(cmds, results, strict=True):
        words = " ".join("DIR" if Path(os.fspath(w)) == case.images else os.fspath(w) for w in cmd)
        last = (done.stderr.strip().splitlines() or [""])[-1]
        if _crashed(done) or done.returncode not in (0, 1):
            failures.append(f"imgtool {words}: exit {done.returncode}: {last}")
        elif cmd[0] == "diff" and done.returncode != 0:
            failures.append(f"imgtool {words}: a dump differs from itself (exit 1): {done.stdout[-300:]}")
        elif "--json" in cmd:
            try:
                json.loads(done.stdout)
            except json.JSONDecodeError as exc:
                failures.append(f"imgtool {words}: --json output is not JSON ({exc})")
    _report("commands", case, run=len(cmds), failures=failures)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_check_agrees_with_real_restore(case: zdtm.Case) -> None:
    if os.geteuid() != 0:
        pytest.skip("the check against the real restore runs in fresh namespaces: needs root")
    idx = zdtm.index()
    criu = Path(idx.get("criu", ""))
    if not criu.is_file() or not Path(idx.get("zdtm_src", "")).is_dir():
        pytest.skip(f"the zdtm tree and criu of {zdtm.out_dir()} are gone: rerun scripts/zdtm.sh")
    truth = case.truth
    options = truth["restore_options"]
    # zdtm removes the test's pidfile before restoring with --pidfile (so does the truth restore): do the same.
    pidfile = options[options.index("--pidfile") + 1] if "--pidfile" in options else ""
    cmd = [os.fspath(zdtm.IN_ENV), os.fspath(case.dir), "--", "sh", "-c", 'rm -f "$1"; shift; exec "$@"', "sh",
           pidfile, sys.executable, "-m", "imgtool", "check", "--json", "--criu", os.fspath(criu),
           os.fspath(case.images), "--", *options]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert not _crashed(done) and done.returncode in (0, 1), \
        f"imgtool check exit {done.returncode}: {done.stderr[-2000:]}"
    verdict = json.loads(done.stdout)
    errors = [f"{f.get('code')}: {f.get('message')}" for f in verdict["findings"] if f.get("severity") == "error"]
    predicted_ok = done.returncode == 0
    log_tail = truth["restore_log_tail"].splitlines()
    error_lines = [line for line in log_tail if "Error" in line] or log_tail[-1:]
    _report("check", case, predicted_ok=predicted_ok, restore_ok=truth["restore_ok"], errors=errors,
            restore_result=truth.get("restore_result"), restore_log=error_lines[-2:])
    assert predicted_ok == truth["restore_ok"], (
        f"imgtool check predicts {'success' if predicted_ok else 'failure'}, the real restore "
        f"{'succeeded' if truth['restore_ok'] else 'failed'} ({truth.get('restore_result')}).\n"
        f"imgtool's errors: {errors}\nrestore log: {error_lines[-2:]}")
