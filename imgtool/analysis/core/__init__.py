"""ELF core files from a dump: ``write_core`` (one task to a stream), ``export_task`` / ``export_dump`` (files).

``elf.py`` holds the ELF structures and the writer, ``notes.py`` the note builders per architecture,
``export.py`` the task → core driver (memory streamed with ``imgtool.memory.stream.chunks``).
"""

from imgtool.analysis.core.export import CoreError, export_dump, export_task, write_core

__all__ = ["CoreError", "export_dump", "export_task", "write_core"]
