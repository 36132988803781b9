"""Per-op time of one training step of the seed network (torch.profiler).

Profiles ``--steps`` steps of layerlab's network and solver (the ``bare``
loop of ``seed_network.py``: forward, loss, zero_grad, backward, step) and,
with ``--plain``, of the plain PyTorch loop, after a warm-up, and prints the
ops by self CPU time (ms per step).

Usage::

    python bench/profile_step.py                 # layerlab, 50 steps
    python bench/profile_step.py --plain         # and the plain loop
    python bench/profile_step.py --rows 25 --out bench/results/profile_step.md
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402
import seed_network as seed  # noqa: E402

import layerlab as ll  # noqa: E402


def layerlab_step(data: dict, batch: int = seed.BATCH):
    """A closure running one layerlab training step on the next mini-batch."""
    from layerlab.network.network import Network
    from layerlab.training.solvers import make_optimizer
    net = Network(copy.deepcopy(seed._layers(False, 0)))
    X = data["X"]
    net.input_layer.compute_normalization(X)
    T = net.output_layer.prepare_targets(data["Y"].numpy(), len(X))
    opt = make_optimizer(net, ll.training_options("sgdm"))
    net.train()
    state = {"i": 0}

    def step():
        i = state["i"]
        state["i"] = (i + batch) % (len(X) // batch * batch)
        loss = net.loss(net(X[i:i + batch], logits=True), T[i:i + batch], from_logits=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def plain_step(data: dict, batch: int = seed.BATCH):
    torch.manual_seed(0)
    model = seed.plain_model()
    opt = torch.optim.SGD(model.parameters(), lr=seed.LR, momentum=seed.MOMENTUM,
                          weight_decay=seed.L2)
    X = data["X"] - data["X"].mean(0)
    Y = data["Y"]
    state = {"i": 0}

    def step():
        i = state["i"]
        state["i"] = (i + batch) % (len(X) // batch * batch)
        loss = F.cross_entropy(model(X[i:i + batch]), Y[i:i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def profile_table(step, steps: int, rows: int) -> tuple[str, float]:
    for _ in range(10):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    events.sort(key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    out = [[e.key, e.count // steps, e.self_cpu_time_total / 1e3 / steps,
            100 * e.self_cpu_time_total / 1e3 / steps / total] for e in events[:rows]]
    return common.markdown_table(["op", "calls / step", "self ms / step", "%"], out), total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--plain", action="store_true", help="profile the plain loop too")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = seed.load_data()
    text = [f"Load average before: {common.load_average()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {args.steps} steps\n"]
    contenders = [("layerlab", layerlab_step)] + ([("plain", plain_step)] if args.plain else [])
    for name, make in contenders:
        table, total = profile_table(make(data), args.steps, args.rows)
        text.append(f"## {name}: {total:.2f} ms / step (sum of self times)\n\n{table}")
    text.append(f"Load average after: {common.load_average()}")
    print("\n".join(text))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(text) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
