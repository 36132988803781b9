"""Hand-written backward vs the autograd composite, forward + backward.

For each layer with a hand-written ``backward`` (ELU, LeakyReLU, PReLU,
CReLU, Maxout, BatchNormalization with ``backward="formula"``) this times one
training forward and backward pass of the built-in layer and of the same
function written with elementary PyTorch ops and differentiated by autograd
(the "composite"), and counts the bytes each keeps for the backward pass
(tensors saved by autograd, ``saved_tensors_hooks``, shared storage counted
once). BatchNormalization's native mode (PyTorch's fused op) is shown too.

Run on an idle machine (timings on a shared machine are noisy; contenders
are interleaved and the best of the repeats is reported)::

    python bench/layers.py                 # the seed network's size, 128x20x24x24
    python bench/layers.py --shape 64 16 28 28 --repeats 30
"""

from __future__ import annotations

import argparse
import time

import torch

import layerlab as ll


def per_channel(p, X):
    return p.view(1, -1, *([1] * (X.dim() - 2)))


# ---- the composites: the same functions from elementary ops ---------------
def elu_composite(X, alpha):
    a = per_channel(alpha, X)
    return X.clamp(min=0) + a * (X.clamp(max=0).exp() - 1)


def leaky_composite(X, scale):
    return X.clamp(min=0) + per_channel(scale, X) * X.clamp(max=0)


def crelu_composite(X):
    return torch.cat([torch.relu(X), torch.relu(-X)], dim=1)


def maxout_composite(X, k=2):
    # amax: faster than max(dim).values, whose indices cost much on CPU
    N, C = X.shape[:2]
    return X.view(N, C // k, k, *X.shape[2:]).amax(dim=2)


def bn_composite(X, gamma, beta, eps=1e-5):
    dims = [0, 2, 3]
    mean = X.mean(dim=dims, keepdim=True)
    var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
    return per_channel(gamma, X) * (X - mean) / torch.sqrt(var + eps) + per_channel(beta, X)


def cases(shape):
    N, C, H, W = shape
    elu = ll.ELU(C)
    leaky = ll.LeakyReLU(0.01)
    prelu = ll.PReLU(C)
    crelu = ll.CReLU()
    maxout = ll.Maxout(2)
    bn_formula = ll.BatchNormalization(num_channels=C, backward="formula")
    bn_native = ll.BatchNormalization(num_channels=C, backward="native")
    g, b = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
    a_elu = elu.alpha.detach().clone().requires_grad_()
    a_pre = prelu.scale.detach().clone().requires_grad_()
    s_fix = torch.full((1,), 0.01)
    return [
        ("ELU (per-channel alpha)", lambda X: elu(X), lambda X: elu_composite(X, a_elu)),
        ("LeakyReLU (fixed 0.01)", lambda X: leaky(X), lambda X: leaky_composite(X, s_fix)),
        ("PReLU (per-channel)", lambda X: prelu(X), lambda X: leaky_composite(X, a_pre)),
        ("CReLU", lambda X: crelu(X), crelu_composite),
        ("Maxout (2 pieces)", lambda X: maxout(X), maxout_composite),
        ("BatchNorm formula", lambda X: bn_formula(X), lambda X: bn_composite(X, g, b)),
        ("BatchNorm native", lambda X: bn_native(X), lambda X: bn_composite(X, g, b)),
    ]


def saved_bytes(fn, X) -> int:
    """Bytes autograd keeps for the backward of ``fn(X)``."""
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(X)
    return sum(seen.values())


def step(fn, X, G) -> float:
    t0 = time.perf_counter()
    Z = fn(X)
    Z.backward(G)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[128, 20, 24, 24],
                        metavar=("N", "C", "H", "W"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = tuple(args.shape)
    print(f"input {shape}, float32, {torch.get_num_threads()} threads, "
          f"best of {args.repeats} (forward + backward)")
    print(f"{'layer':<26}{'hand ms':>9}{'autograd ms':>13}{'ratio':>7}"
          f"{'hand MB':>9}{'autograd MB':>13}{'ratio':>7}")
    best = {}
    for label, hand, comp in cases(shape):
        X = torch.randn(shape, requires_grad=True)
        Zshape = hand(X).shape
        G = torch.randn(Zshape)
        for _ in range(3):                       # warm up both
            step(hand, X, G), step(comp, X, G)
        th, tc = [], []
        for _ in range(args.repeats):            # interleaved
            th.append(step(hand, X, G))
            tc.append(step(comp, X, G))
        # the best of the repeats: on a shared machine the median is noisy
        mh, mc = min(th) * 1e3, min(tc) * 1e3
        bh, bc = saved_bytes(hand, X) / 2**20, saved_bytes(comp, X) / 2**20
        best[label] = mh
        print(f"{label:<26}{mh:>9.2f}{mc:>13.2f}{mc / mh:>7.2f}"
              f"{bh:>9.2f}{bc:>13.2f}{bc / max(bh, 1e-9):>7.2f}")
    print("ratio = autograd / hand-written (> 1: the hand-written one is faster / smaller)")
    print(f"BatchNorm formula / native time: "
          f"{best['BatchNorm formula'] / best['BatchNorm native']:.2f}")
    print("hand MB counts what training keeps for the hand-written backward (the layer's backward_uses: X, Z, memory)")
    conv_weight_gradient(args.repeats)


def conv_weight_gradient(repeats: int) -> None:
    """The seed's first layer (1 -> 20 channels, 5x5, N=128): oneDNN's own
    weight gradient vs the swapped convolution ``conv2d(X^T, G^T)^T`` that
    ``Convolution2d.backward`` used for 1-2 input channels on the CPU before
    torch 2.13 (now oneDNN's own, which measured faster)."""
    import torch.nn.functional as F
    X, W, G = torch.randn(128, 1, 28, 28), torch.randn(20, 1, 5, 5), torch.randn(128, 20, 24, 24)

    def onednn():
        return torch.ops.aten.convolution_backward(G, X, W, None, [1, 1], [0, 0], [1, 1], False,
                                                   [0, 0], 1, [False, True, False])[1]

    def swapped():
        return F.conv2d(X.transpose(0, 1), G.transpose(0, 1)).transpose(0, 1).contiguous()

    torch.testing.assert_close(onednn(), swapped(), rtol=1e-3, atol=1e-2)
    times = {"oneDNN": [], "swapped": []}
    for _ in range(repeats):                     # interleaved
        for name, fn in (("oneDNN", onednn), ("swapped", swapped)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) * 1e3 for k, v in times.items()}
    print(f"conv 1->20 5x5 weight gradient, N=128: oneDNN {best['oneDNN']:.2f} ms, swapped "
          f"{best['swapped']:.2f} ms (Convolution2d uses oneDNN's)")


if __name__ == "__main__":
    main()
