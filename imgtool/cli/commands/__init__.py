"""CLI subcommands beyond crit's verbs; each module has ``add_parsers(subparsers)``.

Every module is imported to build the parser, so rich and ``imgtool.render`` are imported inside the
commands that print with them (start-up time: a plain ``imgtool decode`` or ``imgtool x`` starts without them).
"""
