"""The diff facets: every module here is loaded and registers its functions with ``@facet`` (see registry.py)."""
