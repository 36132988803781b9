"""torch.nn modules and layerlab layers in one network, trained with
``train_network``, then trained further in a plain PyTorch loop.

The seed network with PyTorch's own convolution, batch normalization,
flatten and linear modules around layerlab's ELU: the modules are wrapped
automatically (``ll.ModuleLayer``), their parameters train with MATLAB's
SGDM, their sizes are inferred, and the network saves and loads.

Run: python examples/torch_modules_in_a_network.py [--max-epochs N]
"""

import argparse
import os
import tempfile

import torch
from torch import nn

import layerlab as ll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=4)
    args = parser.parse_args()

    XTrain, YTrain, _ = ll.datasets.digits_train()
    XTest, YTest, _ = ll.datasets.digits_test()
    layers = [ll.ImageInput((1, 28, 28)), nn.Conv2d(1, 20, 5), nn.BatchNorm2d(20),
              ll.ELU(20), nn.Flatten(), nn.Linear(20 * 24 * 24, 10),
              ll.Softmax(), ll.Classification()]
    print(ll.summary(layers))
    options = ll.training_options("sgdm", max_epochs=args.max_epochs, seed=0,
                                  verbose=False)
    net, info = ll.train_network(XTrain, YTrain, layers, options)
    accuracy = (ll.classify(net, XTest) == YTest).mean()
    print(f"train_network: test accuracy {accuracy:.4f}")

    # The network is an nn.Module: one more epoch in a plain PyTorch loop.
    # net(X) in training mode is the softmax's output (the loss layer's
    # input); net.loss(Y, T) is the loss layer's loss.
    # (train_network leaves the network where it trained: a GPU when there is one)
    device = next(net.parameters()).device
    X = torch.as_tensor(XTrain, dtype=torch.float32).to(device)
    T = net.output_layer.prepare_targets(YTrain, len(X)).to(device)
    sgd = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    net.train()
    for start in range(0, len(X) - 127, 128):
        loss = net.loss(net(X[start:start + 128]), T[start:start + 128])
        sgd.zero_grad()
        loss.backward()
        sgd.step()
    accuracy = (ll.classify(net, XTest) == YTest).mean()
    print(f"after one plain PyTorch epoch: test accuracy {accuracy:.4f}")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "mixed.safetensors")
        ll.save(net, path)
        same = (ll.classify(ll.load(path), XTest) == ll.classify(net, XTest)).mean()
    print(f"saved and loaded: {same:.0%} of the test predictions unchanged")


if __name__ == "__main__":
    main()
