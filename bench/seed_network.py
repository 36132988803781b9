"""Seed-network training: layerlab against a plain hand-written PyTorch loop.

The seed network of the post "Defining Your Own Network Layer": image input
28x28x1 (zero-centred), conv 5x5 with 20 filters, batch normalization, ELU
with one learnable alpha per channel, fully connected 10, softmax and
cross-entropy; SGD with momentum 0.9, L2 1e-4, learning rate 0.01,
mini-batch 128, shuffled once, the incomplete last mini-batch dropped
(39 iterations an epoch, 1170 in the seed's 30 epochs), on
``layerlab.datasets.digits_train()``; test accuracy on ``digits_test()``.

Contenders (each trains from scratch, same seed, same data, same iterations):

``plain``
    The loop a PyTorch user writes: an ``nn.Sequential`` with the ELU as a
    plain ``nn.Module`` written with ``clamp`` and ``exp`` (autograd
    differentiates it), Glorot initial weights as MATLAB's, the data
    preloaded as tensors, zero-centred once and shuffled once, sliced into
    mini-batches (no DataLoader), ``torch.optim.SGD(momentum=0.9,
    weight_decay=1e-4)``, and the loss printed every 50 iterations.
``plain-dataloader``
    The same with a ``TensorDataset`` and ``DataLoader(batch_size=128,
    shuffle=True, drop_last=True)`` (reshuffled every epoch), the other
    common way to write it. Off by default (``--contenders``).
``layerlab``
    ``layerlab.train_network`` with the seed layers
    (``layerlab.demo.seed_layers()``: the built-in ``ELU(20)`` with its
    hand-written backward) and ``training_options("sgdm", ...)``, verbose
    table on (written to a buffer).
``layerlab-user-elu``
    The same with the demo's user-written ``SeedELU`` layer. Off by default.
``bare``
    layerlab's own network and solver driven by the bare minimum loop
    (forward, loss, zero_grad, backward, step; no bookkeeping, no table):
    ``layerlab / bare - 1`` is layerlab's overhead.
``compiled``
    The ``plain`` loop with ``torch.compile(model)`` (default mode). Its
    first iteration compiles; that iteration's time is reported apart as
    ``compile_seconds`` and the ms per iteration are over the others.
``compiled-graphs``
    The same with ``torch.compile(model, mode="reduce-overhead")``: the
    compiled forward and backward replayed as CUDA graphs (a GPU's
    counterpart of layerlab's recorded step; the default contenders on a
    GPU include it).
``layerlab-eager``
    ``layerlab`` with ``training_options(cuda_graphs=False)``: on a GPU,
    what the recorded step saves (the same as ``layerlab`` on the CPU).
``mlp-plain``, ``mlp-layerlab``
    The deep MLP of the experiments (``layerlab.experiments.
    deep_mlp_batchnorm``): 10 x (fully connected 100, batch norm, ELU with
    alpha 1 fixed), fully connected 10, softmax, cross-entropy; plain SGD
    lr 0.1 (no momentum, no L2), mini-batch 100 (50 iterations an epoch),
    the same epochs. Plain: ``nn.Sequential`` of ``Linear``,
    ``BatchNorm1d``, ``nn.ELU``, ``torch.optim.SGD(lr=0.1)``.

Peak memory: after the timed rounds, each contender trains in a fresh
child process (glibc told to map large blocks and return them at once,
so that the resident set follows the live tensors): one warm-up epoch,
then the kernel's peak resident-set counter is reset
(``/proc/self/clear_refs``) and one more epoch (and the test accuracy)
runs; "peak MB" is the process's peak RSS then, "training MB" that peak
minus the RSS before it (the contender's working memory). ``--no-memory``
skips it.

Each contender's time is its training loop's wall clock (the trainer's
``info.time_elapsed``; for the others the same span: after the data are
prepared, until the last step, GPU synchronised) divided by its
iterations. The contenders run interleaved in one process, round after
round (the order rotating each round, so that a slow spell of a shared
machine hits all of them), and the report gives the median over rounds and
the median of the per-round ratios.

Usage::

    python bench/seed_network.py            # 30 epochs (1170 iterations) x 5 rounds, all
                                            # default contenders, peak memory
    python bench/seed_network.py --quick    # CI: 3 epochs x 3 rounds, plain/layerlab/bare
    python bench/seed_network.py --contenders plain,plain-dataloader,layerlab,bare

Results go to ``bench/results/seed_network.{json,md}`` (``--out``).
No timing is asserted: on a shared machine only the ratios mean something.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import sys
import time
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

import layerlab as ll  # noqa: E402
from layerlab.demo import SeedELU, seed_layers  # noqa: E402
from layerlab.training.host_memory import keep_freed_memory  # noqa: E402

BATCH, LR, MOMENTUM, L2 = 128, 0.01, 0.9, 1e-4
CONTENDERS = ("plain", "plain-dataloader", "compiled", "compiled-graphs", "layerlab",
              "layerlab-eager", "layerlab-user-elu", "bare", "mlp-plain", "mlp-layerlab")
DEFAULT_CONTENDERS = ("plain", "compiled", "layerlab", "bare", "mlp-plain", "mlp-layerlab")
# on a GPU: also torch.compile's CUDA-graph mode and layerlab without its CUDA graph
GPU_CONTENDERS = ("plain", "compiled", "compiled-graphs", "layerlab", "layerlab-eager", "bare",
                  "mlp-plain", "mlp-layerlab")
QUICK_CONTENDERS = ("plain", "layerlab", "bare")
MLP_BATCH, MLP_LR = 100, 0.1


# ---- the plain PyTorch loop, as a user writes it ---------------------------
class PlainELU(nn.Module):
    """ELU with one learnable alpha per channel, written as a user would."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.rand(num_channels, 1, 1))

    def forward(self, x):
        return x.clamp(min=0) + self.alpha * (torch.exp(x.clamp(max=0)) - 1)


