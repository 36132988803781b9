"""See inside training: the lecture's central quantity, layer by layer.

"Going deeper" (EE-559, slides 10-11) says depth trains only if the gradient
neither vanishes nor explodes, which is "tightly related to controlling
activations". This example trains the experiments' deep MLP on the digits
(10 x [FullyConnected(100) -> ELU], with and without batch normalization)
with ``training_options(monitor=("activations", "gradients"))`` and draws
the gradient reaching each layer's input against depth and iterations.

    python examples/layer_amplitudes.py                   # 2 epochs, a few seconds
    python examples/layer_amplitudes.py --out figures/
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import layerlab as ll
from layerlab.experiments.deep_mlp_batchnorm import deep_mlp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--frequency", type=int, default=20, help="monitor_frequency")
    ap.add_argument("--out", default=None, help="folder for the figures (default: a temp one)")
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="layerlab-amplitudes-")
    os.makedirs(out, exist_ok=True)
    X, Y, _ = ll.datasets.digits_train()
    print("gradient norm ||dL/dX|| reaching the first and the last FullyConnected layer:")
    for bn in (False, True):
        name = "with BN" if bn else "no BN"
        opts = ll.training_options("sgdm", momentum=0.0, initial_learn_rate=0.1,
                                   l2_regularization=0.0, mini_batch_size=100,
                                   max_epochs=args.epochs, verbose=False, seed=0,
                                   monitor=("activations", "gradients"),
                                   monitor_frequency=args.frequency)
        net, info = ll.train_network(X, Y, deep_mlp("ELU", batch_norm=bn), opts)
        stats = info.layer_statistics
        fc = [i for i, n in enumerate(stats.layers) if n.startswith("fc")]
        g = stats["input_gradient_norm"]
        print(f"  {name:<8} iteration {stats.iterations[0]:>4}: first {g[0, fc[1]]:.2e}, "
              f"last {g[0, fc[-1]]:.2e};  iteration {stats.iterations[-1]:>4}: first "
              f"{g[-1, fc[1]]:.2e}, last {g[-1, fc[-1]]:.2e}")
        zeros = np.nanmean(stats["activation_zero_fraction"][-1])
        print(f"           mean fraction of exact zeros in the outputs at the end: {zeros:.3f}")
        path = os.path.join(out, f"gradient_norm_{'bn' if bn else 'no_bn'}.png")
        ll.plot_layer_statistics(info, "input_gradient_norm", path)
        stats.to_csv(os.path.join(out, f"layer_statistics_{'bn' if bn else 'no_bn'}.csv"))
        print(f"           figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
