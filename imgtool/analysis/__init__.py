"""Questions asked of dumps: ``diff`` (facets, memory diff), restore ``checks`` and ``explain`` of criu logs.

Each returns plain data (changes, findings, explanations); none prints. May import ``model``, ``memory``,
``format`` and ``crit`` (the generic image diff compares crit's dicts).
"""
