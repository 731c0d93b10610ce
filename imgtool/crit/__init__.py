"""crit compatibility: messages <-> crit's dicts (raw and pretty), crit's JSON text, ``decode`` and ``encode``
of whole images, and the text of crit's ``x`` explorers.

Nothing below it needs it: the model describes dumps in its own terms. May import ``format``, ``memory``
and ``model``.
"""
