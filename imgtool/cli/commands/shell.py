"""``imgtool completion SHELL`` (bash, zsh, fish: from the parser, by shtab) and ``imgtool man`` (a roff
manual page made from the parser; ``scripts/gen_man.py`` writes it to docs/imgtool.1)."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterator

SHELLS = ("bash", "zsh", "fish")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help="shell completion script (bash, zsh, fish)",
                       description="Print a completion script for SHELL, made from imgtool's parser. Set-up: "
                                   "bash: eval \"$(imgtool completion bash)\" in ~/.bashrc; "
                                   "zsh: imgtool completion zsh > ~/.zfunc/_imgtool (with fpath+=~/.zfunc); "
                                   "fish: imgtool completion fish > ~/.config/fish/completions/imgtool.fish")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=cmd_completion)
    p = sub.add_parser("man", help="the manual page (roff) made from the parser",
                       description="Print imgtool's manual page in roff; read it with: imgtool man | man -l -")
    p.set_defaults(func=cmd_man)


def _parser() -> argparse.ArgumentParser:
    from imgtool.cli.app import build_parser  # sideways within cli, lazy: main imports this module

    return build_parser()


def completion_script(shell: str) -> str:
    import shtab

    from imgtool.errors import UsageError

    if shell not in SHELLS:
        raise UsageError(f"no completion for {shell!r}: use one of {', '.join(SHELLS)}")
    if shell == "fish":
        return fish_script(_parser())
    return shtab.complete(_parser(), shell=shell)


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion_script(args.shell))
    return 0


# -- fish (shtab has no fish) -------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_script(parser: argparse.ArgumentParser) -> str:
    """Commands (and mem's verbs), their options, choices of positionals, files for the rest."""
    lines = ["# fish completion for imgtool (imgtool completion fish)", "complete -c imgtool -f"]
    commands = _subcommands(parser)
    helps = _helps(parser)
    top = "not __fish_seen_subcommand_from " + " ".join(commands)
    lines += _fish_options(parser, f"-n {_fish_quote(top)}")
    for name, sub in commands.items():
        lines.append(f"complete -c imgtool -n {_fish_quote(top)} -a {name} -d {_fish_quote(helps.get(name, ''))}")
        cond = f"__fish_seen_subcommand_from {name}"
        verbs = _subcommands(sub)
        if verbs:
            verb_helps = _helps(sub)
            for verb, vp in verbs.items():
                no_verb = _fish_quote(f"{cond}; and not __fish_seen_subcommand_from {' '.join(verbs)}")
                lines.append(f"complete -c imgtool -n {no_verb} -a {verb} -d {_fish_quote(verb_helps.get(verb, ''))}")
                lines += _fish_options(vp, f"-n {_fish_quote(cond + '; and __fish_seen_subcommand_from ' + verb)}")
        else:
            lines += _fish_options(sub, f"-n {_fish_quote(cond)}")
    return "\n".join(lines) + "\n"


def _fish_options(parser: argparse.ArgumentParser, cond: str) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        desc = f" -d {_fish_quote(action.help)}" if action.help and action.help != argparse.SUPPRESS else ""
        if not action.option_strings:
            if action.choices:
                yield f"complete -c imgtool {cond} -a {_fish_quote(' '.join(map(str, action.choices)))}"
            else:
                yield f"complete -c imgtool {cond} -F"
            continue
        flags = " ".join(f"-l {o[2:]}" if o.startswith("--") else f"-s {o[1:]}" for o in action.option_strings)
        takes = action.nargs != 0
        extra = ""
        if takes and action.choices:
            extra = f" -x -a {_fish_quote(' '.join(map(str, action.choices)))}"
        elif takes:
            extra = " -r -F"
        yield f"complete -c imgtool {cond} {flags}{extra}{desc}"


# -- man page -----------------------------------------------------------------------


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().removeprefix("usage: ").split())


def _options(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                metavar = " " + (action.metavar or (action.dest.upper() if not action.choices
                                                    else "{" + ",".join(map(str, action.choices)) + "}"))
            head = ", ".join(f"\\fB{_roff(o)}\\fR" for o in action.option_strings) + _roff(str(metavar))
        else:
            head = f"\\fI{_roff(str(action.metavar or action.dest))}\\fR"
        yield ".TP"
        yield head
        yield _roff(action.help or "")


def man_page(parser: argparse.ArgumentParser | None = None, date: str | None = None) -> str:
    from imgtool import __version__

    parser = parser or _parser()
    date = date or datetime.date.today().isoformat()
    out = [f'.TH IMGTOOL 1 "{date}" "imgtool {__version__}" "User Commands"', ".SH NAME",
           "imgtool \\- " + _roff(parser.description or ""), ".SH SYNOPSIS", ".B imgtool",
           _roff(_usage(parser).removeprefix("imgtool").strip()), ".SH OPTIONS", *_options(parser), ".SH COMMANDS"]
    helps = _helps(parser)
    for name, sub in _subcommands(parser).items():
        out += [f".SS {_roff(name)}", _roff(helps.get(name, "")), ".PP", ".B " + _roff(_usage(sub))]
        if sub.description:
            out += [".PP", _roff(sub.description)]
        out += list(_options(sub))
        verb_helps = _helps(sub)
        for verb, vp in _subcommands(sub).items():
            out += [f".SS {_roff(name + ' ' + verb)}", _roff(verb_helps.get(verb, "")), ".PP",
                    ".B " + _roff(_usage(vp)), *_options(vp)]
        if sub.epilog:
            out += [".PP", _roff(sub.epilog)]
    out += [".SH EXIT STATUS", ".TP", "0", "success (check: restore should succeed; diff: no differences)",
            ".TP", "1", "a negative result: dumps differ, checks predict failure, search found nothing",
            ".TP", "2", "bad input or usage: unreadable image, missing file, wrong arguments",
            ".TP", "70", "internal error (a bug in imgtool): rerun with \\-\\-traceback and report it",
            ".TP", "130", "interrupted (Ctrl\\-C)",
            ".SH SEE ALSO", "criu(8), crit(1)"]
    return "\n".join(out) + "\n"


def cmd_man(args: argparse.Namespace) -> int:
    sys.stdout.write(man_page())
    return 0
