"""Restore preconditions: will ``criu restore`` of this dump succeed here, and if not, why.

Each check is a function registered with ``@check(name)``; it reads the
``Context`` (the dump, the host root, the criu options the user will pass)
and yields ``Finding`` records.  A check that does not apply yields nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtool.errors import ImgtoolError
from imgtool.model.dump import Dump

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class Finding:
    severity: str          # error: restore will fail; warning: may fail or differ; info
    code: str              # stable identifier, e.g. "host-file-size"
    message: str           # one line
    hint: str = ""         # the criu option or action that solves it
    image: str | None = None
    entry: int | None = None
    option: str | None = None   # criu restore option that resolves it (for --auto-options)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Context:
    dump: Dump
    root: Path = Path("/")               # where the dump's files are expected
    criu_options: list[str] = field(default_factory=list)
    criu: Path | None = None             # criu binary to check against (None: not checked)
    offline: bool = False                # image checks only
    container: Any = None                # check --for-container: the container it is restored into (checks/docker.py)

    def has_option(self, *names: str) -> bool:
        """Whether the criu options contain one of ``names`` (``--opt`` or ``--opt=value``)."""
        return any(opt == n or opt.startswith(n + "=") for opt in self.criu_options for n in names)

    def option_value(self, name: str) -> str | None:
        opts = self.criu_options
        for i, opt in enumerate(opts):
            if opt.startswith(name + "="):
                return opt.split("=", 1)[1]
            if opt == name and i + 1 < len(opts):
                return opts[i + 1]
        return None

    def describe_options(self) -> str:
        return shlex.join(self.criu_options) or "(none)"


CheckFunc = Callable[[Context], Iterator[Finding]]
CHECKS: list[tuple[str, str, CheckFunc]] = []   # (name, kind "image"/"host", function)


def check(name: str, kind: str = "image") -> Callable[[CheckFunc], CheckFunc]:
    def register(func: CheckFunc) -> CheckFunc:
        CHECKS.append((name, kind, func))
        return func
    return register


def run_checks(ctx: Context) -> list[Finding]:
    """Every registered check, image checks first; a check that crashes on bad images reports it."""
    from imgtool.analysis.checks import docker, host, images  # noqa: F401  (registers the checks)

    findings: list[Finding] = []
    for name, kind, func in CHECKS:
        if kind == "host" and (ctx.offline or ctx.container is not None):   # Docker: runc picks criu's options
            continue
        try:
            findings.extend(func(ctx))
        except ImgtoolError as exc:
            findings.append(Finding(ERROR, "image-unreadable", f"{name}: {exc}",
                                    "the dump is damaged; take a new dump"))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])
