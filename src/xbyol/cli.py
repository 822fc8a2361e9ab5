"""Command line: ``xbyol <command> ...``.

Each command lives in its own module under ``xbyol/commands/`` and exposes
``add_parser(subparsers)`` which registers an argparse sub-parser whose ``func``
default is the function to run with the parsed namespace. The CLI and the Python API
are two faces of the same functions: a command only parses arguments and calls the API.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    import xbyol.commands as pkg
    from xbyol import __version__

    parser = argparse.ArgumentParser(
        prog="xbyol",
        description="Self-supervised BYOL that can explain what it learned: train, evaluate, explain, report.",
    )
    parser.add_argument("--version", action="version", version=f"xbyol {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"xbyol.commands.{mod.name}")
        if hasattr(module, "add_parser"):
            module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from xbyol.config import ConfigError

    try:
        rc = args.func(args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"xbyol {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
