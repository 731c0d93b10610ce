"""`crit decode --pretty -i IMG` and `crit decode -i IMG` of every image of a dump, in one process.

    crit-decode-all.py IMAGES_DIR CASE_DIR    (with CRIU's crit and pycriu importable: PYTHONPATH=src/lib:src/crit)

Writes CASE_DIR/crit-json/<image>.json and CASE_DIR/crit-json-raw/<image>.json through crit's own decode() (what
`crit decode` runs), and lists the images crit cannot decode (pages-*.img and the like) in crit-failed.txt.
"""
import contextlib
import os
import sys
from pathlib import Path

from crit.__main__ import decode

images, case = Path(sys.argv[1]), Path(sys.argv[2])
failed = []
for img in sorted(images.glob("*.img")):
    for folder, pretty in (("crit-json", True), ("crit-json-raw", False)):
        out = case / folder / (img.stem + ".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                decode({"in": str(img), "out": str(out), "pretty": pretty, "nopl": False})
        except (SystemExit, Exception):   # crit exits 1 on an unknown magic (raw data)
            for f in ("crit-json", "crit-json-raw"):
                (case / f / (img.stem + ".json")).unlink(missing_ok=True)
            failed.append(img.name)
            break
(case / "crit-failed.txt").write_text("".join(f"{name}\n" for name in failed))
