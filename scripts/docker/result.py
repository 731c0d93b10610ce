#!/usr/bin/env python3
"""Write (or update) a scenario's result.json for scripts/docker-env.sh.

    result.py FILE key=value ...

A value "true"/"false" is a bool, "null" is None, an integer is an int, "@PATH" is the text of PATH (at most
its last 4000 characters; None when PATH is missing or empty), anything else is a string. Keys already in FILE
are kept unless given again, so a scenario can record its steps as they happen.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def value(text: str) -> object:
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            return None
        data = path.read_text(errors="replace").strip()
        return data[-4000:] or None
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    data = json.loads(out.read_text()) if out.is_file() else {}
    for arg in argv[2:]:
        key, sep, text = arg.partition("=")
        if not sep:
            print(f"result.py: not key=value: {arg!r}", file=sys.stderr)
            return 2
        data[key] = value(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
