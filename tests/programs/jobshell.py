"""A stand-in for a user's shell: started as a session leader, it runs what it is told as jobs in its own session
and process group (like a shell without job control), so that a test can dump a "shell job" whatever session
pytest itself is in. See realcriu.Shell.

Protocol: one JSON request per stdin line, one JSON reply per stdout line.
  {"op": "spawn", "argv": [...], "output": path, "cwd": path|null}  -> {"pid": N}
  {"op": "run", "argv": [...], "cwd": path|null, "timeout": s}      -> {"returncode", "stdout", "stderr", "timed_out"}
  {"op": "reap", "pid": N, "kill": bool}                           -> {"returncode": N|null, "still_running"?}
End of input kills and reaps what is still running, then exits.
"""

import json
import subprocess
import sys

jobs: dict[int, subprocess.Popen[bytes]] = {}


def spawn(argv: list[str], output: str, cwd: str | None) -> dict[str, object]:
    with open(output, "ab") as out:
        job = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd)
    jobs[job.pid] = job
    return {"pid": job.pid}


def run(argv: list[str], cwd: str | None, timeout: float) -> dict[str, object]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired as exc:
        return {"returncode": -9, "stdout": _text(exc.stdout), "stderr": _text(exc.stderr), "timed_out": True}
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "timed_out": False}


def reap(pid: int, kill: bool) -> dict[str, object]:
    job = jobs.pop(pid, None)
    if job is None:
        return {"returncode": None}
    if kill and job.poll() is None:
        job.kill()
    try:
        return {"returncode": job.wait(timeout=10)}
    except subprocess.TimeoutExpired:
        job.kill()
        return {"returncode": job.wait(), "still_running": True}


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        reply = {"spawn": spawn, "run": run, "reap": reap}[op](**request)
        print(json.dumps(reply), flush=True)
    for pid in list(jobs):
        reap(pid, kill=True)


if __name__ == "__main__":
    main()
