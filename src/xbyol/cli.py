"""Command line: ``xbyol <command> ...``.

Each command lives in its own module under ``xbyol/commands/`` (listed in
:data:`xbyol.commands.COMMANDS`) and exposes ``add_parser(subparsers)`` which registers an argparse sub-parser whose ``func``
default is the function to run with the parsed namespace. The CLI and the Python API
are two faces of the same functions: a command only parses arguments and calls the API.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from xbyol import __version__
from xbyol.commands import COMMANDS
from xbyol.config import ConfigError
from xbyol.errors import XbyolError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xbyol",
        description="Self-supervised BYOL that can explain what it learned: train, evaluate, explain, report.",
    )
    parser.add_argument("--version", action="version", version=f"xbyol {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors (also XBYOL_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def debug_enabled(args: argparse.Namespace | None = None) -> bool:
    """``--debug`` or ``XBYOL_DEBUG=1``: let tracebacks through instead of one-line errors."""
    env = os.environ.get("XBYOL_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    return env or bool(getattr(args, "debug", False))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # a warning is one plain line, without Python's category, file and source line
    warnings.formatwarning = lambda message, *_, **__: f"xbyol {args.command}: warning: {_one_line(str(message))}\n"
    if debug_enabled(args):
        return int(args.func(args) or 0)
    try:
        rc = args.func(args)
    except (XbyolError, ConfigError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"xbyol {args.command}: error: {_one_line(msg)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xbyol {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line, the traceback on request
        print(
            f"xbyol {args.command}: internal error: {type(e).__name__}: {_one_line(str(e))} "
            "(rerun with --debug or XBYOL_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    return int(rc or 0)


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


if __name__ == "__main__":
    sys.exit(main())
