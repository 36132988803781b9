"""``layerlab experiment NAME [--repeats N] [--quick] [--out DIR]``: run a
study, print its table and write its report (Markdown, PNG figures, CSV)."""

from __future__ import annotations

import argparse
import os
import shlex

from . import STUDIES, make_study


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=list(STUDIES), metavar="NAME",
                   help="the study: " + "; ".join(f"{k}: {v[1]}" for k, v in STUDIES.items()))
    p.add_argument("--repeats", type=int, default=None,
                   help="runs per configuration, each with its own seed "
                        "(default: the study's, 5 for the full studies)")
    p.add_argument("--quick", action="store_true",
                   help="the short form (fewer epochs, repeats and configurations): a smoke "
                        "test in well under 2 minutes, not a result to quote")
    p.add_argument("--out", default=None,
                   help="results folder (default: ./layerlab-results/NAME[-quick])")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, for the report."""
    parts = ["layerlab", "experiment", args.name]
    if args.repeats is not None:
        parts += ["--repeats", str(args.repeats)]
    if args.quick:
        parts.append("--quick")
    if args.out is not None:
        parts += ["--out", args.out]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    study = make_study(args.name, quick=args.quick)
    out = args.out or os.path.join("layerlab-results",
                                   args.name + ("-quick" if args.quick else ""))
    result = study.run(repeats=args.repeats, out=out, command=command_line(args))
    print()
    print(result.table())
    print(f"\nReport: {os.path.join(out, 'report.md')}  (runs: {os.path.join(out, 'runs.csv')})")
    return 0
