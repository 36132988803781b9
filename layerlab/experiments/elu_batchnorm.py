"""Study ``elu-batchnorm``: does the seed network need batch normalization
when it uses ELU, and does a learnable alpha help?

The seed posts ("Defining Your Own Network Layer" and its "Revisited"
follow-up) train one network each way, once, on MATLAB's digits:

=====================================  ========  =====================
configuration                          accuracy  training time (GPU)
=====================================  ========  =====================
BN + learnable ELU (002, 000)          0.9878    14.1 s
learnable ELU, no BN (000)             0.9808    12.7 s
fixed ELU alpha = 1, no BN (000)       0.9702    11.8 s
=====================================  ========  =====================

and say "I wouldn't draw any conclusions". The ELU paper (Clevert et al.
2016) reports that batch normalization improved ReLU networks but not ELU
networks, so ReLU with and without batch normalization is added as the
contrast. Every configuration is trained 10 times with the same seeds and
compared with the Wilcoxon signed-rank test, the paper's protocol, with the
posts' options (``training_options("sgdm")``: learning rate
0.01, momentum 0.9, L2 1e-4, 30 epochs of mini-batches of 128 = 1170
iterations), on layerlab's synthetic digits (not MATLAB's images, so the
accuracies are comparable in kind, not digit for digit).
"""

from __future__ import annotations

import layerlab as ll

from ._plots import plot_curves
from .study import Metric, Study

__all__ = ["make_study", "seed_network"]

SEED_BN_ELU = "BN + learnable ELU"
ELU_NO_BN = "learnable ELU, no BN"
FIXED_ELU = "fixed ELU (alpha 1), no BN"
BN_RELU = "BN + ReLU"
RELU = "ReLU, no BN"

# The seed posts' figures: MATLAB R2017b on one GPU, one run each.
REFERENCE = {
    SEED_BN_ELU: {"accuracy": 0.9878, "time_s": 14.1},
    ELU_NO_BN: {"accuracy": 0.9808, "time_s": 12.7},
    FIXED_ELU: {"accuracy": 0.9702, "time_s": 11.8},
}

CONFIGURATIONS = {
    SEED_BN_ELU: dict(activation="elu", batch_norm=True),
    ELU_NO_BN: dict(activation="elu", batch_norm=False),
    FIXED_ELU: dict(activation="elu-fixed", batch_norm=False),
    BN_RELU: dict(activation="relu", batch_norm=True),
    RELU: dict(activation="relu", batch_norm=False),
}

# (a, b): what each comparison asks
COMPARISONS = [
    (SEED_BN_ELU, ELU_NO_BN),   # does ELU need BN? (the Revisited post's question)
    (ELU_NO_BN, FIXED_ELU),     # does a learnable alpha help?
    (BN_RELU, RELU),            # does ReLU need BN? (the paper: yes)
    (ELU_NO_BN, RELU),          # ELU vs ReLU without BN
    (SEED_BN_ELU, BN_RELU),     # ELU vs ReLU with BN
]


def _activation(kind: str) -> ll.Layer:
    if kind == "elu":
        return ll.ELU(20)                          # one alpha per channel, U[0, 1), learnable
    if kind == "elu-fixed":
        return ll.ELU(alpha=1.0, learnable=False)  # the Revisited post's eluLayerFixedAlpha(1.0)
    if kind == "relu":
        return ll.ReLU()
    raise ValueError(f"unknown activation {kind!r}")


def seed_network(activation: str = "elu", batch_norm: bool = True) -> list[ll.Layer]:
    """imageInputLayer([28 28 1]), convolution2dLayer(5, 20),
    [batchNormalizationLayer], activation, fullyConnectedLayer(10),
    softmaxLayer, classificationLayer."""
    layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20)]
    if batch_norm:
        layers.append(ll.BatchNormalization())
    layers += [_activation(activation), ll.FullyConnected(10), ll.Softmax(), ll.Classification()]
    return layers