def plain_model() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(1, 20, 5), nn.BatchNorm2d(20), PlainELU(20),
                          nn.Flatten(), nn.Linear(20 * 24 * 24, 10))
    for m in (model[0], model[4]):          # Glorot weights, zero bias: MATLAB's default
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
    return model


def plain_accuracy(model: nn.Module, X: torch.Tensor, Y: torch.Tensor,
                   mean: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(X[i:i + 1024] - mean).argmax(1) for i in range(0, len(X), 1024)])
    return float((pred == Y).float().mean())


def run_plain(data: dict, epochs: int, seed: int, device: torch.device,
              dataloader: bool = False, batch: int = BATCH, compiled: str | bool = False,
              mlp: bool = False) -> dict[str, Any]:
    torch.manual_seed(seed)
    X, Y = data["X"].to(device), data["Y"].to(device)
    model = (plain_mlp() if mlp else plain_model()).to(device)
    if mlp:
        batch = MLP_BATCH
        opt = torch.optim.SGD(model.parameters(), lr=MLP_LR)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=L2)
    # compiled: True (default mode) or a torch.compile mode ("reduce-overhead":
    # CUDA graphs of the compiled forward and backward)
    train_model = (torch.compile(model) if compiled is True else
                   torch.compile(model, mode=compiled) if compiled else model)
    mean = X.mean(0)
    X = X - mean                                     # zero-centre once, as imageInputLayer
    log = io.StringIO()
    if dataloader:
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y),
                                             batch_size=batch, shuffle=True, drop_last=True)
        batches = lambda: loader  # noqa: E731
    else:
        perm = torch.randperm(len(X), device=device)
        X, Y = X[perm], Y[perm]                      # shuffle once
        batches = lambda: ((X[i:i + batch], Y[i:i + batch])  # noqa: E731
                           for i in range(0, len(X) - batch + 1, batch))
    model.train()
    it = 0
    compile_seconds = None
    common.sync(device)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for xb, yb in batches():
            loss = F.cross_entropy(train_model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            it += 1
            if it == 1 or it % 50 == 0:
                print(f"epoch {epoch + 1} iteration {it} loss {loss.item():.4f}", file=log)
            if compiled and it == 1:
                # the first iteration compiles: report it apart, time the rest
                common.sync(device)
                compile_seconds = time.perf_counter() - t0
                t0 = time.perf_counter()
    common.sync(device)
    seconds = time.perf_counter() - t0
    acc = plain_accuracy(model, data["XTest"].to(device), data["YTest"].to(device), mean)
    res = dict(seconds=seconds, iterations=it - (1 if compiled else 0), accuracy=acc)
    if compiled:
        res["compile_seconds"] = compile_seconds
    return res


def plain_mlp(depth: int = 10, width: int = 100) -> nn.Module:
    """The experiments' deep MLP as a PyTorch user writes it, Glorot weights."""
    mods: list[nn.Module] = [nn.Flatten()]
    d = 28 * 28
    for _ in range(depth):
        mods += [nn.Linear(d, width), nn.BatchNorm1d(width), nn.ELU()]
        d = width
    mods.append(nn.Linear(d, 10))
    model = nn.Sequential(*mods)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


# ---- layerlab ---------------------------------------------------------------
def _layers(user_elu: bool, seed: int) -> list:
    torch.manual_seed(seed)
    return seed_layers(SeedELU(20) if user_elu else None)


def run_layerlab(data: dict, epochs: int, seed: int, device: torch.device,
                 user_elu: bool = False, batch: int = BATCH,
                 layers: list | None = None, cuda_graphs: bool = True) -> dict[str, Any]:
    opts = ll.training_options("sgdm", max_epochs=epochs, seed=seed, verbose=True,
                               mini_batch_size=batch, cuda_graphs=cuda_graphs,
                               execution_environment="gpu" if device.type == "cuda" else "cpu")
    layers = layers if layers is not None else _layers(user_elu, seed)
    net, info = ll.train_network(data["X"], data["Y"], layers, opts,
                                 stream=io.StringIO())
    acc = float((ll.classify(net, data["XTest"]) == data["YTest"].numpy()).mean())
    return dict(seconds=info.time_elapsed, iterations=info.iterations, accuracy=acc,
                final_loss=float(info.training_loss[-1]), step=info.step)


def run_mlp_layerlab(data: dict, epochs: int, seed: int,
                     device: torch.device) -> dict[str, Any]:
    from layerlab.experiments.deep_mlp_batchnorm import deep_mlp
    torch.manual_seed(seed)
    layers = deep_mlp("ELU", batch_norm=True)
    opts = ll.training_options("sgdm", momentum=0.0, initial_learn_rate=MLP_LR,
                               l2_regularization=0.0, mini_batch_size=MLP_BATCH,
                               max_epochs=epochs, seed=seed, verbose=True,
                               execution_environment="gpu" if device.type == "cuda" else "cpu")
    net, info = ll.train_network(data["X"], data["Y"], layers, opts, stream=io.StringIO())
    acc = float((ll.classify(net, data["XTest"]) == data["YTest"].numpy()).mean())
    return dict(seconds=info.time_elapsed, iterations=info.iterations, accuracy=acc,
                step=info.step)


def run_bare(data: dict, epochs: int, seed: int, device: torch.device) -> dict[str, Any]:
    """layerlab's network and solver, in the least loop that trains them."""
    from layerlab.network.network import Network
    from layerlab.training.solvers import make_optimizer
    layers = _layers(False, seed)
    torch.manual_seed(seed)                          # as train_network does
    net = Network(copy.deepcopy(layers)).to(device)
    X = data["X"].to(device)
    net.input_layer.compute_normalization(X)
    T = net.output_layer.prepare_targets(data["Y"].numpy(), len(X)).to(device)
    opt = make_optimizer(net, ll.training_options("sgdm", max_epochs=epochs))
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(X), generator=gen).to(device)
    X, T = X[perm], T[perm]
    n = len(X) // BATCH * BATCH
    net.train()
    it = 0
    common.sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, n, BATCH):
            loss = net.loss(net(X[i:i + BATCH], logits=True), T[i:i + BATCH], from_logits=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
    common.sync(device)
    seconds = time.perf_counter() - t0
    net.eval()
    acc = float((net.classify(data["XTest"]) == data["YTest"].numpy()).mean())
    return dict(seconds=seconds, iterations=it, accuracy=acc)


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "plain": run_plain,
    "plain-dataloader": lambda *a: run_plain(*a, dataloader=True),
    "layerlab": run_layerlab,
    "layerlab-user-elu": lambda *a: run_layerlab(*a, user_elu=True),
    "bare": run_bare,
    "compiled": lambda *a: run_plain(*a, compiled=True),
    "compiled-graphs": lambda *a: run_plain(*a, compiled="reduce-overhead"),
    "layerlab-eager": lambda *a: run_layerlab(*a, cuda_graphs=False),
    "mlp-plain": lambda *a: run_plain(*a, mlp=True),
    "mlp-layerlab": run_mlp_layerlab,
}


