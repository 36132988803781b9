"""Training throughput (images per second) against mini-batch size and depth.

1. The seed network (bench/seed_network.py) trained by
   ``layerlab.train_network`` and by the plain PyTorch loop, at mini-batch
   sizes 32 to 1024 (same epochs of ``digits_train()`` each).
2. The deep MLP of the experiments (``layerlab.experiments.deep_mlp_batchnorm
   .deep_mlp``: ImageInput -> depth x (FullyConnected(100) -> BatchNormalization
   -> ReLU) -> FullyConnected(10) -> Softmax -> Classification), trained by
   ``layerlab.train_network`` at mini-batch 100, for several depths.

Throughput = images trained / training-loop wall clock (``info.time_elapsed``;
the plain loop timed over the same span). Contenders and sizes are
interleaved round after round in one process and the median over rounds is
reported; on a shared machine only the shape of the curves and the ratios
mean something.

Usage::

    python bench/throughput.py              # 2 epochs a run, 2 rounds
    python bench/throughput.py --quick      # 1 epoch, 1 round
    python bench/throughput.py --batches 32 128 512 --depths 2 10 40

Writes ``bench/results/throughput.{json,md,png}`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402
import seed_network as seed  # noqa: E402

from layerlab.experiments.deep_mlp_batchnorm import deep_mlp  # noqa: E402

BATCHES = (32, 64, 128, 256, 512, 1024)
DEPTHS = (2, 5, 10, 20, 40)
MLP_BATCH = 100


def images_per_second(res: dict, batch: int) -> float:
    return res["iterations"] * batch / res["seconds"]


def sweep_batches(data, batches, epochs, rounds, device, echo=print) -> dict:
    rates: dict[str, dict[int, list[float]]] = {"layerlab": {}, "plain": {}}
    for r in range(rounds):
        for b in (batches if r % 2 == 0 else batches[::-1]):
            for c in (("layerlab", "plain") if r % 2 == 0 else ("plain", "layerlab")):
                run = seed.run_layerlab if c == "layerlab" else seed.run_plain
                res = run(data, epochs, r, device, batch=b)
                v = images_per_second(res, b)
                rates[c].setdefault(b, []).append(v)
                echo(f"  round {r + 1} batch {b:>5} {c:<9} {v:9.0f} images/s")
    return {c: {b: common.median(v) for b, v in sorted(d.items())} for c, d in rates.items()}


def sweep_depths(data, depths, epochs, rounds, device, echo=print) -> dict[int, float]:
    rates: dict[int, list[float]] = {}
    for r in range(rounds):
        for d in (depths if r % 2 == 0 else depths[::-1]):
            torch.manual_seed(r)
            res = seed.run_layerlab(data, epochs, r, device, batch=MLP_BATCH,
                                    layers=deep_mlp("ReLU", batch_norm=True, depth=d))
            v = images_per_second(res, MLP_BATCH)
            rates.setdefault(d, []).append(v)
            echo(f"  round {r + 1} depth {d:>3} {v:9.0f} images/s")
    return {d: common.median(v) for d, v in sorted(rates.items())}


def figure(result: dict, path: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for c, d in result["batch"].items():
        a1.plot(list(d), list(d.values()), "o-", label=c)
    a1.set_xscale("log", base=2)
    a1.set_xlabel("mini-batch size")
    a1.set_ylabel("training images / s")
    a1.set_title("Seed network")
    a1.legend()
    d = result["depth"]
    a2.plot(list(d), list(d.values()), "o-", label="layerlab")
    a2.set_xlabel("depth (FC-BN-ReLU blocks, width 100)")
    a2.set_ylabel("training images / s")
    a2.set_title(f"Deep MLP, mini-batch {MLP_BATCH}")
    m = result["machine"]
    fig.suptitle(f"{m['cpu']}, {m['device']}, {m['torch_threads']} threads, "
                 f"load {result['load_before']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def to_markdown(result: dict) -> str:
    m = result["machine"]
    batch = result["batch"]
    sizes = list(batch["layerlab"])
    rows = [[b, f"{batch['layerlab'][b]:.0f}", f"{batch['plain'][b]:.0f}",
             f"{batch['layerlab'][b] / batch['plain'][b]:.2f}"] for b in sizes]
    out = ["# Training throughput\n",
           f"Command: `{result['command']}`  ",
           f"Machine: {m['cpu']} ({m['cpu_count']} CPUs), device {m['device']}, "
           f"torch {m['torch']}, {m['torch_threads']} threads  ",
           f"Load average before: {result['load_before']}, after: {result['load_after']}\n",
           "## Seed network, images/s against mini-batch size\n",
           common.markdown_table(["mini-batch", "layerlab", "plain PyTorch",
                                  "layerlab / plain"], rows),
           f"## Deep MLP (FC(100)-BN-ReLU blocks), mini-batch {MLP_BATCH}, layerlab\n",
           common.markdown_table(["depth", "images/s"],
                                 [[d, f"{v:.0f}"] for d, v in result["depth"].items()])]
    if result.get("figure"):
        out.append(f"![throughput]({os.path.basename(result['figure'])})\n")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 epoch a run, 1 round")
    p.add_argument("--epochs", type=int, default=None, help="epochs a run (default 2)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2)")
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    p.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results"))
    args = p.parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 2)
    rounds = args.rounds or (1 if args.quick else 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.pick_device(args.device)
    command = ("python bench/throughput.py "
               + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    load_before = common.load_average()
    print(f"Throughput, {epochs} epoch(s) a run, {rounds} round(s), on {device}, "
          f"load average {load_before}")
    t0 = time.perf_counter()
    data = seed.load_data()
    seed.run_layerlab(data, 1, 0, device)          # warm-up
    seed.run_plain(data, 1, 0, device)
    result = dict(batch=sweep_batches(data, args.batches, epochs, rounds, device),
                  depth=sweep_depths(data, args.depths, epochs, rounds, device))
    result.update(machine=common.machine(device), load_before=load_before,
                  load_after=common.load_average(), command=command,
                  wall_seconds=time.perf_counter() - t0,
                  settings=dict(epochs=epochs, rounds=rounds, mlp_batch=MLP_BATCH))
    os.makedirs(args.out, exist_ok=True)
    result["figure"] = figure(result, os.path.join(args.out, "throughput.png"))
    md = to_markdown(result)
    print()
    print(md)
    paths = common.write_results(args.out, "throughput", result, md)
    print(f"results: {', '.join(paths + ([result['figure']] if result['figure'] else []))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
