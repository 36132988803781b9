"""layerlab's own overhead per training iteration, measured directly.

``layerlab / bare`` in seed_network.py is the overhead plus the noise of two
separate runs, and on this machine the noise (a few percent) is larger than
the overhead. Here the training loop runs twice on the seed network, in
one process:

1. as it is: ``train_network`` with the verbose table (into a buffer);
2. with the training step itself (forward, loss, backward, update) replaced
   by a stub that returns a precomputed loss and output, keeping the
   per-iteration finiteness check: what remains is exactly what layerlab
   adds around the step (mini-batch slicing, loss and accuracy bookkeeping,
   the table, the progress and callback checks).

overhead = time of (2) / time of (1), both per iteration, medians over
rounds.

    python bench/overhead.py [--epochs 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

import layerlab as ll  # noqa: E402
import layerlab.training.trainer as trainer  # noqa: E402
from layerlab.demo import seed_layers  # noqa: E402


def per_iteration(X, Y, epochs: int, stub: bool) -> float:
    torch.manual_seed(0)
    opts = ll.training_options("sgdm", max_epochs=epochs, seed=0, verbose=True)
    real_step = trainer.train_step
    if stub:
        fixed: dict = {}

        def step(model, net, optimizer, xb, tb, opts, params, check_finite):
            if not fixed:       # one real forward for a loss and logits of the right kind
                with torch.no_grad():
                    Yb = model(xb, logits=True)
                    fixed["out"] = (net.loss(Yb, tb, from_logits=True), Yb)
            loss, Yb = fixed["out"]
            if check_finite and not bool(torch.isfinite(loss)):   # as the real step does
                raise RuntimeError("unreachable")
            return loss, Yb
        trainer.train_step = step
    try:
        _, info = ll.train_network(X, Y, seed_layers(), opts, stream=io.StringIO())
    finally:
        trainer.train_step = real_step
    return info.time_elapsed / info.iterations


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    X, Y, _ = ll.datasets.digits_train()
    print(f"{common.cpu_model()}, {torch.get_num_threads()} threads, load average "
          f"{common.load_average()}")
    full, bare = [], []
    for r in range(args.rounds):
        full.append(per_iteration(X, Y, args.epochs, stub=False))
        bare.append(per_iteration(X, Y, args.epochs, stub=True))
        print(f"  round {r + 1}: iteration {full[-1] * 1e3:.2f} ms, layerlab around the step "
              f"{bare[-1] * 1e6:.1f} us")
    f, b = statistics.median(full), statistics.median(bare)
    print(f"median: iteration {f * 1e3:.2f} ms, layerlab's own work {b * 1e6:.1f} us "
          f"= {100 * b / f:.2f}% of an iteration; load average {common.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