# ---- the benchmark ------------------------------------------------------------
def load_data() -> dict[str, torch.Tensor]:
    X, Y, _ = ll.datasets.digits_train()
    XT, YT, _ = ll.datasets.digits_test()
    return dict(X=torch.as_tensor(X), Y=torch.as_tensor(Y),
                XTest=torch.as_tensor(XT), YTest=torch.as_tensor(YT))


def benchmark(contenders: list[str], epochs: int, rounds: int, seed: int,
              device: torch.device, echo=print) -> dict[str, Any]:
    data = load_data()
    # every contender runs with the allocator settings layerlab's training
    # makes (glibc keeps freed memory: no page faults per step), so the plain
    # loops get them too and the ratios measure the computation alone
    keep_freed_memory()
    # warm-up: first calls pay for allocator growth and one-time set-up
    warm = {c: RUNNERS[c](data, 1, seed, device) for c in contenders}
    runs: dict[str, list[dict]] = {c: [] for c in contenders}
    for r in range(rounds):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            res = RUNNERS[c](data, epochs, seed + r, device)
            res["ms_per_iteration"] = 1e3 * res["seconds"] / res["iterations"]
            res["round"] = r + 1
            runs[c].append(res)
            echo(f"  round {r + 1}/{rounds} {c:<18} {res['ms_per_iteration']:7.2f} ms/iteration"
                 f"  test accuracy {res['accuracy']:.4f}"
                 + (f"  ({res['step']})" if res.get("step", "eager").startswith("CUDA") else ""))
    summary = {c: dict(median_ms_per_iteration=common.median([x["ms_per_iteration"] for x in v]),
                       median_accuracy=common.median([x["accuracy"] for x in v]),
                       accuracies=[x["accuracy"] for x in v],
                       iterations=v[0]["iterations"]) for c, v in runs.items()}
    for c, v in runs.items():
        if "compile_seconds" in v[0]:
            # the warm-up's compile is the cold one; later rounds reuse its caches
            summary[c]["compile_seconds"] = [warm[c]["compile_seconds"]] + \
                [x["compile_seconds"] for x in v]

    def ratio(a: str, b: str) -> dict[str, float] | None:
        if a not in runs or b not in runs:
            return None
        per_round = [x["ms_per_iteration"] / y["ms_per_iteration"]
                     for x, y in zip(runs[a], runs[b])]
        return dict(of_medians=summary[a]["median_ms_per_iteration"]
                    / summary[b]["median_ms_per_iteration"],
                    median_per_round=common.median(per_round), per_round=per_round)

    ratios = {"plain / layerlab (speed-up)": ratio("plain", "layerlab"),
              "plain-dataloader / layerlab (speed-up)": ratio("plain-dataloader", "layerlab"),
              "layerlab-user-elu / layerlab": ratio("layerlab-user-elu", "layerlab"),
              "plain / layerlab-user-elu (speed-up)": ratio("plain", "layerlab-user-elu"),
              "layerlab / bare (1 + overhead)": ratio("layerlab", "bare"),
              "compiled / layerlab (speed-up over torch.compile)": ratio("compiled", "layerlab"),
              "plain / compiled (torch.compile's speed-up)": ratio("plain", "compiled"),
              "mlp-plain / mlp-layerlab (deep MLP speed-up)": ratio("mlp-plain", "mlp-layerlab"),
              "plain / layerlab-eager (speed-up without CUDA graphs)":
                  ratio("plain", "layerlab-eager"),
              "layerlab-eager / layerlab (CUDA graphs' speed-up)":
                  ratio("layerlab-eager", "layerlab"),
              "compiled-graphs / layerlab (speed-up over torch.compile "
              "reduce-overhead)": ratio("compiled-graphs", "layerlab")}
    return dict(runs=runs, summary=summary,
                ratios={k: v for k, v in ratios.items() if v is not None})