def make_study(quick: bool = False) -> Study:
    max_epochs = 2 if quick else 30
    repeats = 2 if quick else 10       # the ELU paper: 10 runs per configuration

    def run(activation: str, batch_norm: bool, seed: int) -> dict:
        XTrain, YTrain, _ = ll.datasets.digits_train()
        XTest, YTest, _ = ll.datasets.digits_test()
        options = ll.training_options("sgdm", max_epochs=max_epochs, verbose=False, seed=seed)
        net, info = ll.train_network(XTrain, YTrain, seed_network(activation, batch_norm),
                                     options)
        accuracy = float((ll.classify(net, XTest) == YTest).mean())
        per_epoch = info.iterations // max_epochs
        return {"accuracy": accuracy, "time_s": info.time_elapsed,
                "final_loss": float(info.training_loss[-per_epoch:].mean()),
                "training_loss": info.training_loss}

    def figures(result, out):
        fname = plot_curves(result, [("training_loss", "mini-batch loss")], "training_loss.png",
                            out, log_y=("training_loss",), window=10,
                            title="Mini-batch loss, moving average over 10 iterations")
        return [(fname, "Training loss against iteration: mean over repeats, "
                        "band: range over repeats")]

    iterations = 39 * max_epochs
    return Study(
        "elu-batchnorm", run, CONFIGURATIONS,
        metrics=[Metric("accuracy", "test accuracy", ".4f", better="higher"),
                 Metric("time_s", "training time (s)", ".1f", better="lower"),
                 Metric("final_loss", "last-epoch training loss", ".4f", better="lower",
                        test=False, plot=False)],
        repeats=repeats, comparisons=COMPARISONS, reference=REFERENCE,
        reference_label="seed post", figures=[figures], primary_test="wilcoxon",
        claim=_claim,
        title="ELU and batch normalization in the seed network" + (" (quick)" if quick else ""),
        description=(
            "The seed posts train the network conv 5x5x20 -> [batch norm] -> ELU -> FC 10 once "
            "each way and conclude nothing. Here each configuration is trained repeatedly with "
            "shared seeds, and paired tests say which differences hold up. ReLU with and "
            "without batch normalization is the ELU paper's contrast (\"batch normalization "
            "improved ReLU networks, but did not improve ELU networks\")."
            + (" **Quick form: a smoke test with 2 epochs, not a result.**" if quick else "")),
        settings={
            "data": "layerlab synthetic digits, 5000 training and 5000 test images (N, 1, 28, 28); "
                    "not MATLAB's digitTrain4DArrayData, so the reference figures are a guide, "
                    "not a target",
            "network": "ImageInput((1, 28, 28)) [zerocenter] -> Convolution2d(5, 20) -> "
                       "[BatchNormalization] -> activation -> FullyConnected(10) -> Softmax -> "
                       "Classification",
            "activations": "ELU(20): one learnable alpha per channel, initialised U[0, 1) as in "
                           "the post; ELU(alpha=1.0, learnable=False); ReLU",
            "training": f"training_options('sgdm'): lr 0.01, momentum 0.9, L2 1e-4, mini-batch "
                        f"128, {max_epochs} epochs = {iterations} iterations, shuffle once",
            "metrics": "accuracy on the 5000 test images; training time = train_network's "
                       "time_elapsed (wall clock of the training loop)",
        },
        notes=_notes)


def _claim(result) -> str:
    """The paper's sentence put to the test, in one sentence."""
    found = {(c.a, c.b): c for c in result.comparisons() if c.metric == "accuracy"}
    elu, relu = found.get((SEED_BN_ELU, ELU_NO_BN)), found.get((BN_RELU, RELU))
    if elu is None or relu is None or min(elu.n, relu.n) < 2:
        return ""

    def said(c) -> str:
        sign = "+" if c.mean_diff >= 0 else ""
        return (f"{sign}{c.mean_diff:.4f} accuracy, Wilcoxon p = {_p(c.p_wilcoxon)}, "
                f"Holm {_p(c.p_holm)}, {c.n} paired seeds")

    # the smallest p the Holm-corrected Wilcoxon test could give with these pairs
    reachable = elu.wilcoxon_floor * len(found) < 0.05
    if not elu.significant and not reachable:
        return (f"Whether batch normalization improves the ELU network is not decided yet: "
                f"with {elu.n} paired seeds the Holm-corrected Wilcoxon test cannot reach "
                f"p < 0.05 ({said(elu)}; the paired t-test gives p = {_p(elu.p_t)}); the ELU "
                f"paper's protocol needs 10.")
    if elu.significant and elu.mean_diff > 0:
        verdict = ("does not hold on layerlab's digits: batch normalization improved the ELU "
                   f"network ({said(elu)})")
    elif elu.significant:
        verdict = f"holds, and more: batch normalization made the ELU network worse ({said(elu)})"
    else:
        verdict = (f"holds on layerlab's digits in the sense that no improvement was shown "
                   f"({said(elu)})")
    relu_part = (f"and improved the ReLU network ({said(relu)})" if relu.significant
                 and relu.mean_diff > 0 else f"while for ReLU the difference was {said(relu)}")
    return f"\"Batch normalization does not improve ELU networks\" {verdict}, {relu_part}."


def _p(p: float) -> str:
    return "n/a" if p != p else (f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}")


def _notes(result) -> str:
    lines = ["- \"seed post\": the posts' MATLAB R2017b figures, one run each on a GPU.",
             "- The reference figures come from one MATLAB run each on a GPU with MATLAB's own "
             "digit images; ours are CPU times on the machine named above, "
             "so only their ratios are worth comparing."]
    try:
        a, b = result.mean(SEED_BN_ELU, "time_s"), result.mean(ELU_NO_BN, "time_s")
        c = result.mean(FIXED_ELU, "time_s")
        lines.append(f"- Time ratios (ours): no BN / BN = {b / a:.2f}, fixed / learnable alpha "
                     f"without BN = {c / b:.2f}; the post: 12.7 / 14.1 = 0.90 and "
                     f"11.8 / 12.7 = 0.93.")
    except (ZeroDivisionError, KeyError):
        pass
    return "\n".join(lines)
