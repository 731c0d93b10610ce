"""CLI subcommands beyond crit's verbs; each module has ``add_parsers(subparsers)``."""