# ---- peak memory, one fresh process per contender ----------------------------
def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(field)


def memory_child(contender: str, epochs: int, seed: int, device: torch.device) -> dict:
    """Train ``contender`` once in this (fresh) process; peak RSS in MB."""
    data = load_data()
    RUNNERS[contender](data, 1, seed, device)   # warm-up: libraries' one-time buffers
    before = _rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                       # reset VmHWM, the peak RSS, to the current RSS
    RUNNERS[contender](data, epochs, seed, device)
    peak = _rss_mb("VmHWM")
    return dict(peak_mb=peak, training_mb=peak - before, rss_before_mb=before)


def peak_memory(contenders: list[str], epochs: int, seed: int, device: torch.device,
                threads: int | None, echo=print) -> dict[str, dict]:
    import json
    import subprocess
    out = {}
    for c in contenders:
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", c,
               "--epochs", str(epochs), "--seed", str(seed), "--device", str(device)]
        if threads:
            cmd += ["--threads", str(threads)]
        try:
            # large blocks mmapped and returned at once: the RSS follows the
            # live tensors, so its peak is the training's working set
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            out[c] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (subprocess.CalledProcessError, OSError, ValueError, IndexError) as exc:
            out[c] = dict(error=f"{type(exc).__name__}: {exc}")
            echo(f"  memory of {c}: failed ({exc})")
            continue
        echo(f"  memory of {c:<18} peak {out[c]['peak_mb']:7.1f} MB, "
             f"training {out[c]['training_mb']:6.1f} MB")
    return out


