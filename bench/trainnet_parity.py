"""trainnet against train_network, and bf16-mixed against float32, on the
seed network (digits), interleaved in one process.

For each seed: ``train_network`` with the seed layers (Classification
output), ``trainnet`` with the same layers minus the output layer and
"crossentropy", and ``trainnet`` with ``precision="bf16-mixed"``; test
accuracy on ``digits_test()`` and the training loop's seconds per
iteration (``info.time_elapsed / info.iterations``). Prints a table, the
mean and spread of each contender's accuracy, and the median per-seed time
ratios (bf16 / float32). No timing is asserted anywhere: on a shared
machine only the ratios mean something.

Usage: python bench/trainnet_parity.py [--epochs 5] [--seeds 0,1,2]
"""

import argparse
import statistics

import numpy as np
import torch

import layerlab as ll
from layerlab.demo import seed_layers


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    X, Y, _ = ll.datasets.digits_train()
    Xt, Yt, _ = ll.datasets.digits_test()
    rows = {"train_network": [], "trainnet": [], "trainnet bf16-mixed": []}
    times = {k: [] for k in rows}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in rows:
            torch.manual_seed(seed)   # ELU(20) draws its alpha when constructed
            layers = seed_layers()
            opts = ll.training_options("sgdm", max_epochs=args.epochs, seed=seed, verbose=False,
                                       precision="bf16-mixed" if "bf16" in name else "32")
            if name == "train_network":
                net, info = ll.train_network(X, Y, layers, opts)
                acc = float(np.mean(ll.classify(net, Xt) == Yt))
            else:
                net, info = ll.trainnet(X, Y, layers[:-1], "crossentropy", opts)
                acc = ll.testnet(net, Xt, Yt, "accuracy")["accuracy"]
            rows[name].append(acc)
            times[name].append(info.time_elapsed / info.iterations)
            print(f"seed {seed} {name:<22} test accuracy {100 * acc:6.2f}%  "
                  f"{1000 * times[name][-1]:7.1f} ms/iteration", flush=True)
    for name, accs in rows.items():
        print(f"{name:<22} accuracy {100 * np.mean(accs):.2f}% "
              f"(min {100 * min(accs):.2f}, max {100 * max(accs):.2f})")
    r = [b / a for a, b in zip(times["trainnet"], times["trainnet bf16-mixed"])]
    q = [b / a for a, b in zip(times["train_network"], times["trainnet"])]
    print(f"time ratio bf16-mixed / float32 (trainnet): median {statistics.median(r):.2f}")
    print(f"time ratio trainnet / train_network: median {statistics.median(q):.2f}")


if __name__ == "__main__":
    main()
