"""The imgtool command line: crit's verbs (decode, encode, info, show) and more."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from importlib import import_module
from typing import IO, Any

from imgtool import __version__
from imgtool.crit import decode
from imgtool.crit.encode import encode_dict
from imgtool.crit.jsonout import write_document
from imgtool.errors import EncodeError, ImgtoolError, UsageError
from imgtool.format import magic
from imgtool.format.image import Image

# Exit codes (README: "Exit codes"): 1 is a result (dumps differ, checks fail, search finds nothing), never an error.
EXIT_OK, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2
EXIT_INTERNAL = 70   # a bug in imgtool (sysexits' EX_SOFTWARE): one line on stderr, --traceback shows where
EXIT_INTERRUPTED = 130

# Commands that pass what follows "--" to criu.
CRIU_OPTION_COMMANDS = ("check", "restore")

# Modules of imgtool/commands/ that add subcommands.
COMMAND_MODULES: list[str] = ["inspect", "diff", "check", "mem", "explain", "report", "core", "forensics", "docker"]
COMMAND_MODULES += ["views", "shell"]   # mounts, stats; completion, man (shell last: it reads the whole parser)


def _open_input(path: str | None) -> Image:
    if path and path != "-":
        return Image.open(path)
    if sys.stdin.isatty():
        raise UsageError("no input: give -i FILE or pipe an image into stdin")
    return Image.from_stream(sys.stdin.buffer)


def cmd_decode(args: argparse.Namespace) -> int:
    with _open_input(args.input) as img:
        batches = decode.json_batches(img, args.pretty, args.nopl)
        if not args.output or args.output == "-":
            write_document(sys.stdout, img.magic, batches, args.pretty)
            sys.stdout.write("\n")
            return EXIT_OK
        with _replacing(args.output, "w") as out:   # no half-written file on error
            write_document(out, img.magic, batches, args.pretty)
    return EXIT_OK


@contextmanager
def _replacing(path: str, mode: str) -> Iterator[IO[Any]]:
    """Write to a temp file beside ``path`` and rename it over ``path`` only on success.

    Devices, pipes and other non-regular outputs (/dev/null, /dev/stdout) are written directly.
    """
    if os.path.exists(path) and not os.path.isfile(path):
        with open(path, mode) as out:
            yield out
        return
    tmp = f"{path}.imgtool-tmp"
    try:
        with open(tmp, mode) as out:
            yield out
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def cmd_show(args: argparse.Namespace) -> int:
    args.input, args.output, args.pretty = args.file, None, True
    return cmd_decode(args)


def _read_json(path: str | None) -> Any:
    name = path or "<stdin>"
    try:
        if path and path != "-":
            with open(path, encoding="utf-8") as src:
                return json.load(src)
        if sys.stdin.isatty():
            raise UsageError("no input: give -i FILE or pipe JSON into stdin")
        return json.load(sys.stdin)
    except UnicodeDecodeError:
        raise EncodeError(f"{name}: not JSON text (a binary image? encode expects JSON)") from None
    except json.JSONDecodeError as exc:
        raise EncodeError(f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise EncodeError(f"{name}: JSON nested too deeply to read") from None
    except ValueError as exc:   # an integer of more than sys.get_int_max_str_digits() digits
        raise EncodeError(f"{name}: unreadable JSON: {' '.join(str(exc).split())}") from None


def cmd_encode(args: argparse.Namespace) -> int:
    data = encode_dict(_read_json(args.input))
    if args.output and args.output != "-":
        with _replacing(args.output, "wb") as out:
            out.write(data)
    elif sys.stdout.isatty():
        raise UsageError("refusing to write a binary image to a terminal: use -o FILE or a pipe")
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    name = os.path.basename(args.file)
    raw = magic.raw_kind(name)
    try:
        with Image.open(args.file) as img:
            count = img.count()
            # crit counts pagemap entries without the head.
            info = {"magic": img.magic, "count": count - 1 if img.magic == "PAGEMAP" else count}
    except ImgtoolError:
        if raw is None:
            raise
        info = {"magic": "RAW", "kind": raw, "size": os.path.getsize(args.file)}
    json.dump(info, sys.stdout, indent=4)
    print()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgtool", description="Inspect CRIU checkpoint images.")
    parser.add_argument("-V", "--version", action="version", version=f"imgtool {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback on errors")
    parser.add_argument("--cache", metavar="DIR", help="unpack a compressed archive once under DIR and reuse it in "
                        "later commands (off by default; same as IMGTOOL_CACHE=DIR)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("decode", help="image -> JSON (crit-compatible)")
    p.add_argument("-i", "--in", dest="input", help="image file (default: stdin)")
    p.add_argument("-o", "--out", dest="output", help="JSON output file (default: stdout)")
    p.add_argument("--pretty", action="store_true", help="indent and show fields in their natural form")
    p.add_argument("--nopl", action="store_true", help="leave out extra payloads, show their size")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("encode", help="JSON -> image (crit-compatible)")
    p.add_argument("-i", "--in", dest="input", help="JSON input file (default: stdin)")
    p.add_argument("-o", "--out", dest="output", help="image output file (default: stdout)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("info", help="magic and entry count of an image")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("show", help="image -> pretty JSON on stdout")
    p.add_argument("file")
    p.add_argument("--nopl", action="store_true", help="leave out extra payloads, show their size")
    p.set_defaults(func=cmd_show)

    for module in COMMAND_MODULES:
        import_module(f"imgtool.cli.commands.{module}").add_parsers(sub)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader went away (``imgtool show big.img | head``): stop quietly, successfully.

    stdout is pointed at /dev/null so that the interpreter's final flush does not fail again."""
    with suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def split_criu_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """imgtool's own arguments and what follows the first "--" (criu options for check/restore)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _command_name(argv: list[str]) -> str | None:
    """The subcommand: the first word that is neither a top-level option nor its value (``--cache DIR``)."""
    words = iter(argv)
    for word in words:
        if word == "--cache":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``args.extra``: the criu options after "--" (check, restore); criu options before it get a hint."""
    command = _command_name(argv)
    if command not in CRIU_OPTION_COMMANDS:
        args = parser.parse_args(argv)   # "--" as argparse means it: the end of the options
        args.extra = []
        return args
    own, extra = split_criu_options(argv)
    args, unknown = parser.parse_known_args(own)
    if unknown:   # criu options before "--": say where they go
        opts = " ".join(unknown)
        _subparser(parser, command).error(f"unrecognized arguments: {opts}\n  criu options go after '--': "
                                          f"imgtool {command} DIR [OPTIONS] -- {opts}")
    args.extra = extra
    return args


@contextmanager
def _cache_set(cache: str | None) -> Iterator[None]:
    """``--cache DIR`` as IMGTOOL_CACHE while the command runs (read where archives are opened, in this process
    and in scan's workers alike), as it was afterwards: an in-process caller keeps its own environment."""
    if not cache:
        yield
        return
    from imgtool.model.archive import CACHE_ENV  # lazy: start-up of commands that open no archive

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = os.path.abspath(cache)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = before


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, list(sys.argv[1:] if argv is None else argv))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with _cache_set(args.cache):
            code = func(args)
        sys.stdout.flush()   # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except ImgtoolError as exc:
        if args.traceback:
            raise
        print(f"imgtool: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        if args.traceback:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"imgtool: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:   # a bug: one line, not a traceback, and an exit code of its own
        if args.traceback:
            raise
        print(f"imgtool: internal error: {type(exc).__name__}: {exc}\n"
              f"  this is a bug in imgtool {__version__}; please report it with the output of "
              f"'imgtool --traceback {' '.join(sys.argv[1:] if argv is None else argv)}'", file=sys.stderr)
        return EXIT_INTERNAL


def main_entry() -> None:
    sys.exit(main())
