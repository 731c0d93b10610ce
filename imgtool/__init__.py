"""imgtool: read, check and compare CRIU checkpoint images."""

__version__ = "0.1.0"
