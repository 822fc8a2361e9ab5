"""``xbyol datasets``: list the registered datasets."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list datasets", description="List the datasets xbyol can read, with what each needs.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.data import DATASETS, names

    for name in names():
        print(f"{name:16s} {DATASETS.doc(name)}")
    return 0
