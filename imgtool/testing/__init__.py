"""Synthetic dumps for tests and benchmarks (``synth``): written with our own encoder, seeded, any size.

Not used by the tool itself. May import ``format``, ``memory``, ``model`` and ``crit``.
"""
