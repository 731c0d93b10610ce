"""The diff facets: one decorated function per facet, like the restore checks.

A facet compares one aspect of two dumps::

    @facet("fds", order=70, help="open files: kind, path, flags, position, queued data",
           images=r"fdinfo-\\d+|files|pipes-data")
    def fds(pair: TaskPair) -> Iterator[Change]: ...

``scope="task"`` functions get a ``TaskPair`` (two matched tasks), ``scope="dump"`` ones a ``DumpPair``.  ``order``
places the facet in ``FACETS`` and its changes in the output; ``default=False`` leaves it out unless asked
(``--only``); ``images`` is the image files the facet covers, which the generic ``images`` facet then skips.
A new facet is a new function in a module of ``imgtool/analysis/diff/facets/`` (every module there is loaded).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from imgtool.analysis.changes import Change
from imgtool.errors import ImgtoolError
from imgtool.model.dump import Dump, Task

FacetFunc = Callable[[Any], Iterable[Change]]


@dataclass(frozen=True)
class Facet:
    name: str
    scope: str                     # "task" or "dump"
    func: FacetFunc
    order: int
    default: bool
    help: str
    images: re.Pattern[str] | None  # image file names (without .img) the facet covers


_REGISTRY: dict[str, Facet] = {}


def facet(name: str, *, scope: str = "task", order: int, default: bool = True, help: str = "",
          images: str | None = None) -> Callable[[FacetFunc], FacetFunc]:
    if scope not in ("task", "dump"):
        raise ValueError(f"facet {name}: scope must be 'task' or 'dump', not {scope!r}")

    def register(func: FacetFunc) -> FacetFunc:
        if name in _REGISTRY and _REGISTRY[name].func is not func:
            raise ValueError(f"facet {name!r} registered twice")
        _REGISTRY[name] = Facet(name, scope, func, order, default, help,
                                re.compile(f"(?:{images})(?:\\.img)?") if images else None)
        return func
    return register


def registered() -> list[Facet]:
    """Every facet, in order (imgtool.analysis.diff loads the modules of ``facets/``, which register them)."""
    return sorted(_REGISTRY.values(), key=lambda f: (f.order, f.name))


def select(only: Iterable[str] | None) -> list[Facet]:
    """The facets named in ``only`` (default: the default ones), in order; an unknown name is an error."""
    every = registered()
    if only is None:
        return [f for f in every if f.default]
    wanted = {name.strip() for name in only if name.strip()}
    unknown = wanted - {f.name for f in every}
    if unknown:
        raise ImgtoolError(f"unknown facet(s) {', '.join(sorted(unknown))}; "
                           f"choose from {', '.join(f.name for f in every)}")
    return [f for f in every if f.name in wanted]


def claimed(name: str) -> Facet | None:
    """The facet covering image file ``name``, if one says so."""
    return next((f for f in registered() if f.images is not None and f.images.fullmatch(name)), None)


@dataclass
class Options:
    """What the caller chose beyond the facets: the memory comparer (``memdiff.MemoryComparer`` by default)."""

    memory: Callable[..., Iterable[Change]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskPair:
    """Two matched tasks: ``base`` is the path their changes start with ("task 12", or "task 12→40")."""

    a: Task
    b: Task
    base: tuple[str, ...]
    pid_map: dict[int, int]        # pid in a → pid in b, for every matched pair
    options: Options


@dataclass
class DumpPair:
    a: Dump
    b: Dump
    options: Options
