"""A whole checkpoint as objects: ``Dump`` (image directory, parent chain, archive, container metadata),
``Task`` (process tree, threads, creds, memory) and the resolved file descriptors.

May import ``format`` and ``memory``; never ``crit``, ``analysis``, ``render`` or ``cli``.
"""
