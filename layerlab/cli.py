"""The ``layerlab`` command line: ``layerlab demo``, ``layerlab check``, ...

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).

Examples:
    >>> from layerlab.cli import main
    >>> main(["--version"])                      # doctest: +SKIP
    layerlab 0.1.0 (torch 2.13.0)
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap

from .sources import glossary

__all__ = ["main"]

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "demo": ("layerlab.demo", "the seed post end to end: define an ELU layer, check it, "
                              "train the post's network, classify, save"),
    "check": ("layerlab.checking.command",
              "check a layer class (MATLAB's checkLayer): layerlab check MODULE:CLASS "
              "--input-size 20 24 24"),
    "experiment": ("layerlab.experiments.command",
                   "run a study (configurations x repeats) with statistics and a report"),
}

EPILOG = "The sources named in the help and the reports:\n" + glossary()


def _version() -> str:
    import torch
    from . import __version__
    return f"layerlab {__version__} (torch {torch.__version__})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerlab",
        description="Define your own neural-network layer, check it, train it, compare it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=textwrap.fill(help_text, 79),
                           epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def error_message(command: str, exc: BaseException) -> str:
    """``layerlab COMMAND: error: MESSAGE``, without repeating the
    ``layerlab COMMAND:`` prefix that some messages already carry."""
    text = str(exc)
    prefix = f"layerlab {command}:"
    if text.startswith(prefix):
        text = text[len(prefix):].lstrip()
    return f"{prefix} error: {text}"


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
        print(error_message(args.command, exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
