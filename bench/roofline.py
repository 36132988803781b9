"""A roofline for the seed network's training step on this CPU.

1. Measures this machine: single-precision matrix-product rate (GFLOP/s,
   ``torch.mm`` of 1024 x 1024 matrices), memory bandwidth (GB/s, read +
   write of a ``copy_`` into an existing tensor) for a tensor the size of the seed's activations
   (5.9 MB, which may sit in cache) and for 256 MB (main memory), and the
   rate of ``exp2`` (the ELU's transcendental), with the load average.
2. Counts, from the seed network's shapes (N=128, 1x28x28 -> conv 5x5x20 ->
   BN -> ELU -> FC 10), the FLOPs and the bytes each operation of one
   training step must at least move (every layer reads its inputs and
   writes its outputs once; batch norm and its backward read their input
   twice: statistics, then the normalisation).
3. The floor: each operation takes at least ``max(FLOPs / rate, bytes /
   bandwidth)`` (plus ``elements / exp2 rate`` for the ELU); their sum is
   the step's floor in ms. ``--step-ms`` compares a measured step with it.

Usage::

    python bench/roofline.py                   # PyTorch's thread count
    python bench/roofline.py --threads 1
    python bench/roofline.py --step-ms 7.9     # layerlab's distance to the floor

Writes ``bench/results/roofline.{json,md}`` (``--out``). On a shared
machine the rates read low: note the load average it prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as common  # noqa: E402

F32 = 4


def best_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(repeats: int) -> dict[str, float]:
    n = 1024
    A, B = torch.randn(n, n), torch.randn(n, n)
    gflops = 2 * n ** 3 / best_seconds(lambda: torch.mm(A, B), repeats) / 1e9
    act = torch.randn(128, 20, 24, 24)                   # the seed's activation, 5.9 MB
    big = torch.randn(64 * 2 ** 20)                      # 256 MB
    # copy into a buffer that already exists: a fresh one would time page faults
    act_out, big_out = torch.empty_like(act), torch.empty_like(big)
    bw_act = 2 * act.numel() * F32 / best_seconds(lambda: act_out.copy_(act), repeats * 5) / 1e9
    bw_big = 2 * big.numel() * F32 / best_seconds(lambda: big_out.copy_(big),
                                                  max(3, repeats // 4)) / 1e9
    exp2 = act.numel() / best_seconds(lambda: torch.exp2(act), repeats * 5) / 1e9
    return dict(matmul_gflops=gflops, bandwidth_activation_gbs=bw_act,
                bandwidth_dram_gbs=bw_big, exp2_gelements_per_s=exp2)


def seed_step_ops(N: int = 128, C: int = 20, H: int = 24, K: int = 5, classes: int = 10):
    """(op, FLOPs, bytes, transcendental elements) of one training step."""
    act = N * C * H * H                       # elements of one activation tensor
    a = act * F32                              # its bytes
    x = N * (H + K - 1) ** 2 * F32             # the input mini-batch
    D = C * H * H
    conv = 2 * act * K * K                     # multiply-adds of the convolution
    fc = 2 * N * D * classes
    w_fc = classes * D * F32
    params = (C * K * K + C + 2 * C + C + classes * D + classes) * F32
    return [
        ("conv forward", conv, x + a, 0),
        ("batch norm forward (stats + normalise)", 6 * act, 3 * a, 0),
        ("ELU forward (Z and its memory)", 4 * act, 3 * a, act),
        ("FC forward", fc, a + w_fc, 0),
        ("FC backward dL/dX", fc, w_fc + a, 0),
        ("FC backward dL/dW", fc, a + w_fc, 0),
        ("ELU backward", 6 * act, 4 * a, 0),
        ("batch norm backward", 8 * act, 5 * a, 0),
        ("conv backward dL/dW", conv, x + a, 0),
        ("SGDM update", 6 * params // F32, 5 * params, 0),
    ]


def floor(rates: dict[str, float], bandwidth_key: str):
    rows, total = [], 0.0
    P = rates["matmul_gflops"] * 1e9
    B = rates[bandwidth_key] * 1e9
    E = rates["exp2_gelements_per_s"] * 1e9
    for name, flops, nbytes, trans in seed_step_ops():
        t_c, t_m = flops / P + trans / E, nbytes / B
        t = max(t_c, t_m)
        total += t
        rows.append([name, flops / 1e6, nbytes / 1e6, 1e3 * t_c, 1e3 * t_m, 1e3 * t,
                     "compute" if t_c > t_m else "memory"])
    return rows, 1e3 * total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--step-ms", type=float, action="append", default=[],
                   help="a measured ms / iteration to compare (repeatable, e.g. plain, layerlab)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = common.load_average()
    rates = measure(args.repeats)
    load_after = common.load_average()
    flops = sum(o[1] for o in seed_step_ops())
    nbytes = sum(o[2] for o in seed_step_ops())
    lines = ["# Roofline of the seed network's training step\n",
             f"Machine: {common.cpu_model()}, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}; load average before {load_before}, after {load_after}\n",
             common.markdown_table(["measured", "value"], [
                 ["matmul (1024^2 sgemm), GFLOP/s", rates["matmul_gflops"]],
                 ["bandwidth, 5.9 MB tensor (read + write), GB/s",
                  rates["bandwidth_activation_gbs"]],
                 ["bandwidth, 256 MB tensor (read + write), GB/s", rates["bandwidth_dram_gbs"]],
                 ["exp2, G elements/s", rates["exp2_gelements_per_s"]]]),
             f"Per step: {flops / 1e9:.3f} GFLOP, {nbytes / 1e6:.0f} MB moved at least.\n"]
    result = dict(rates=rates, load_before=load_before, load_after=load_after,
                  threads=torch.get_num_threads(), gflop_per_step=flops / 1e9,
                  mb_per_step=nbytes / 1e6, floors={})
    for key, label in (("bandwidth_activation_gbs", "activation-size (cache) bandwidth"),
                       ("bandwidth_dram_gbs", "main-memory bandwidth")):
        rows, total = floor(rates, key)
        result["floors"][key] = total
        lines.append(f"## Floor with the {label}: {total:.2f} ms / step\n")
        lines.append(common.markdown_table(
            ["op", "MFLOP", "MB", "compute ms", "memory ms", "floor ms", "bound"], rows))
    for ms in args.step_ms:
        lines.append(f"A measured step of {ms:.2f} ms is "
                     f"{ms / result['floors']['bandwidth_activation_gbs']:.1f}x the cache floor "
                     f"and {ms / result['floors']['bandwidth_dram_gbs']:.1f}x the "
                     f"main-memory floor.\n")
    text = "\n".join(lines)
    print(text)
    common.write_results(args.out, "roofline", result, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
