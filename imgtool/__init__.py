"""imgtool: read, check and compare CRIU checkpoint images."""

from __future__ import annotations

import os

from imgtool.errors import ImgtoolError
from imgtool.format.image import Entry, Image
from imgtool.model.dump import Dump, Task

__version__ = "0.1.0"
__all__ = ["Dump", "Entry", "Image", "ImgtoolError", "Task", "open", "open_image"]


def open(path: str | os.PathLike[str], dump: str | None = None) -> Dump:
    """Open a checkpoint: image dir, Docker/runc checkpoint dir, or Podman/CRI-O/Kubernetes archive
    (``dump`` names one of several dumps in the directory ``path``)."""
    return Dump.open(path, dump)


def open_image(path: str | os.PathLike[str]) -> Image:
    """Open one image file."""
    return Image.open(path)