def to_markdown(result: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    m = result["machine"]
    lines = ["# Seed-network training: layerlab vs a plain PyTorch loop\n",
             f"Command: `{command}`  ",
             f"Machine: {m['cpu']} ({m['cpu_count']} CPUs), device {m['device']}"
             + (f" ({m['gpu']})" if "gpu" in m else "")
             + f", torch {m['torch']}, {m['torch_threads']} threads  ",
             f"Load average (1/5/15 min) before: {result['load_before']}, "
             f"after: {result['load_after']}  ",
             f"{args.epochs} epochs ({result['summary'][args.contenders[0]]['iterations']} "
             f"iterations) per run, {args.rounds} interleaved rounds, medians over rounds.\n"]
    rows = [[c, s["median_ms_per_iteration"],
             ", ".join(f"{x['ms_per_iteration']:.2f}" for x in result["runs"][c]),
             s["iterations"], f"{s['median_accuracy']:.4f}",
             ", ".join(f"{a:.4f}" for a in s["accuracies"]),
             ", ".join(f"{x:.1f}" for x in s["compile_seconds"]) if "compile_seconds" in s
             else ""]
            for c, s in result["summary"].items()]
    lines.append(common.markdown_table(
        ["contender", "median ms / iteration", "ms / iteration per round", "iterations",
         "median test accuracy", "test accuracy per round",
         "compile s (warm-up, then per round)"], rows))
    rrows = [[k, f"{v['of_medians']:.3f}", f"{v['median_per_round']:.3f}",
              ", ".join(f"{x:.3f}" for x in v["per_round"])]
             for k, v in result["ratios"].items()]
    lines.append(common.markdown_table(
        ["ratio", "of the medians", "median per round", "per round"], rrows))
    mem = result.get("memory")
    if mem:
        lines.append(f"Peak memory: one run of {mem['epochs']} epoch(s) per contender in a "
                     f"fresh process (peak RSS during training; training MB = that peak "
                     f"minus the RSS before training).\n")
        lines.append(common.markdown_table(
            ["contender", "peak MB", "training MB"],
            [[c, v.get("peak_mb", v.get("error")), v.get("training_mb", "")]
             for c, v in mem["contenders"].items()]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short form for CI: 3 epochs (117 iterations) x 3 rounds")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 30)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds (default 5; 3 with --quick)")
    p.add_argument("--contenders", default=None,
                   help=f"comma-separated, from {', '.join(CONTENDERS)} (default "
                        f"{','.join(DEFAULT_CONTENDERS)}; with --quick "
                        f"{','.join(QUICK_CONTENDERS)})")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory runs (default: on, off with --quick)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: PyTorch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results"),
                   help="folder for seed_network.json / .md (default bench/results)")
    args = p.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 30)
    # five rounds: the median of five per-round ratios is steadier on a
    # shared machine, where one slow spell can swing a round by 40%
    args.rounds = args.rounds or (3 if args.quick else 5)
    device = common.pick_device(args.device)
    if args.contenders is None:
        args.contenders = ",".join(QUICK_CONTENDERS if args.quick else
                                   GPU_CONTENDERS if device.type == "cuda" else
                                   DEFAULT_CONTENDERS)
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in args.contenders if c not in CONTENDERS]
    if bad:
        p.error(f"unknown contender(s) {bad}; choose from {list(CONTENDERS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        import json
        print(json.dumps(memory_child(args.memory_child, args.epochs, args.seed, device)))
        return 0
    command = "python bench/seed_network.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_before = common.load_average()
    print(f"Seed network, {args.epochs} epochs x {args.rounds} rounds on {device} "
          f"({torch.get_num_threads()} threads), load average {load_before}")
    t0 = time.perf_counter()
    result = benchmark(args.contenders, args.epochs, args.rounds, args.seed, device)
    if not (args.no_memory or args.quick):
        print("peak memory (one epoch per contender, fresh processes):")
        result["memory"] = dict(epochs=1, contenders=peak_memory(
            args.contenders, 1, args.seed, device, args.threads))
    result.update(machine=common.machine(device), load_before=load_before,
                  load_after=common.load_average(), command=command.strip(),
                  wall_seconds=time.perf_counter() - t0,
                  settings=dict(epochs=args.epochs, rounds=args.rounds, seed=args.seed,
                                batch=BATCH, lr=LR, momentum=MOMENTUM, l2=L2))
    print()
    for c, s in result["summary"].items():
        print(f"{c:<18} median {s['median_ms_per_iteration']:7.2f} ms/iteration, "
              f"test accuracy {s['median_accuracy']:.4f}"
              + (f", compile {', '.join(f'{x:.1f}' for x in s['compile_seconds'])} s"
                 if "compile_seconds" in s else ""))
    for k, v in result["ratios"].items():
        print(f"{k:<50} {v['of_medians']:.3f}  (median per round {v['median_per_round']:.3f};"
              f" rounds {', '.join(f'{x:.2f}' for x in v['per_round'])})")
    paths = common.write_results(args.out, "seed_network", result,
                                 to_markdown(result, args, command.strip()))
    print(f"load average after: {result['load_after']}; results: {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
