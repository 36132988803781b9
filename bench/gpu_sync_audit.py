"""Where training waits for the GPU: every host synchronisation of a run, by site.

A CUDA training loop runs ahead of the GPU until something on the host needs
a value the GPU has not computed yet (``.item()``, ``bool(tensor)``, a copy
to the host, ``nonzero``...): then the host waits and the queue drains. One
such read per iteration can cost more than the iteration's kernels. This
script trains the seed network with ``torch.cuda.set_sync_debug_mode("warn")``
and counts the synchronising calls by the layerlab/bench line that made them,
so that "no host synchronisation per iteration" (issue 16) is a measured
fact: a site whose count grows with the iterations is a per-iteration sync.

    python bench/gpu_sync_audit.py [--epochs 3]

Prints one line per site: the count, and the innermost layerlab frames.
Needs a GPU.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import sys
import traceback
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import layerlab as ll                                       # noqa: E402
from layerlab.demo import seed_layers                       # noqa: E402


def sync_sites(fn) -> collections.Counter:
    """Run ``fn()`` and count its synchronising CUDA calls by call site."""
    sites: collections.Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        ours = [f for f in traceback.extract_stack()[:-1]
                if "layerlab" in f.filename or "bench" in f.filename]
        sites[" <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                          for f in reversed(ours[-3:]))] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sites


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no GPU: nothing to audit")
        return 0
    X, Y, _ = ll.datasets.digits_train()
    opts = ll.training_options("sgdm", max_epochs=args.epochs, seed=0, verbose=True,
                               execution_environment="gpu")
    torch.manual_seed(0)
    ll.train_network(X, Y, seed_layers(), opts, stream=io.StringIO())   # warm-up
    info = {}

    def train():
        torch.manual_seed(0)
        info["info"] = ll.train_network(X, Y, seed_layers(), opts, stream=io.StringIO())[1]

    sites = sync_sites(train)
    its = info["info"].iterations
    print(f"{torch.cuda.get_device_name()}: {its} iterations ({args.epochs} epochs), "
          f"{sum(sites.values())} synchronising calls; step: {info['info'].step}")
    for site, n in sites.most_common():
        print(f"{n:6d}  {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
