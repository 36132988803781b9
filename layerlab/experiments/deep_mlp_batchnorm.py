"""Study ``deep-mlp-batchnorm``: ten fully connected layers with and without
batch normalization, for sigmoid, ReLU and ELU (the seed blog post that
checks its own batch normalization on MNIST with
``input -> (fully connected -> batch norm -> activation) x 10 -> output``).

The post shows one run per curve and concludes that without batch
normalization the deep network is "broken". Here each network is trained
``repeats`` times with shared seeds on layerlab's digits; the training loss
is recorded every iteration and the test accuracy after every epoch.

Why one epoch at a time: the test accuracy is measured between epochs by
calling :func:`layerlab.train_network` once per epoch on the network it
returned. With plain SGD (no momentum, no L2) the optimizer has no state, so
this is exactly the same algorithm as one long call; each epoch is shuffled
with its own seed.
"""

from __future__ import annotations

import numpy as np

import layerlab as ll

from ._plots import plot_curves
from .study import Metric, Study

__all__ = ["make_study", "deep_mlp"]

ACTIVATIONS = ("sigmoid", "ReLU", "ELU")
WIDTH = 100
DEPTH = 10
BATCH = 100
LEARN_RATE = 0.1


def _activation(kind: str) -> ll.Layer:
    if kind == "sigmoid":
        return ll.Sigmoid()
    if kind == "ReLU":
        return ll.ReLU()
    if kind == "ELU":
        return ll.ELU(alpha=1.0, learnable=False)
    raise ll.LayerError(f"deep_mlp activation: expected one of {ACTIVATIONS}, got {kind!r}")


def deep_mlp(activation: str = "ReLU", batch_norm: bool = True, width: int = WIDTH,
             depth: int = DEPTH) -> list[ll.Layer]:
    """ImageInput((1, 28, 28)) -> depth x (FullyConnected(width)
    [-> BatchNormalization] -> activation) -> FullyConnected(10) -> Softmax
    -> Classification."""
    layers: list[ll.Layer] = [ll.ImageInput((1, 28, 28))]
    for _ in range(depth):
        layers.append(ll.FullyConnected(width))
        if batch_norm:
            layers.append(ll.BatchNormalization())
        layers.append(_activation(activation))
    return layers + [ll.FullyConnected(10), ll.Softmax(), ll.Classification()]


def _name(activation: str, batch_norm: bool) -> str:
    return f"{activation}{' + BN' if batch_norm else ', no BN'}"


def make_study(quick: bool = False) -> Study:
    epochs = 3 if quick else 20
    configurations = {_name(a, bn): dict(activation=a, batch_norm=bn)
                      for a in ACTIVATIONS for bn in (True, False)}
    comparisons = [(_name(a, True), _name(a, False)) for a in ACTIVATIONS]

    def run(activation: str, batch_norm: bool, seed: int) -> dict:
        XTrain, YTrain, _ = ll.datasets.digits_train()
        XTest, YTest, _ = ll.datasets.digits_test()
        net: list[ll.Layer] | ll.Network = deep_mlp(activation, batch_norm)
        losses, accuracies, seconds = [], [], 0.0
        for epoch in range(epochs):
            options = ll.training_options(
                "sgdm", momentum=0.0, initial_learn_rate=LEARN_RATE, l2_regularization=0.0,
                mini_batch_size=BATCH, max_epochs=1, verbose=False,
                seed=seed * 1000 + epoch)   # a new shuffle every epoch
            net, info = ll.train_network(XTrain, YTrain, net, options)
            losses.append(info.training_loss)
            seconds += info.time_elapsed
            accuracies.append(float((ll.classify(net, XTest) == YTest).mean()))
        loss = np.concatenate(losses)
        return {"test_accuracy": accuracies[-1], "final_loss": float(np.mean(losses[-1])),
                "time_s": seconds, "training_loss": loss, "test_accuracy_curve": accuracies}

    per_epoch = 5000 // BATCH

    def figures(result, out):
        fname = plot_curves(
            result, [("training_loss", "mini-batch loss"),
                     ("test_accuracy_curve", "test accuracy")],
            "curves.png", out, log_y=("training_loss",), window=10,
            x_of={"test_accuracy_curve": per_epoch * np.arange(1, epochs + 1)},
            styles={_name(a, bn): dict(color=c, ls="-" if bn else "--")
                    for a, c in zip(ACTIVATIONS, ("#2ca02c", "#d62728", "#1f77b4"))
                    for bn in (True, False)},
            title=f"{DEPTH} x (FC {WIDTH} [BN] activation) on the digits: solid with BN, "
                  f"dashed without")
        return [(fname, "Training loss (moving average over 10 iterations) and test accuracy "
                        "(after each epoch) against iteration: mean over repeats; band: range over "
                        "repeats (loss), ± std (accuracy)")]

    return Study(
        "deep-mlp-batchnorm", run, configurations,
        metrics=[Metric("test_accuracy", "test accuracy", ".4f", better="higher"),
                 Metric("final_loss", "last-epoch training loss", ".4f", better="lower",
                        test=False),
                 Metric("time_s", "training time (s)", ".1f", better="lower", test=False,
                        plot=False)],
        repeats=2 if quick else 5, comparisons=comparisons, figures=[figures],
        title="Deep MLP with and without batch normalization" + (" (quick)" if quick else ""),
        description=(
            f"The seed blog post's check of batch normalization: input -> {DEPTH} x (fully "
            f"connected -> batch normalization -> activation) -> output, against the same "
            f"network without batch normalization, for sigmoid, ReLU and ELU."
            + (f" **Quick form: {epochs} epochs, 2 repeats; a smoke test, not a result.**"
               if quick else "")),
        settings={
            "data": "layerlab synthetic digits, 5000 training and 5000 test images "
                    "(the post used MNIST)",
            "network": f"ImageInput((1, 28, 28)) [zerocenter] -> {DEPTH} x (FullyConnected"
                       f"({WIDTH}) [-> BatchNormalization] -> activation) -> "
                       f"FullyConnected(10) -> Softmax -> Classification; Glorot initial "
                       f"weights (layerlab's default)",
            "activations": "Sigmoid; ReLU; ELU(alpha=1.0, learnable=False)",
            "training": f"plain SGD (no momentum, no L2), lr {LEARN_RATE}, mini-batches of "
                        f"{BATCH}, {epochs} epochs ({per_epoch * epochs} iterations), "
                        f"reshuffled every epoch",
            "metrics": "test accuracy on the 5000 test images after the last epoch; training "
                       "loss of the last epoch",
        })
