"""Forensics over checkpoints: the content hidden in a dump (``extract``), YARA over memory (``yara``) and the
same search over many checkpoints at once (``scan``).

Each returns data (items and byte streams, hits, per-checkpoint results); none prints.  yara-python and
dask.distributed are optional extras (``imgtool[yara]``, ``imgtool[dask]``), imported only when used.
"""
