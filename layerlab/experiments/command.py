"""``layerlab experiment NAME [--repeats N] [--quick] [--out DIR] [--workers N]
[--threads T] [--ray [ADDRESS]] [--resume]``: run a study, print its table and
write its report (Markdown, PNG figures, CSV)."""

from __future__ import annotations

import argparse
import os
import shlex

from . import STUDIES, make_study


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'auto', got {text!r}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=list(STUDIES), metavar="NAME",
                   help="the study: " + "; ".join(f"{k}: {v[1]}" for k, v in STUDIES.items()))
    p.add_argument("--repeats", type=int, default=None,
                   help="runs per configuration, each with its own seed "
                        "(default: the study's; 10 for elu-batchnorm, 5 for the others)")
    p.add_argument("--quick", action="store_true",
                   help="the short form (fewer epochs, repeats and configurations): a smoke "
                        "test in well under 2 minutes, not a result to quote")
    p.add_argument("--out", default=None,
                   help="results folder (default: ./layerlab-results/NAME[-quick]); checked "
                        "before the study starts")
    p.add_argument("--workers", type=_workers, default="auto",
                   help="worker processes running runs side by side (default 'auto': one per "
                        "CPU core; 1: one after another in this process)")
    p.add_argument("--threads", type=int, default=None,
                   help="PyTorch threads per run (default: cores // workers, so workers x "
                        "threads <= cores; 1 on Ray). A run's numbers depend on its thread "
                        "count: give the same to reproduce a study's rows")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the runs as Ray tasks: on the cluster at ADDRESS ('auto': the one "
                        "this machine belongs to, 'ray://HOST:10001': Ray Client), or, without "
                        "ADDRESS, on a local Ray instance (needs `pip install layerlab[ray]`)")
    p.add_argument("--resume", action="store_true",
                   help="keep the finished runs in the folder's runs.csv and do only the others")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite the folder's report from its runs.csv (marked "
                        "partial when runs are missing)")


def command_line(args: argparse.Namespace, threads: int | None = None) -> str:
    """The command that reproduces this run's numbers, for the report: the
    threads per run are named (they change the numbers), how the runs were
    spread over processes is not (it does not)."""
    parts = ["layerlab", "experiment", args.name]
    if args.repeats is not None:
        parts += ["--repeats", str(args.repeats)]
    if args.quick:
        parts.append("--quick")
    if args.out is not None:
        parts += ["--out", args.out]
    threads = args.threads if threads is None else threads
    if threads is not None:
        parts += ["--threads", str(threads)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from ..errors import OptionError
    from .runner import auto_workers, threads_per_worker
    from .study import check_out_folder

    out = args.out or os.path.join("layerlab-results",
                                   args.name + ("-quick" if args.quick else ""))
    check_out_folder(out)        # before the study runs, not after
    study = make_study(args.name, quick=args.quick)
    if args.report_only:
        result = study.report(out, repeats=args.repeats, command=command_line(args))
        print(result.table())
        print(f"\nReport: {os.path.join(out, 'report.md')}")
        return 0
    if args.threads is not None and args.threads < 1:
        raise OptionError(f"--threads: expected an integer >= 1, got {args.threads}")
    if args.ray is not None:
        threads = args.threads or 1
        result = study.run(repeats=args.repeats, out=out, command=command_line(args, threads),
                           cluster="ray", address=args.ray or None, threads=threads,
                           resume=args.resume)
    else:
        workers = args.workers
        if workers == "auto":
            runs = (args.repeats or study.repeats) * len(study.configurations)
            workers = auto_workers(runs) if study.parallel else 1
        threads = args.threads or threads_per_worker(workers)
        result = study.run(repeats=args.repeats, out=out, command=command_line(args, threads),
                           workers=workers, threads=threads, resume=args.resume)
    print()
    print(result.table())
    print(f"\nReport: {os.path.join(out, 'report.md')}  (runs: {os.path.join(out, 'runs.csv')})")
    missing = result.failed_runs()
    if missing:
        print(f"{len(missing)} run(s) failed twice and are missing: "
              + "; ".join(str(t) for t in missing) + ". Run again with --resume to retry them.")
        return 1
    return 0
