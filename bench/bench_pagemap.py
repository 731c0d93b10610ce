"""Decode a fragmented pagemap (one-page runs, >= 250,000 entries) to JSON.

    python bench/bench_pagemap.py [ENTRIES]

The pagemap is written with imgtool's own encoder into a temp dir.  Each step
runs in a fresh interpreter (imports included) writing JSON to /dev/null:
imgtool's decode, raw and --pretty, against a plain Python loop that does what
crit does per entry (protobuf parse, dict of ListFields, json.dump) in the
same run.  crit itself needed 6.5-8.4 s and 141 MB raw, 9 s and 236 MB pretty
for such a pagemap on this kind of machine.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import run, table  # noqa: E402

from imgtool.image import image_bytes  # noqa: E402
from imgtool.pb import message_class  # noqa: E402

BASELINE = """
import json, struct
from imgtool.pb import message_class
head, entry = message_class("pagemap_head"), message_class("pagemap_entry")
data = open(sys.argv[1], "rb").read()
pos, entries = 8, []
while pos < len(data):
    (size,) = struct.unpack_from("<I", data, pos)
    msg = (entry if entries else head).FromString(data[pos + 4:pos + 4 + size])
    entries.append({f.name: v for f, v in msg.ListFields()})
    pos += 4 + size
with open("/dev/null", "w") as out:
    json.dump({"magic": "PAGEMAP", "entries": entries}, out, indent=4 if sys.argv[2] == "pretty" else None)
"""

IMGTOOL = """
from imgtool.cli import main
main(["decode", "-i", sys.argv[1], "-o", "/dev/null"] + (["--pretty"] if sys.argv[2] == "pretty" else []))
"""


def make_pagemap(path: Path, entries: int) -> None:
    head, entry = message_class("pagemap_head"), message_class("pagemap_entry")
    frames = [head(pages_id=1)]
    frames += [entry(vaddr=0x7F0000000000 + 2 * i * 4096, compat_nr_pages=0, flags=4, nr_pages=1)
               for i in range(entries)]
    path.write_bytes(image_bytes("PAGEMAP", frames))


def main() -> None:
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 262_155
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pagemap-1.img"
        make_pagemap(path, entries)
        size = f"{entries:,} entries"
        rows = []
        for mode in ("raw", "pretty"):
            ours = run(IMGTOOL, ["bench", str(path), mode])
            base = run(BASELINE, ["bench", str(path), mode])
            rows.append((f"decode pagemap ({mode})", size, ours, "plain loop", base))
        print(table(rows))


if __name__ == "__main__":
    main()
