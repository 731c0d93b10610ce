"""The ``imgtool`` command line: argument parsing, one module per group of commands, exit codes.

The top layer: may import every other package; nothing imports it.
"""

from imgtool.cli.app import main, main_entry

__all__ = ["main", "main_entry"]
