"""Decode a fragmented pagemap (raw and --pretty) and run ``x rss``: a thin wrapper around bench/run.py.

    python bench/bench_pagemap.py [GIB ...]          (default: 1; 1 GiB = 262,144 one-page entries)

Same as ``python bench/run.py --only decode-raw,decode-pretty,x-rss --sizes GIB,... --out ''``: against
CRIU's crit (bench/get-crit.sh) and a plain protobuf loop, each step in a fresh interpreter.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

if __name__ == "__main__":
    sizes = ",".join(sys.argv[1:]) or "1"
    sys.exit(run.main(["--only", "decode-raw,decode-pretty,x-rss", "--sizes", sizes, "--out", ""]))
