"""Training from a folder of PNGs vs from in-memory arrays, the seed network.

The 5000 synthetic training digits are written once as 28x28 PNGs in class
folders (``digits/<label>/<i>.png``); then, interleaved round after round in
one process (the order rotating), the seed network trains for ``--epochs``
epochs from:

* ``memory``: ``train_network(X, Y, ...)`` with the same pixels (the PNGs'
  uint8 values / 255) in memory;
* ``folder``: ``train_network(ImageDatastore(folder), ...)``: every image
  decoded by Pillow per mini-batch, two mini-batches read ahead in threads;
* ``folder+augment``: ``AugmentedImageDatastore`` with rotation +-20
  degrees, x/y translation +-3 px and scale 0.9-1.1 (affine_grid /
  grid_sample per mini-batch, in the read-ahead threads).

Reported: median ms per iteration (``info.time_elapsed / iterations``: the
training loop, reading included) and the ratio memory / folder (1.0: as fast
as memory), plus the one-off set-up of each (listing, the normalization
pass over all images) separately. Timings on a loaded machine are noisy;
the ratio, measured in one run, is what to read.

Usage::

    python bench/folder_vs_memory.py               # 2 epochs x 3 rounds
    python bench/folder_vs_memory.py --quick       # 1 epoch x 1 round
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

import layerlab as ll  # noqa: E402
from layerlab.demo import seed_layers  # noqa: E402


def write_pngs(X: np.ndarray, Y: np.ndarray, folder: str) -> np.ndarray:
    """The digits as PNGs in class folders; returns the uint8 pixels."""
    from PIL import Image
    pixels = np.clip(np.round(X[:, 0] * 255), 0, 255).astype(np.uint8)
    for i, (im, label) in enumerate(zip(pixels, Y)):
        os.makedirs(os.path.join(folder, str(label)), exist_ok=True)
        Image.fromarray(im).save(os.path.join(folder, str(label), f"{i:05d}.png"))
    return pixels


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 epoch, 1 round")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds = 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = common.load_average()
    X, Y, _ = ll.datasets.digits_train()
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "digits")
        t0 = time.perf_counter()
        pixels = write_pngs(X, Y, folder)
        print(f"wrote {len(Y)} PNGs in {time.perf_counter() - t0:.1f} s")
        Xq = (pixels[:, None].astype(np.float32) / 255)
        labels = np.asarray([str(y) for y in Y])
        aug = ll.ImageDataAugmenter(rand_rotation=(-20, 20), rand_x_translation=(-3, 3),
                                    rand_y_translation=(-3, 3), rand_scale=(0.9, 1.1))
        contenders = {
            "memory": lambda: (Xq, labels),
            "folder": lambda: (ll.ImageDatastore(folder),),
            "folder+augment": lambda: (ll.AugmentedImageDatastore(
                (28, 28), ll.ImageDatastore(folder), augmenter=aug),),
        }
        names = list(contenders)
        per_it: dict[str, list[float]] = {n: [] for n in names}
        setup: dict[str, list[float]] = {n: [] for n in names}
        acc: dict[str, float] = {}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                opts = ll.training_options("sgdm", max_epochs=args.epochs, seed=r,
                                           verbose=True, verbose_frequency=10**6)
                t0 = time.perf_counter()
                net, info = ll.train_network(*contenders[name](), seed_layers(), opts,
                                             stream=io.StringIO())
                wall = time.perf_counter() - t0
                per_it[name].append(1e3 * info.time_elapsed / info.iterations)
                setup[name].append(wall - info.time_elapsed)
                acc[name] = float(info.training_accuracy[-5:].mean())
                print(f"round {r + 1} {name:>15}: {per_it[name][-1]:6.1f} ms/iteration, "
                      f"set-up {setup[name][-1]:.1f} s", flush=True)
    med = {n: common.median(v) for n, v in per_it.items()}
    rows = [[n, f"{med[n]:.1f}", f"{med['memory'] / med[n]:.2f}",
             f"{common.median(setup[n]):.1f}", f"{acc[n]:.1f}"] for n in names]
    load_after = common.load_average()
    md = common.markdown_table(["source", "ms / iteration (median)",
                                "speed vs memory", "set-up s", "last accuracy %"], rows)
    md += (f"\n\n{args.epochs} epochs x {args.rounds} rounds, interleaved; load average "
           f"before {load_before}, after {load_after} on {os.cpu_count()} cores.\n")
    print(md)
    common.write_results(args.out, "folder_vs_memory", {
        "per_iteration_ms": per_it, "setup_s": setup, "median_ms": med,
        "ratio_memory_over_folder": {n: med["memory"] / med[n] for n in names},
        "epochs": args.epochs, "rounds": args.rounds,
        "machine": common.machine(torch.device("cpu")),
        "load_average": [load_before, load_after]}, md)


if __name__ == "__main__":
    main()
