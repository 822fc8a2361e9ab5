"""``xbyol config``: every config key with its default and meaning, or a run's resolved config."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="list config keys, or print a config file resolved",
                       description="Without arguments: every config key, its default and meaning. "
                                   "With --config/--set: the resolved config as YAML (validated).")
    p.add_argument("--config", "-c")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol import data, methods, models
    from xbyol.config import describe, dump, load

    if args.config or args.overrides:
        print(dump(load(args.config, args.overrides)), end="")
        return 0
    registered = {"data.name": data.names, "model.backbone": models.names, "method.name": methods.names}
    for key, default, help_ in describe():
        if key in registered:
            help_ += f" (one of {', '.join(registered[key]())})"
        print(f"{key:32s} {str(default):24s} {help_}")
    return 0
