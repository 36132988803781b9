"""What watching inside training costs: the seed network trained with
``training_options(monitor=("activations", "gradients"), monitor_frequency=50)``
against the same training without the monitor, interleaved in one process.

    python bench/monitor_overhead.py                 # 3 rounds of 10 epochs
    python bench/monitor_overhead.py --epochs 2 --rounds 2

Prints ms per iteration for each contender and round, and the ratio
(monitored / plain) per round and its median. The monitor only attaches
hooks at the recorded iterations, so the iterations in between cost the same
as without it.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import layerlab as ll  # noqa: E402
from _common import load_average, machine, median, pick_device  # noqa: E402


def seed_layers():
    return [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20), ll.BatchNormalization(),
            ll.ELU(20), ll.FullyConnected(10), ll.Softmax(), ll.Classification()]


def run(X, Y, epochs: int, monitor) -> tuple[float, int]:
    opts = ll.training_options("sgdm", max_epochs=epochs, verbose=False, seed=0,
                               check_layers=False, monitor=monitor, monitor_frequency=50)
    _, info = ll.train_network(X, Y, seed_layers(), opts)
    rows = 0 if info.layer_statistics is None else len(info.layer_statistics.iterations)
    return info.time_elapsed / info.iterations * 1e3, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    X, Y, _ = ll.datasets.digits_train()
    print(f"machine: {machine(pick_device('cpu'))}")
    run(X[:1024], Y[:1024], 1, None)          # warm-up (first-call costs)
    ratios = []
    for r in range(1, args.rounds + 1):
        plain, _ = run(X, Y, args.epochs, None)
        watched, rows = run(X, Y, args.epochs, ("activations", "gradients"))
        ratios.append(watched / plain)
        print(f"round {r}: plain {plain:.2f} ms/iteration, monitored {watched:.2f} "
              f"({rows} recorded iterations): ratio {watched / plain:.3f}")
    print(f"monitor overhead at monitor_frequency=50: median ratio {median(ratios):.3f} "
          f"(rounds {', '.join(f'{x:.3f}' for x in ratios)}); load {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
