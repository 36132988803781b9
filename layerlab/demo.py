"""``layerlab demo``: the seed post ("Defining Your Own Network Layer") end
to end, in Python.

1. Shows sample digits (writes a PNG).
2. Defines the post's ELU layer, one learnable alpha per channel, with a
   hand-written backward, exactly as a user writes a layer, and checks it
   with ``check_layer`` (MATLAB's checkLayer).
3. Trains the post's network with the default SGDM options, printing the
   training table and saving the training-progress figure.
4. Classifies the test set and prints the accuracy (the post: 0.9872 on
   MATLAB's digits); draws a few correctly and incorrectly classified test
   images with their labels; saves the trained network (safetensors + JSON).

Everything is written to ``--out`` (default: ``demo`` in layerlab's cache
folder, ``~/.cache/layerlab/demo``), never to the current folder.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import time

import numpy as np
import torch

import layerlab as ll
from layerlab.sources import SOURCES


class SeedELU(ll.Layer):
    """The seed post's eluLayer: ELU with one alpha per channel.

    Z = X where X > 0, alpha * (exp(X) - 1) where X <= 0.

    ``alpha=None`` draws the initial values uniformly in [0, 1) as the post
    does; ``learnable=False`` is the Revisited post's fixed-alpha ELU, which
    needs no second class here.
    """

    def __init__(self, num_channels: int, alpha: float | None = None,
                 learnable: bool = True, name: str | None = None):
        super().__init__(name=name, type="Exponential Linear Unit",
                         description=f"Exponential linear unit with {num_channels} channels")
        value = torch.rand(num_channels, 1, 1) if alpha is None else \
            torch.full((num_channels, 1, 1), float(alpha))          # rand(1,1,C) in MATLAB
        self.alpha = ll.Learnable(value, learnable=learnable)

    def predict(self, X):
        return X.clamp(min=0) + self.alpha * (torch.exp(X.clamp(max=0)) - 1)

    def forward(self, X):
        memory = torch.exp(X.clamp(max=0)) - 1                       # the reader's variant
        return X.clamp(min=0) + self.alpha * memory, memory

    def backward(self, X, Z, dLdZ, memory):
        dLdX = dLdZ * torch.where(X > 0, 1.0, self.alpha + Z)
        dLdAlpha = None
        if self.needs_gradient("alpha"):                              # not when frozen
            dLdAlpha = (memory * dLdZ).sum(dim=(0, 2, 3)).view(-1, 1, 1)  # over N, H, W
        return dLdX, dLdAlpha


def seed_layers(elu: ll.Layer | None = None, batch_norm: bool = True) -> list[ll.Layer]:
    """The seed network: imageInputLayer([28 28 1]), convolution2dLayer(5,20),
    batchNormalizationLayer, eluLayer(20), fullyConnectedLayer(10),
    softmaxLayer, classificationLayer."""
    layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20)]
    if batch_norm:
        layers.append(ll.BatchNormalization())
    layers += [elu if elu is not None else ll.ELU(20), ll.FullyConnected(10),
               ll.Softmax(), ll.Classification()]
    return layers


def default_out() -> str:
    """``demo`` in layerlab's cache folder (``$LAYERLAB_CACHE`` or
    ``~/.cache/layerlab``)."""
    return str(ll.datasets.digits.cache_dir() / "demo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None,
                   help="folder for the figures and the trained network "
                        "(default: ~/.cache/layerlab/demo, or $LAYERLAB_CACHE/demo)")
    p.add_argument("--max-epochs", type=int, default=30, help="epochs (default 30, as the post; 1 is a quick look)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def save_examples(X, Y, YPred, path: str, n: int = 10) -> tuple[str, int, int]:
    """A figure of the first ``n`` correctly classified test images (top
    row) and the first ``n`` misclassified ones (bottom row), each titled
    ``label -> prediction``; returns the path and the two counts drawn."""
    right = np.flatnonzero(YPred == Y)[:n]
    wrong = np.flatnonzero(YPred != Y)[:n]
    chosen = np.concatenate([right, wrong])
    ll.datasets.show_digits(X[chosen], Y[chosen], path, n=len(chosen), predicted=YPred[chosen])
    return path, len(right), len(wrong)


def run(args: argparse.Namespace) -> int:
    args.out = args.out or default_out()
    os.makedirs(args.out, exist_ok=True)
    print(textwrap.fill("The seed post: " + SOURCES["seed post"], 79))
    print(f"Figures and the trained network go to {args.out}\n")
    t0 = time.perf_counter()
    XTrain, YTrain, _ = ll.datasets.digits_train()
    XTest, YTest, _ = ll.datasets.digits_test()
    print(f"Digits: {len(XTrain)} training and {len(XTest)} test images "
          f"(made in {time.perf_counter() - t0:.1f} s)")
    png = ll.datasets.show_digits(XTrain, YTrain, os.path.join(args.out, "digits.png"))
    print(f"Sample digits: {png}")
    print(f"Training label of image 1010: {YTrain[1009]}")

    torch.manual_seed(args.seed)
    elu = SeedELU(20)
    print("\nChecking the ELU layer (input 20x24x24, the convolution's output):")
    report = ll.check_layer(elu, (20, 24, 24))
    if not report.passed:
        return 1
    print()
    layers = seed_layers(elu)
    plot = os.path.join(args.out, "training_progress.png")
    options = ll.training_options("sgdm", max_epochs=args.max_epochs, seed=args.seed,
                                  plots="training-progress", plots_path=plot)
    net, info = ll.train_network(XTrain, YTrain, layers, options)
    YPred = ll.classify(net, XTest)
    accuracy = float((YPred == YTest).mean())
    print(f"Training time: {info.time_elapsed:.1f} s ({info.iterations} iterations)")
    print(f"Test accuracy: {accuracy:.4f}  (seed post, MATLAB digits: 0.9872)")
    examples, n_right, n_wrong = save_examples(XTest, YTest, YPred,
                                               os.path.join(args.out, "test_examples.png"))
    print(f"Test images, {n_right} classified correctly (top row) and {n_wrong} "
          f"misclassified (bottom row), titled label -> prediction: {examples}")
    saved = os.path.join(args.out, "seed_network.safetensors")
    ll.save(net, saved)
    print(f"Trained network: {saved}  "
          f"(load it back: layerlab.load(path, custom_layers=[SeedELU]), "
          f"SeedELU from layerlab.demo)")
    return 0
