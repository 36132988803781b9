"""The ``layerlab`` command line: ``layerlab demo``, ``layerlab check``, ...

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "demo": ("layerlab.demo", "the seed post end to end: define an ELU layer, train, classify"),
    "check": ("layerlab.checking.command",
              "check a layer class (MATLAB's checkLayer): layerlab check MODULE:CLASS "
              "--input-size 20 24 24"),
    "experiment": ("layerlab.experiments.command",
                   "run a study (configurations x repeats) with statistics and a report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerlab",
        description="Define your own neural-network layer, check it, train it, compare it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from .errors import LayerlabError
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except LayerlabError as exc:
        print(f"layerlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
