"""Study ``disc-init``: a deep MLP on the 2-d disc against the standard
deviation of its initial weights, plain, with batch normalization and with
residual connections (lecture "Going deeper", slides 44-45).

The slide's model, with ``nc = 32`` and ``depth = 16``::

    Linear(2, nc), [BatchNorm1d(nc)], ReLU,
    depth x (Linear(nc, nc), [BatchNorm1d(nc)], ReLU),
    Linear(nc, 2)

trained with cross-entropy and plain SGD (learning rate 0.1), every
parameter drawn ``N(0, std^2)`` ("for p in model.parameters():
p.data.normal_(0, std)": weights, biases and batch normalization's scale
and offset alike). The slide plots test error against std: the baseline
sits near 50% (chance) over most of the range; batch normalization keeps
the error low.

The residual variant replaces each hidden ``Linear, ReLU`` with
``Z = ReLU(X + X W^T + b)`` (the taught block: the layer's output plus its
input, then ReLU), written below as a user-defined layer with the public
:class:`layerlab.Layer` contract.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import layerlab as ll

from .study import Metric, Study

__all__ = ["make_study", "ResidualDense", "disc_mlp", "STDS", "VARIANTS"]

STDS = (0.001, 0.01, 0.1, 1.0, 10.0)
# "batch norm" is the slide's model (BN scale and offset drawn N(0, std^2),
# epsilon 1e-5). The two "cause" variants each remove one suspected cause of
# its failure at small std: scale and offset kept at 1 and 0, or an epsilon
# far below the variances BN divides by (at std 0.001 the pre-BN variances
# of the deep layers are ~1e-11, a millionth of epsilon 1e-5).
VARIANTS = ("baseline", "batch norm", "BN 1/0", "BN eps 1e-12", "residual")
SMALL_EPSILON = 1e-12
# variant -> (scale and offset drawn N(0, std^2)?, epsilon)
BN_VARIANTS = {"batch norm": (True, 1e-5), "BN 1/0": (False, 1e-5),
               "BN eps 1e-12": (True, SMALL_EPSILON)}
CAUSE_VARIANTS = ("BN 1/0", "BN eps 1e-12")
# the cause variants run where the slide's BN fails; from std 0.1 on it
# trains as it is
CAUSE_STDS = (0.001, 0.01)


class ResidualDense(ll.Layer):
    r"""A fully connected layer with an identity skip, then ReLU:

    .. math::  Z = \max(0,\; X + X W^\top + b)

    Shape: ``(N, C)`` to ``(N, C)``. Learnables ``weights`` ``(C, C)`` and
    ``bias`` ``(C,)``, drawn ``N(0, std^2)`` like every parameter of the
    slide's model. Autograd differentiates ``predict`` (no hand-written
    backward needed).
    """

    def __init__(self, width: int, std: float, name: str | None = None):
        super().__init__(name=name, type="Residual fully connected",
                         description=f"{width} features, X + FC(X), then ReLU")
        self.weights = ll.Learnable(torch.randn(width, width) * std)
        self.bias = ll.Learnable(torch.randn(width) * std)

    def predict(self, X):
        return torch.relu(X + torch.nn.functional.linear(X, self.weights, self.bias))


def _batch_norm(width: int, std: float, drawn: bool = True,
                epsilon: float = 1e-5) -> ll.BatchNormalization:
    """Batch normalization as the slide makes it (``drawn``: scale and offset
    ``N(0, std^2)``) or kept at scale 1 and offset 0. The draws are made in
    both cases, so the random stream, and with it every Linear weight, is the
    same in every BN variant of a seed: the variants differ only in BN."""
    bn = ll.BatchNormalization(num_channels=width, epsilon=epsilon)
    scale = torch.randn(width) * std
    offset = torch.randn(width) * std
    if drawn:
        bn.scale = scale
        bn.offset = offset
    return bn


def disc_mlp(variant: str = "baseline", std: float = 1.0, width: int = 32,
             depth: int = 16) -> list[ll.Layer]:
    """The slide's deep MLP as layerlab layers (``variant`` one of
    :data:`VARIANTS`): every Linear weight and bias drawn ``N(0, std^2)``,
    BN's scale and offset too in ``"batch norm"``, kept at 1 and 0 in the
    ``"BN 1/0"`` variants (:data:`BN_VARIANTS`). The residual blocks
    (:class:`ResidualDense`) draw their own weights and biases
    ``N(0, std^2)`` and have no BN: the study does not depend on any
    library default initialization.

    Examples:
        >>> layers = disc_mlp("BN 1/0", std=0.01, depth=2)
        >>> len(layers)
        13
    """
    if variant not in VARIANTS:
        raise ll.LayerError(f"disc_mlp variant: expected one of {VARIANTS}, got {variant!r}")
    g = ll.Gaussian(std)

    def fc(n):
        return ll.FullyConnected(n, weights_initializer=g, bias_initializer=g)

    bn = BN_VARIANTS.get(variant)
    layers: list[ll.Layer] = [ll.FeatureInput(2, normalization="none"), fc(width)]
    if bn:
        layers.append(_batch_norm(width, std, *bn))
    layers.append(ll.ReLU())
    for _ in range(depth):
        if variant == "residual":
            layers.append(ResidualDense(width, std))
            continue
        layers.append(fc(width))
        if bn:
            layers.append(_batch_norm(width, std, *bn))
        layers.append(ll.ReLU())
    layers += [fc(2), ll.Softmax(), ll.Classification()]
    return layers


def _config_name(variant: str, std: float) -> str:
    return f"{variant}, std {std:g}"


def make_study(quick: bool = False) -> Study:
    stds = (0.01, 1.0, 10.0) if quick else STDS
    max_epochs = 15 if quick else 250
    configurations = {_config_name(v, s): dict(variant=v, std=s) for s in stds for v in VARIANTS
                      if v not in CAUSE_VARIANTS or s in CAUSE_STDS}
    # the slide's question (BN and skips against the plain network), then the
    # causes: each changed BN against the slide's BN, at the same std and seed
    comparisons = [(_config_name(v, s), _config_name("baseline", s))
                   for s in stds for v in ("batch norm", "residual")]
    comparisons += [(_config_name(v, s), _config_name("batch norm", s))
                    for s in stds if s in CAUSE_STDS for v in CAUSE_VARIANTS]

    def run(variant: str, std: float, seed: int) -> dict:
        # a fresh draw of the data per repeat (shared by the configurations of
        # that repeat), so the spread includes the sampling of the data set
        (Xtr, Ytr), (Xte, Yte) = ll.datasets.disc_train_test(1000, seed=seed)
        options = ll.training_options(
            "sgdm", momentum=0.0, initial_learn_rate=0.1, l2_regularization=0.0,
            mini_batch_size=100, max_epochs=max_epochs, shuffle="every-epoch",
            verbose=False, seed=seed)
        # With std 0.001 the activations of the deep layers fall below float32's
        # normal range (1e-38); CPUs compute on such denormal numbers up to
        # ~50x slower. Flushing them to zero changes nothing visible (they are
        # zero for every purpose here) and keeps run times comparable.
        torch.set_flush_denormal(True)
        try:
            net, info = ll.train_network(Xtr, Ytr, disc_mlp(variant, std), options)
        except ll.TrainingError:
            # training stopped on a non-finite loss: the network is useless;
            # count it as a constant guess of the training set's majority class
            guess = np.bincount(Ytr).argmax()
            return {"test_error": 100.0 * float((Yte != guess).mean()), "diverged": 1.0,
                    "final_loss": float("nan")}
        finally:
            torch.set_flush_denormal(False)   # PyTorch's default
        pred = ll.classify(net, Xte)
        loss = info.training_loss[-10:]
        return {"test_error": 100.0 * float((pred != Yte).mean()),
                "diverged": float(not np.all(np.isfinite(loss))),
                "final_loss": float(np.mean(loss))}

    return Study(
        "disc-init", run, configurations,
        metrics=[Metric("test_error", "test error (%)", ".1f", better="lower"),
                 Metric("final_loss", "last-epoch training loss", ".3f", better="lower",
                        test=False, plot=False),
                 Metric("diverged", "diverged", ".0f", test=False, plot=False)],
        repeats=2 if quick else 5, comparisons=comparisons,
        figures=[_figure, _gradient_depth_figure],
        default_figure=False,
        title="Deep MLP on the disc: initialization, batch normalization, residuals"
              + (" (quick)" if quick else ""),
        description=(
            "Lecture \"Going deeper\", slides 44-45: a 2-32-...-32-2 MLP with 17 hidden "
            "ReLU layers, every parameter drawn N(0, std^2), trained with plain SGD on the "
            "disc set; test error against std, without and with batch normalization, and with "
            "identity skips around each hidden layer as a third variant."
            + (f" **Quick form: {len(stds)} stds, {max_epochs} epochs, 2 repeats; a smoke "
               f"test, not a result.**" if quick else "")),
        settings={
            "data": "layerlab.datasets.disc_train_test(1000, seed=repeat seed): 1000 training "
                    "and 1000 test points uniform in [-1, 1]^2, label 1 inside the disc of "
                    "radius sqrt(2/pi), both standardised with the training set's statistics",
            "network": "FeatureInput(2) -> FC(32) [-> BN] -> ReLU -> 16 x (FC(32) [-> BN] -> "
                       "ReLU) -> FC(2) -> Softmax -> Classification; residual: the 16 hidden "
                       "blocks are ReLU(X + FC(X))",
            "initialization": "FC weights and biases N(0, std^2), std in "
                              + ", ".join(f"{s:g}" for s in stds)
                              + "; 'batch norm' and 'BN eps 1e-12': BN scale and offset "
                                "N(0, std^2) too, as the slide's `p.data.normal_(0, std)`; "
                                "'BN 1/0' variants: BN scale 1 and offset 0 (the same draws "
                                "are made and discarded, so every FC weight of a seed is the "
                                "same number in all BN variants); residual blocks: their own "
                                "weights and biases N(0, std^2), no BN (stated here, not "
                                "taken from any library default)",
            "batch normalization": "epsilon 1e-5 (MATLAB's and PyTorch's default) or 1e-12 "
                                   "(the 'eps 1e-12' variants), added to the mini-batch "
                                   "variance before dividing by its square root",
            "training": f"SGD without momentum, lr 0.1, no L2, mini-batches of 100, "
                        f"{max_epochs} epochs ({10 * max_epochs} iterations), reshuffled "
                        f"every epoch",
            "metric": "test error in percent on the 1000 test points",
            "numerics": "float32 on the CPU, denormal numbers flushed to zero during training "
                        "(torch.set_flush_denormal) for speed",
        },
        notes=_notes, claim=_claim)


def _figure(result, out):
    from matplotlib.figure import Figure   # no pyplot: the user's backend is left alone

    stds = sorted({r["std"] for r in result.rows})
    fig = Figure(figsize=(6.2, 4.3))
    ax = fig.subplots()
    styles = {"baseline": ("#7f7f7f", "o"), "batch norm": ("#1f77b4", "s"),
              "BN 1/0": ("#2ca02c", "D"), "BN eps 1e-12": ("#9467bd", "v"),
              "residual": ("#d62728", "^")}
    for v in VARIANTS:
        means, sds, xs = [], [], []
        for s in stds:
            c = _config_name(v, s)
            if c not in result.configurations:
                continue
            xs.append(s)
            means.append(result.mean(c, "test_error"))
            sd = result.std(c, "test_error")
            sds.append(0.0 if math.isnan(sd) else sd)
            runs = result.values(c, "test_error")
            ax.plot(np.full(len(runs), s) * np.exp(np.linspace(-0.06, 0.06, len(runs))), runs,
                    styles[v][1], color=styles[v][0], alpha=0.3, ms=3.5)
        ax.errorbar(xs, means, yerr=sds, color=styles[v][0], marker=styles[v][1], capsize=4,
                    lw=1.6, label=v)
    ax.set_xscale("log")
    ax.set_xlabel("weight std")
    ax.set_ylabel("test error (%)")
    ax.set_ylim(-2, 72)
    ax.axhline(50, color="k", lw=0.6, ls=":")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"Deep MLP on the disc, {result.completed_repeats} repeats "
                 f"(mean ± std; dots: runs)",
                 fontsize=9)
    fig.tight_layout()
    fname = "test_error_vs_std.png"
    fig.savefig(f"{out}/{fname}", dpi=110)
    return [(fname, "Test error against the initial weights' standard deviation (log axis); "
                    "the dotted line is chance")]


#: the networks and stds of the gradient-against-depth figure
DEPTH_FIGURE_VARIANTS = ("baseline", "batch norm", "residual")
DEPTH_FIGURE_STDS = (0.01, 1.0)


def gradient_norms_at_initialization(variant: str, std: float, seed: int = 0) -> np.ndarray:
    """``||dL/dX||`` reaching the input of each hidden block (the first
    FullyConnected, then each FullyConnected or residual block, then the
    output FullyConnected) at iteration 1: the network as initialized for
    ``seed``, on the first mini-batch of 100 of that seed's disc set
    (:func:`layerlab.layer_statistics`). The first block's input is the data,
    which has no gradient: NaN."""
    (Xtr, Ytr), _ = ll.datasets.disc_train_test(1000, seed=seed)
    torch.manual_seed(seed)
    net = ll.Network(disc_mlp(variant, std))
    stats = ll.layer_statistics(net, Xtr[:100], Ytr[:100], statistics=["input_gradient_norm"])
    blocks = [i for i, layer in enumerate(net.layers)
              if isinstance(layer, (ll.FullyConnected, ResidualDense))]
    return stats["input_gradient_norm"][0, blocks]


def _gradient_depth_figure(result, out):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.8), layout="constrained")
    axes = fig.subplots(1, len(DEPTH_FIGURE_STDS), sharey=True)
    colors = {"baseline": "#7f7f7f", "batch norm": "#1f77b4", "residual": "#d62728"}
    for ax, std in zip(axes, DEPTH_FIGURE_STDS):
        for v in DEPTH_FIGURE_VARIANTS:
            g = gradient_norms_at_initialization(v, std)
            depth = np.arange(1, len(g) + 1)
            shown = np.isfinite(g) & (g > 0)     # the first block's input is the data: NaN
            ax.plot(depth[shown], g[shown], marker="o", ms=3, color=colors[v], label=v)
            zero = g == 0
            if zero.any():
                ax.plot(depth[zero], np.full(int(zero.sum()), 1e-30), "x", color=colors[v])
        ax.set_yscale("log")
        ax.set_xlabel("block (depth; 1 = first FullyConnected)")
        ax.set_title(f"weight std {std:g}: ||dL/dX|| at iteration 1", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gradient norm reaching the block's input")
    axes[0].legend(fontsize=8)
    fname = "gradient_norm_vs_depth.png"
    fig.savefig(f"{out}/{fname}", dpi=110)
    return [(fname, "The gradient reaching each block's input at iteration 1 (the network as "
                    "initialized for seed 0, first mini-batch), log scale, for the plain "
                    "network, batch normalization and residual blocks at weight std 0.01 "
                    "and 1 (an x at the bottom: exactly zero); this is what explains the "
                    "table: where it vanishes or explodes, SGD cannot train")]


def _claim(result) -> str:
    """Which cause explains batch normalization's failure at small std, in
    one sentence that follows from the paired tests."""
    found = {(c.a, c.b): c for c in result.comparisons() if c.metric == "test_error"}
    small = [s for s in CAUSE_STDS if s < 0.1
             and _config_name("batch norm", s) in result.configurations]
    if not small:
        return ""
    status, told = {}, []
    for v in CAUSE_VARIANTS:
        cs = [found.get((_config_name(v, s), _config_name("batch norm", s))) for s in small]
        if any(c is None or c.n < 2 for c in cs):
            return ""
        # a fix: significantly lower error at every failing std, by 10 points or more;
        # no fix: still near chance (40% or more) at some failing std
        if all(c.significant and c.mean_diff <= -10 for c in cs):
            status[v] = "fix"
        elif any(c.mean_a >= 40 for c in cs):
            status[v] = "no"
        else:
            status[v] = "open"
        told.append(f"{v}: " + ", ".join(f"{c.mean_a:.1f}% at std {s:g}"
                                         for c, s in zip(cs, small)))
    failed = ", ".join(f"{result.mean(_config_name('batch norm', s), 'test_error'):.1f}% at std "
                       f"{s:g}" for s in small)
    cause_cs = [found[(_config_name(v, s), _config_name("batch norm", s))]
                for v in CAUSE_VARIANTS for s in small]
    n = min(c.n for c in cause_cs)
    p_max = max(c.p_holm for c in cause_cs)
    tests = f"paired t-tests over {n} seeds, Holm p <= {p_max:.2g}"
    if "open" in status.values():
        return (f"The slide's batch normalization fails at small initial std ({failed} test "
                f"error); {'; '.join(told)}: large differences, but with {n} paired seeds not "
                f"yet all significant after Holm's correction ({tests}), so the cause is not "
                f"decided yet.")
    if all(v == "fix" for v in status.values()):
        verdict = ("it takes both suspected causes together, tiny drawn scales and epsilon "
                   "1e-5: removing either one alone (scale and offset kept at 1 and 0, or "
                   "epsilon 1e-12) removes the failure")
    elif status["BN 1/0"] == "fix":
        verdict = "the drawn scale and offset explain it, epsilon alone does not"
    elif status["BN eps 1e-12"] == "fix":
        verdict = "epsilon explains it, the drawn scale and offset alone do not"
    else:
        verdict = "neither the drawn scale and offset nor epsilon alone explains it"
    return (f"The slide's batch normalization fails at small initial std ({failed} test "
            f"error) and {verdict} ({'; '.join(told)}; {tests}).")


def _notes(result) -> str:
    diverged = [(r["configuration"], r["repeat"]) for r in result.rows if r["diverged"]]
    lines = ["- The slide's figure (one run per point): the baseline near 50% over most of the "
             "range, batch normalization low across a wide range."]
    lines.append("- Batch normalization's scale and offset are drawn N(0, std^2) too, as the "
                 "slide's code does. With std 0.001 a hidden layer's input to BN (32 inputs "
                 "of size about std x |scale|, times weights of size std) has a variance "
                 "around 1e-11, a millionth of epsilon 1e-5: BN then divides by "
                 "sqrt(epsilon) instead of the standard deviation and shrinks the signal "
                 "instead of normalizing it. The 'BN 1/0' and 'BN eps 1e-12' configurations "
                 "remove one half of that explanation each.")
    for v in CAUSE_VARIANTS:
        for s in CAUSE_STDS:
            c = _config_name(v, s)
            bad = [str(r["seed"]) for r in result.rows
                   if r["configuration"] == c and r["test_error"] >= 25]
            if bad:
                lines.append(f"- {c}: {len(bad)} seed(s) still failed (25% error or more: "
                             f"seed {', '.join(bad)}); the others trained.")
    if diverged:
        lines.append(f"- {len(diverged)} run(s) diverged (non-finite loss) and count as a "
                     f"constant guess: " + ", ".join(f"{c} (repeat {r + 1})"
                                                     for c, r in diverged) + ".")
    else:
        lines.append("- No run diverged (every final training loss was finite).")
    return "\n".join(lines)
