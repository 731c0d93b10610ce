"""Write docs/imgtool.1, imgtool's manual page, from the parser (the text of ``imgtool man``).

    python scripts/gen_man.py [OUTPUT]      # default: docs/imgtool.1; read it with: man -l docs/imgtool.1
"""

from __future__ import annotations

import sys
from pathlib import Path

from imgtool.cli.commands.shell import man_page

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "docs" / "imgtool.1"
    out.write_text(man_page())
    print(f"wrote {out}")
