"""Search a generated 2-dump chain for a needle against a chunked bytes.find: a thin wrapper around bench/run.py.

    python bench/bench_search.py [MIB ...]          (default: 256 1024)

Same as ``python bench/run.py --only search --sizes ... --out ''`` with the sizes in MiB.
Goal: imgtool within 1.25x of the baseline time, with a flat peak RSS.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

if __name__ == "__main__":
    sizes = ",".join(f"{int(mib) / 1024:g}" for mib in sys.argv[1:] or ["256", "1024"])
    sys.exit(run.main(["--only", "search", "--sizes", sizes, "--out", ""]))
